"""Does SR trained on the learned degradation beat bicubic and classical training? The SR-arms benchmark.

    python benchmarks/sr_arms.py --bench /tmp/demo --flow-ckpt FLOW.pt --steps 1500 --output runs/sr_arms

With the same network, budget and seed, SR is trained from these sources:
``bicubic``, ``realesrgan`` (classical second-order), ``flow`` (the learned
degradation, fresh samples every step), ``oracle`` (``train_oracle_lr``: the
benchmark's true degradation, one fixed draw per training image) and
``truth`` (the benchmark's true degradation applied to every training crop
afresh, as the flow's samples are: the upper bound, with no fewer draws than
the flow gets). Every arm run and plain bicubic
upsampling are evaluated on ``test_lr``/``test_hr`` (PSNR/SSIM on Y, crop =
scale, LPIPS where its weights exist). Without ``--flow-ckpt`` a light flow is
trained first on ``train_hr`` + ``train_real_lr``. Prints one JSON line per arm
and writes ``arms.json``, ``arms.md``, the comparison figure and ``curves.png``
(flow NLL per domain; each arm's loss and PSNR on the test tiles during
training, for monitoring only: the table evaluates the final weights).
Flows, SR arms, evaluation and the sanity row all run at the benchmark's own
scale (``benchmark.json``; ``prepare_demo --scale 2`` builds an x2 one).

A clean-pairs sanity row comes with the ``bicubic`` arm: the bicubic-trained
network on *bicubic-downsampled* test photos (its own training distribution),
against bicubic upsampling. A network that learned something gains there
(VDSR reports +2.9 dB at x4 on Set5 at convergence); ~0 dB means it outputs
bicubic upsampling under another name. ``--arms bicubic`` with
``--sr-config`` and ``--steps`` measures just that row for any form and budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unpaired_sr.common.config import load_config  # noqa: E402
from unpaired_sr.common.image_io import list_images, read_image, write_image  # noqa: E402
from unpaired_sr.common.matlab_resize import downscale  # noqa: E402
from unpaired_sr.data_tools.prepare_demo import prepare_demo  # noqa: E402
from unpaired_sr.degradation.oracle_fidelity import benchmark_flow_config, benchmark_scale  # noqa: E402
from unpaired_sr.degradation.train import train as train_flow  # noqa: E402
from unpaired_sr.sr.config import SRConfig  # noqa: E402
from unpaired_sr.sr.evaluation import evaluate, format_table  # noqa: E402
from unpaired_sr.sr.train import train as train_sr  # noqa: E402
from unpaired_sr.tools.curves import plot_curves  # noqa: E402

ARMS = ("bicubic", "realesrgan", "flow", "oracle", "truth")


def resume_path(run: Path) -> Path | None:
    last = run / "checkpoints" / "last.pt"
    return last if last.exists() else None


def run_flow(bench: Path, out: Path, steps: int, config_file: str, device: str) -> Path:
    run = out / "flow"
    config = benchmark_flow_config(bench, config_file, steps, device)
    train_flow(config, run, resume=resume_path(run))
    return run / "checkpoints" / "last.pt"


def run_arm(arm: str, bench: Path, out: Path, flow_ckpt: Path, args) -> dict:
    meta = json.loads((bench / "benchmark.json").read_text())  # the true degradation and the scale
    sources = {
        "bicubic": ["--data.degradation", "bicubic"],
        "realesrgan": ["--data.degradation", "realesrgan"],
        "flow": [
            "--data.degradation",
            "flow",
            "--data.flow_ckpt",
            str(flow_ckpt),
            "--data.temperature",
            str(args.temperature),
        ],
        "oracle": ["--data.degradation", "pairs", "--data.lq_dir", str(bench / "train_oracle_lr")],
        "truth": ["--data.degradation", meta["degradation"]],
    }
    run = out / f"sr_{arm}"
    config = load_config(
        SRConfig,
        args.sr_config,
        [
            "--data.hr_dir",
            str(bench / "train_hr"),
            "--data.scale",
            str(meta["scale"]),
            *sources[arm],
            "--train.n_iter",
            str(args.steps),
            "--train.batch_size",
            str(args.batch_size),
            "--data.crop_size",
            str(args.crop_size),
            "--train.save_every",
            str(args.steps),
            "--train.val_every",
            str(max(1, args.steps // 10)),
            # Validation on the test tiles draws the PSNR curves; nothing is selected on it (the table uses last.pt).
            "--data.val_lr_dir",
            str(bench / "test_lr"),
            "--data.val_hr_dir",
            str(bench / "test_hr"),
            "--train.device",
            args.device,
            "--train.log_every",
            str(max(1, args.steps // 10)),
            # Another seed: other initial weights, crops and flow samples, to see the spread of an arm.
            "--train.seed",
            str(args.seed),
            "--data.seed",
            str(args.seed),
        ],
    )
    start = time.perf_counter()
    monitor = train_sr(config, run, resume=resume_path(run))
    return {
        "ckpt": str(run / "checkpoints" / "last.pt"),
        "seconds": time.perf_counter() - start,
        "steps_per_s": monitor.get("steps_per_s"),
    }


def clean_pairs_check(bench: Path, out: Path, ckpt: str, device: str) -> dict:
    """The bicubic-trained network against bicubic upsampling on bicubic-downsampled test photos."""
    scale = benchmark_scale(bench)
    clean_lr = out / "test_clean_lr"
    if not clean_lr.exists():
        clean_lr.mkdir()
        for path in list_images(bench / "test_hr"):
            write_image(clean_lr / f"{path.stem}.png", downscale(read_image(path), scale).clip(0, 1))
    summary = evaluate(
        str(clean_lr),
        str(bench / "test_hr"),
        scale,
        out / "eval_clean_pairs",
        models=[("bicubic_sr", ckpt)],
        device=device,
        overwrite=True,
        use_lpips=False,
    )
    methods = summary["methods"]
    return {
        "bicubic_psnr": methods["bicubic"]["psnr"],
        "bicubic_sr_psnr": methods["bicubic_sr"]["psnr"],
        "gain_db": methods["bicubic_sr"]["psnr"] - methods["bicubic"]["psnr"],
    }


def gap_closed(methods: dict, metric: str = "psnr", upper: str = "oracle") -> float:
    """Share of the bicubic-training -> ``upper`` gap that the flow arm closes."""
    low, high = methods["bicubic_sr"][metric], methods[upper][metric]
    return (methods["flow"][metric] - low) / (high - low) if high != low else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="benchmark folder (default: build the demo benchmark into OUT/bench)")
    parser.add_argument("--flow-ckpt", help="a trained flow (default: train the light one)")
    parser.add_argument("--flow-steps", type=int, default=2000)
    parser.add_argument("--flow-config", default="configs/deflow_light.yaml")
    parser.add_argument("--sr-config", default="configs/sr_vdsr_fast.yaml")
    parser.add_argument("--steps", type=int, default=1500, help="SR training steps per arm")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=32, help="LR crop")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="SR training seed (weights, crops, flow samples)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--output", "--out", dest="out", default="runs/sr_arms")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = Path(args.bench) if args.bench else out / "bench"
    if not (bench / "benchmark.json").exists():
        prepare_demo(bench)
    arms = [arm for arm in args.arms.split(",") if arm]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    flow_ckpt = None
    if "flow" in arms:
        flow_ckpt = (
            Path(args.flow_ckpt)
            if args.flow_ckpt
            else run_flow(bench, out, args.flow_steps, args.flow_config, args.device)
        )
    training = {arm: run_arm(arm, bench, out, flow_ckpt, args) for arm in arms}
    models = [("bicubic_sr" if arm == "bicubic" else arm, training[arm]["ckpt"]) for arm in arms]
    test_set = (bench / "test_lr", bench / "test_hr")
    summary = evaluate(
        *test_set, benchmark_scale(bench), out / "eval", models=models, device=args.device, overwrite=True
    )
    report = {
        "settings": vars(args) | {"bench": str(bench), "flow_ckpt": str(flow_ckpt)},
        "training": training,
        "evaluation": summary,
    }
    for name, entry in summary["methods"].items():
        print(json.dumps({"arm": name, **{k: entry.get(k) for k in ("psnr", "ssim", "lpips", "seconds_per_image")}}))
    lines = [format_table(summary)]
    if "bicubic" in arms:
        report["clean_pairs"] = clean_pairs_check(bench, out, training["bicubic"]["ckpt"], args.device)
        lines.append(
            f"clean-pairs sanity: the bicubic-trained net gains {report['clean_pairs']['gain_db']:+.3f} dB over "
            f"bicubic upsampling on bicubic-downsampled test photos ({report['clean_pairs']['bicubic_sr_psnr']:.3f} "
            f"vs {report['clean_pairs']['bicubic_psnr']:.3f})"
        )
    for upper in ("oracle", "truth"):
        if {"bicubic", "flow", upper} <= set(arms):
            suffix = "" if upper == "oracle" else f"_{upper}"
            report[f"flow_gap_closed_psnr{suffix}"] = gap_closed(summary["methods"], "psnr", upper)
            report[f"flow_gap_closed_ssim{suffix}"] = gap_closed(summary["methods"], "ssim", upper)
            lines.append(
                f"flow closes {100 * report[f'flow_gap_closed_psnr{suffix}']:.0f}% of the bicubic-trained -> "
                f"{upper} PSNR gap ({100 * report[f'flow_gap_closed_ssim{suffix}']:.0f}% of the SSIM gap)"
            )
    print(*lines, sep="\n")
    (out / "arms.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "arms.md").write_text("```\n" + lines[0] + "\n```\n" + "\n".join(lines[1:]) + "\n")
    flow_runs = [Path(flow_ckpt).parents[1]] if flow_ckpt else []
    plot_curves([*flow_runs, *(out / f"sr_{arm}" for arm in arms)], out / "curves.png")
    print(
        f"\nwrote: table {out / 'arms.md'} and {out / 'arms.json'}, figures {out / 'eval' / 'comparison.png'} "
        f"and {out / 'curves.png'} (training curves), SR images {out / 'eval'}/NAME/, checkpoints "
        f"{out}/*/checkpoints/, TensorBoard {out}/*/tb (tensorboard --logdir {out})"
    )


if __name__ == "__main__":
    main()
