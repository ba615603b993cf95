"""Does feeding the SR loss back into the flow help? Joint phase with several cycle_sr_weight values.

    python benchmarks/joint_effect.py --bench /tmp/demo --flow-ckpt FLOW.pt --sr-ckpt SR.pt \\
        --steps 500 --weights 0,1,10 --output runs/joint_effect

From the same stage-2 SR network and stage-1 flow, the joint phase runs
``--steps`` steps per weight. ``cycle_sr_weight = 0`` is the control: SR keeps
training on flow samples and the flow keeps only its likelihood objective, so
every arm has the same total number of SR steps. Reports the SR network on
``test_lr``/``test_hr`` (PSNR/SSIM, Y, crop 4) and, for each flow, the
degradation-fidelity numbers of ``benchmarks/flow_fidelity.py`` (residual std,
Frechet distance): a flow that learned to make degradations easy for the SR
network shows up as weaker residuals and a larger distance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unpaired_sr.common.config import load_config  # noqa: E402
from unpaired_sr.degradation.checkpoint import load_flow  # noqa: E402
from unpaired_sr.degradation.oracle_fidelity import TEMPERATURES  # noqa: E402
from unpaired_sr.degradation.oracle_fidelity import evaluate as flow_fidelity  # noqa: E402
from unpaired_sr.joint.config import PipelineConfig  # noqa: E402
from unpaired_sr.joint.train import train_joint  # noqa: E402
from unpaired_sr.sr.evaluation import evaluate, format_table  # noqa: E402


def fidelity_row(ckpt: str | Path, bench: Path, temperature: float) -> dict:
    """The flow's fidelity at the joint phase's temperature (and the best over the usual ones)."""
    flow, config = load_flow(ckpt)
    temperatures = tuple(sorted({*TEMPERATURES, float(temperature)}))
    rows, _, _ = flow_fidelity(flow, bench, temperatures, config.model.dequant_bins)
    flow_rows = [row for row in rows if row["arm"].startswith("flow")]
    best = min(flow_rows, key=lambda row: row["frechet_8x8"])
    used = next(row for row in flow_rows if row["arm"] == f"flow T={temperature}")
    return {
        "best_frechet": best["frechet_8x8"],
        "best_at": best["arm"],
        "temperature": temperature,
        "frechet": used["frechet_8x8"],
        "residual_std_x255": [round(v * 255, 2) for v in used["std"]],
        "regions_within_25pct": used.get("regions_within_25pct"),
        "two_sample_accuracy": used["two_sample_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True)
    parser.add_argument("--flow-ckpt", required=True, help="stage-1 flow")
    parser.add_argument("--sr-ckpt", required=True, help="stage-2 SR network (trained on that flow)")
    parser.add_argument("--config", default="configs/joint.yaml")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--weights", default="0,1,10")
    parser.add_argument("--seed", type=int, default=0, help="the joint phase's data and noise seed")
    parser.add_argument("--extra", default="", help="more overrides for every arm, e.g. '--train.nll_weight 2'")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", "--out", dest="out", default="runs/joint_effect")
    args = parser.parse_args()
    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = [float(w) for w in args.weights.split(",")]
    report: dict = {"settings": vars(args), "arms": {}}
    models = [("stage2", args.sr_ckpt)]
    temperature = load_config(PipelineConfig, args.config, args.extra.split()).train.temperature
    report["arms"]["stage2"] = {"flow": fidelity_row(args.flow_ckpt, bench, temperature)}
    for weight in weights:
        name = f"joint_w{weight:g}"
        run = out / name
        config = load_config(
            PipelineConfig,
            args.config,
            [
                "--data.clean_dir",
                str(bench / "train_hr"),
                "--data.real_dir",
                str(bench / "train_real_lr"),
                "--train.n_iter",
                str(args.steps),
                "--train.cycle_sr_weight",
                str(weight),
                "--train.save_every",
                str(args.steps),
                "--train.sample_every",
                str(args.steps),
                "--train.log_every",
                str(max(1, args.steps // 5)),
                "--train.device",
                args.device,
                "--data.seed",
                str(args.seed),
                *args.extra.split(),
            ],
        )
        last = run / "checkpoints" / "last.pt"
        monitor = {}
        if not last.exists():
            monitor = train_joint(config, run, args.flow_ckpt, args.sr_ckpt)
        report["arms"][name] = {"monitor": monitor, "flow": fidelity_row(last, bench, temperature)}
        models.append((name, str(last)))
    test_set = (bench / "test_lr", bench / "test_hr")
    summary = evaluate(*test_set, 4, out / "eval", models=models, device=args.device, overwrite=True)
    for name, entry in summary["methods"].items():
        report["arms"].setdefault(name, {})["sr"] = {k: entry.get(k) for k in ("psnr", "ssim", "lpips")}
        print(json.dumps({"arm": name, **report["arms"][name]}))
    print(format_table(summary))
    (out / "joint_effect.json").write_text(json.dumps(report, indent=2))
    (out / "joint_effect.md").write_text(markdown_table(report))
    print(f"wrote {out / 'joint_effect.json'} and joint_effect.md")


def markdown_table(report: dict) -> str:
    """One row per arm: SR on the test set, and the flow's fidelity on the benchmark's training photos."""
    lines = [
        "| arm | SR PSNR / SSIM (Y) | LPIPS | flow Frechet 8x8 | residual std R/G/B (x255) "
        "| regions within 25% | classifier acc. |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, arm in report["arms"].items():
        sr, flow = arm.get("sr", {}), arm.get("flow")
        lpips = sr.get("lpips")
        row = [name, f"{sr['psnr']:.3f} / {sr['ssim']:.4f}" if sr else "-", "-" if lpips is None else f"{lpips:.4f}"]
        if flow:
            std = "/".join(f"{v:.1f}" for v in flow["residual_std_x255"])
            regions = flow.get("regions_within_25pct")
            row += [f"{flow['frechet']:.0f}", std, "-" if regions is None else f"{100 * regions:.0f}%"]
            row.append(f"{100 * flow['two_sample_accuracy']:.0f}%")
        else:
            row += ["-"] * 4
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
