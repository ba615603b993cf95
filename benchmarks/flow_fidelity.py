"""How close are the flow's degradations to the real ones? Measured on benchmarks whose truth is known.

    python benchmarks/flow_fidelity.py --bench /tmp/demo --bench /tmp/grain --train-steps 2000 --output runs/fidelity
    python benchmarks/flow_fidelity.py --bench /tmp/demo --ckpt RUN/checkpoints/last.pt --output runs/fidelity

For each benchmark (``data_tools.make_benchmark`` layout), a light flow is
trained on ``train_hr`` + ``train_real_lr`` at the benchmark's scale (or
``--ckpt`` is used: a flow of that scale), then on
``train_hr``, whose true degradation ``train_oracle_lr`` the flow never sees,
residuals against the clean LR of the same image are compared, arm by arm:

* ``true, re-seeded``: the benchmark's own degradation with other random
  draws: the floor any model can reach;
* ``no degradation`` and ``white gaussian`` (at the real per-channel std): the
  references a model must beat;
* ``flow T=...``: the flow's samples at each temperature.

Statistics (``degradation.realism``): mean and std per channel; std per
brightness x texture region of the clean image (worst ratio to the real std,
share of regions within 25%); autocorrelation at lags 1-4; luma share of the
residual energy; Frechet distance of 8x8x3 residual patches; and the
two-sample classifier's accuracy at telling ``train_real_lr`` from the arm's
LR images (50% = indistinguishable). A latent-space check (clean latents
against N(0, I), real latents against the learned Gaussian) and a figure of
flat and dark crops (clean | flow | truth) come with each benchmark, and, for
a flow with an image-noise estimate, its noise level per brightness bin beside
the same estimate made paired (clean photos against their own true
degradation) and the true residual where the clean photos are flattest
(``degradation.oracle_fidelity.noise_level_check``). Prints a
table per benchmark and writes ``fidelity.json``, ``fidelity.md`` and
``fidelity_<bench>.png`` under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unpaired_sr.common.image_io import write_image  # noqa: E402
from unpaired_sr.data_tools.prepare_demo import prepare_demo  # noqa: E402
from unpaired_sr.degradation.checkpoint import load_flow  # noqa: E402
from unpaired_sr.degradation.oracle_fidelity import (  # noqa: E402
    REAL,
    TEMPERATURES,
    benchmark_flow_config,
    benchmark_scale,
    evaluate,
)
from unpaired_sr.degradation.train import train  # noqa: E402


def train_flow(bench: Path, run: Path, config_file: str, steps: int, device: str, overrides: list[str]) -> dict:
    config = benchmark_flow_config(bench, config_file, steps, device, overrides)
    start = time.perf_counter()
    last = run / "checkpoints" / "last.pt"
    monitor = train(config, run, resume=last if last.exists() else None)
    seconds = time.perf_counter() - start
    return {
        "steps": steps,
        "seconds": round(seconds, 1),
        "final_nll_clean_bpd": round(monitor.get("nll_clean", float("nan")), 4),
        "final_nll_real_bpd": round(monitor.get("nll_real", float("nan")), 4),
    }


def markdown(bench_name: str, rows: list[dict], latents: list[dict]) -> str:
    lines = [
        f"### {bench_name}",
        "",
        "| arm | mean R/G/B | std R/G/B (x255) | worst region ratio | regions within 25% | lag-1..4 autocorr "
        "| luma share | Frechet 8x8 | classifier acc. |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        mean = "/".join(f"{m * 255:+.1f}" for m in row["mean"])
        std = "/".join(f"{s * 255:.1f}" for s in row["std"])
        lags = "/".join(f"{a:.2f}" for a in row["autocorr"])
        accuracy = f"{100 * row['two_sample_accuracy']:.0f}%" if "two_sample_accuracy" in row else "-"
        lines.append(
            f"| {row['arm']} | {mean} | {std} | {row['worst_region_ratio']:.2f} | "
            f"{100 * row['regions_within_25pct']:.0f}% | {lags} | {row['luma_energy_share']:.2f} | "
            f"{row['frechet_8x8']:.0f} | {accuracy} |"
        )
    lines += ["", "| level | channels | clean mean | clean std | real Mahalanobis / dim | real beyond chi2 99% |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in latents:
        lines.append(
            f"| {row['level']} | {row['channels']} | {row['clean_mean']:+.3f} | {row['clean_std']:.3f} | "
            f"{row['real_mahalanobis_per_dim']:.2f} | {100 * row['real_outside_99']:.1f}% |"
        )
    return "\n".join(lines)


def region_table(rows: list[dict], arms: list[str]) -> str:
    """Residual std (RMS over channels, x255) per brightness x texture region, for chosen arms."""
    chosen = [row for row in rows if row["arm"] in arms]
    lines = ["| region | " + " | ".join(row["arm"] for row in chosen) + " |"]
    lines.append("| --- |" + " --- |" * len(chosen))
    for region in chosen[0]["region_std"]:
        cells = [f"{255 * np.sqrt(np.mean(np.square(row['region_std'][region]))):.1f}" for row in chosen]
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def noise_level_table(check: dict) -> str:
    """The flow's image-noise estimate per brightness bin against the paired estimate and the flattest truth."""
    lines = [
        "Image noise per brightness bin (std x255, mean of R, G, B): the flow's estimate (unpaired, as trained), "
        "the same estimate made paired (clean photos against their own true degradation) and the true "
        "residual in the flattest 10% of each bin's clean pixels:",
        "",
        "| brightness bin | flow (unpaired) | paired | true, flattest 10% |",
        "| --- | --- | --- | --- |",
    ]
    for b, (flow_std, paired_std, true_std) in enumerate(zip(check["flow"], check["paired"], check["flattest_true"])):
        low, high = b / len(check["flow"]), (b + 1) / len(check["flow"])
        cells = [f"{255 * np.mean(std):.1f}" for std in (flow_std, paired_std, true_std)]
        lines.append(f"| {low:.1f}-{high:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", action="append", help="benchmark folder (repeat; default: the demo benchmark)")
    parser.add_argument("--ckpt", help="a trained flow to use on every benchmark; without it one is trained per bench")
    parser.add_argument("--config", default="configs/deflow_light.yaml")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--temperatures", default=",".join(map(str, TEMPERATURES)))
    parser.add_argument("--classifier-steps", type=int, default=300)
    parser.add_argument(
        "--classifier-splits",
        type=int,
        default=1,
        help="photo splits the classifier is averaged over (the README's tables: 1, seed 0; its split table: 5)",
    )
    parser.add_argument("--keep-low-pass-sigma", type=float, help="override the flow's keep_low_pass_sigma")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", "--out", dest="out", default="runs/flow_fidelity")
    parser.add_argument("overrides", nargs="*", help="flow config overrides, e.g. --model.num_levels 3 (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    temperatures = tuple(float(t) for t in args.temperatures.split(","))
    benches = [Path(b) for b in args.bench] if args.bench else [out / "demo_bench"]
    if not args.bench and not (benches[0] / "benchmark.json").exists():
        prepare_demo(benches[0])
    report: dict = {"benches": {}}
    sections = []
    for bench in benches:
        name = bench.name
        entry: dict = {"path": str(bench), "degradation": json.loads((bench / "benchmark.json").read_text())}
        ckpt = args.ckpt
        if ckpt is None:
            run = out / f"flow_{name}"
            entry["training"] = train_flow(bench, run, args.config, args.train_steps, args.device, args.overrides)
            print(json.dumps({"bench": name, **entry["training"]}))
            ckpt = run / "checkpoints" / "last.pt"
        flow, flow_config = load_flow(ckpt, args.device)
        scale = benchmark_scale(bench)
        if flow_config.data.scale != scale:
            parser.error(f"the flow {ckpt} learned x{flow_config.data.scale}; the benchmark {bench} is x{scale}")
        if args.keep_low_pass_sigma is not None:
            flow.keep_low_pass_sigma = args.keep_low_pass_sigma
        entry["keep_low_pass_sigma"] = flow.keep_low_pass_sigma
        rows, latents, figure, noise_level = evaluate(
            flow,
            bench,
            temperatures,
            flow_config.model.dequant_bins,
            classifier_steps=args.classifier_steps,
            classifier_splits=args.classifier_splits,
        )
        entry.update(arms=rows, latents=latents)
        if noise_level is not None:
            entry["noise_level"] = noise_level
        report["benches"][name] = entry
        flow_arms = [row["arm"] for row in rows if row["arm"].startswith("flow")]
        section = markdown(f"{name} ({entry['degradation']['degradation']})", rows, latents)
        section += "\n\nResidual std per region (x255):\n\n" + region_table(rows, [REAL, *flow_arms])
        if "noise_level" in entry:
            section += "\n\n" + noise_level_table(entry["noise_level"])
        sections.append(section)
        print(section, flush=True)
        write_image(out / f"fidelity_{name}.png", figure)
    (out / "fidelity.json").write_text(json.dumps(report, indent=2))
    (out / "fidelity.md").write_text("\n\n".join(sections) + "\n")
    print(f"wrote {out / 'fidelity.json'}, {out / 'fidelity.md'} and the figures fidelity_<bench>.png")


if __name__ == "__main__":
    main()
