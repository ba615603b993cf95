"""The image-noise estimate against the true noise, per brightness bin, on benchmarks whose truth is known.

    python benchmarks/noise_levels.py --bench /tmp/bench_film --bench /tmp/bench_film_s1
    python benchmarks/noise_levels.py --bench /tmp/bench_film -- --model.image_noise_quiet_fraction 0.01

For each benchmark (``data_tools.make_benchmark`` layout), the noise estimate
``degradation.train`` makes from ``train_hr`` and ``train_real_lr`` (the same
crops of the same images, read with the flow config's model options; no flow
is trained, so a reading takes seconds), against the true residual's std in
the flattest tenth of each brightness bin's clean pixels (``train_oracle_lr``
minus the clean LR of the same photos, which the estimate never sees). Per
benchmark, the levels (x255, the mean over R, G and B) and the mean |log
ratio| of estimate to truth over the four upper bins (the darkest bin is left
out: clipping at black takes the noise there, in the truth as in the
estimate); over all, the mean of those and the median ratio. Beside the
level, the grain: the lag-1 autocorrelation of the estimated noise (drawn
on the training photos, seed 0) and of the true residual, over neighbouring
pixels both in the flattest tenth of their bin (a white noise reads 0, a
blotchy one near 1); over all, the mean absolute difference and the slope
of the estimate's lag-1 on the truth's (1: it follows the truth; 0: it
reads every source alike). The fidelity
log's level readings (forty-first round on) are this table over nine sources
at three photo splits (``prepare_demo --seed 0, 1, 2``). Writes
``noise_levels.json`` and ``noise_levels.md`` under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unpaired_sr.common.cli import command  # noqa: E402
from unpaired_sr.common.errors import UserError  # noqa: E402
from unpaired_sr.common.image_io import list_images, read_image  # noqa: E402
from unpaired_sr.degradation.noise import (  # noqa: E402
    ImageNoise,
    add_image_noise,
    estimation_sets,
    training_lr_sets,
)
from unpaired_sr.degradation.oracle_fidelity import (  # noqa: E402
    benchmark_flow_config,
    benchmark_scale,
    flattest_lag1,
    flattest_pixels,
    flattest_true_residual,
)
from unpaired_sr.degradation.train import noise_estimate  # noqa: E402

UPPER_BINS = slice(1, None)  # the darkest bin is left out of the summary
TINY = 0.05 / 255  # an estimate of nothing counts as this, so that its log ratio is large, not infinite


def read_levels(bench: Path, config_file: str, overrides: list[str]) -> dict:
    """One benchmark's estimate and truth per brightness bin (levels x255), and the summary of their ratio."""
    model = benchmark_flow_config(bench, config_file, 1, "cpu", overrides).model
    scale = benchmark_scale(bench)
    clean_hr = [read_image(path) for path in list_images(bench / "train_hr")]
    real_lr = [read_image(path) for path in list_images(bench / "train_real_lr")]
    oracle_lr = [read_image(path) for path in list_images(bench / "train_oracle_lr")]
    # The crops the training reads its estimates from (degradation.train.estimate_image_degradations).
    clean_lr, real_crops = training_lr_sets(*estimation_sets(clean_hr, real_lr, scale), scale)
    noise = noise_estimate(model, clean_lr, real_crops)
    estimate = noise.rgb_std().mean(axis=1)
    # The truth on every training photo, whole: the clean LR as the training makes it, and its true degradation.
    whole_clean_lr, whole_oracle_lr = training_lr_sets(clean_hr, oracle_lr, scale)
    truth = np.nanmean(np.array(flattest_true_residual(whole_clean_lr, whole_oracle_lr)), axis=1)
    ratios = np.maximum(estimate, TINY)[UPPER_BINS] / truth[UPPER_BINS]
    drawn = add_image_noise(ImageNoise.from_estimate(noise), whole_clean_lr, seed=0)
    flat = flattest_pixels(whole_clean_lr)
    return {
        "lag1": flattest_lag1(flat, [n - c for n, c in zip(drawn, whole_clean_lr)]),
        "true_lag1": flattest_lag1(flat, [o - c for o, c in zip(whole_oracle_lr, whole_clean_lr)]),
        "estimate": (255 * estimate).round(2).tolist(),
        "truth": (255 * truth).round(2).tolist(),
        "ratios": ratios.round(3).tolist(),
        "mean_abs_log_ratio": float(np.nanmean(np.abs(np.log(ratios)))),
    }


def levels(values: list[float]) -> str:
    return " / ".join(f"{value:.1f}" for value in values)


def table(readings: dict[str, dict]) -> str:
    lines = [
        "| benchmark | estimate (x255, by brightness bin) | truth, flattest tenth | mean abs log ratio (upper bins) "
        "| lag-1 estimate / truth |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, reading in readings.items():
        cells = (
            levels(reading["estimate"]),
            levels(reading["truth"]),
            f"{reading['mean_abs_log_ratio']:.3f}",
            f"{reading['lag1']:.2f} / {reading['true_lag1']:.2f}",
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    summary = np.mean([r["mean_abs_log_ratio"] for r in readings.values()])
    median = np.nanmedian(np.concatenate([r["ratios"] for r in readings.values()]))
    lag1, true_lag1 = (np.array([r[key] for r in readings.values()]) for key in ("lag1", "true_lag1"))
    lines += ["", f"mean |log ratio| {summary:.3f} over {len(readings)} benchmarks; median ratio {median:.2f}"]
    lines.append(f"lag-1: mean |estimate - truth| {np.nanmean(np.abs(lag1 - true_lag1)):.3f}")
    if len(readings) >= 3 and np.nanstd(true_lag1) > 0:
        known = np.isfinite(lag1) & np.isfinite(true_lag1)
        slope = np.polyfit(true_lag1[known], lag1[known], 1)[0]
        lines[-1] += f", slope of the estimate on the truth {slope:.2f}"
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", action="append", required=True, help="benchmark folder (repeat)")
    parser.add_argument("--config", default="configs/deflow_light.yaml")
    parser.add_argument("--output", "--out", dest="out", default="runs/noise_levels")
    parser.add_argument("overrides", nargs="*", help="flow config overrides, e.g. --model.image_noise_real_floor 0")
    args = parser.parse_args(argv)
    readings = {}
    for bench in map(Path, args.bench):
        missing = [
            name
            for name in ("benchmark.json", "train_hr", "train_real_lr", "train_oracle_lr")
            if not (bench / name).exists()
        ]
        if missing:
            raise UserError(f"{bench} has no {', '.join(missing)}: not a benchmark folder (data_tools.make_benchmark)")
        try:
            readings[bench.name] = read_levels(bench, args.config, args.overrides)
        except ValueError as error:  # the noise estimate's: images too small or too few
            raise UserError(f"{bench}: {error}") from error
        print(f"{bench.name}: mean |log ratio| {readings[bench.name]['mean_abs_log_ratio']:.3f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = table(readings)
    (out / "noise_levels.json").write_text(json.dumps({"overrides": args.overrides, "benches": readings}, indent=1))
    (out / "noise_levels.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
