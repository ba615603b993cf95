"""How close a flow's degradations are to the true ones, on a benchmark whose truth is known.

On a ``data_tools.make_benchmark`` folder, the flow degrades ``train_hr`` and
its residuals against the clean LR are compared with those of the true
degradation (``train_oracle_lr``), arm by arm: the truth re-seeded (the floor),
no degradation, white noise of the real std, and the flow at each temperature.
``benchmarks/flow_fidelity.py`` (tables over several benchmarks) and
``benchmarks/joint_effect.py`` use it; users without an oracle use
``degradation.fidelity`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unpaired_sr.common.config import load_config
from unpaired_sr.common.figures import grid, upscale_nearest
from unpaired_sr.common.image_io import image_to_tensor, list_images, read_image, to_float32
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.data_tools.degrade_classical import degrade, image_rng
from unpaired_sr.degradation.config import FlowConfig
from unpaired_sr.degradation.noise import NUM_BINS, estimate_noise
from unpaired_sr.degradation.realism import (
    RegionMap,
    autocorrelation,
    frechet_distance,
    gradient_magnitude,
    latent_check,
    luma,
    patches,
    photo_group,
    region_std,
    residual_statistics,
    two_sample_accuracy,
)
from unpaired_sr.degradation.sampling import degrade_image, sample_seed

TEMPERATURES = (0.5, 0.8, 1.0)


@torch.no_grad()
def paired_fidelity(
    flow, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, temperature: float, seed: int = 0
) -> dict[str, float]:
    """The flow's residuals against those of a paired (real LR, HR) set: is it still degrading like the source?

    Each HR image's clean LR is degraded by the flow with fixed noise draws
    (so the figures move only when the flow does); its residual against the
    clean LR is compared with the real LR's. Returns the residual std of both
    (mean over channels, 0-1 units) and the Frechet distance of their 8x8
    residual patches: a flow that learns to make degradations easy shows a
    falling ``synth_residual_std`` and a rising ``frechet_8x8`` here first.
    """
    synth_residuals, real_residuals = [], []
    device = next(flow.parameters()).device
    for index, (real_lr, hr) in enumerate(pairs):
        hr_batch, image_seed = image_to_tensor(hr)[None], sample_seed(seed, str(index))
        clean = clean_lr_from_hr(hr_batch, scale)[0]
        # bicubic, or decimated where real images alias (on the sample's own grid where the phase is random)
        start = flow.downscale(hr_batch, scale, [image_seed])[0]
        synth = degrade_image(flow, start.to(device), temperature, image_seed).cpu()
        clean_image = clean.permute(1, 2, 0).numpy()
        height, width = real_lr.shape[:2]
        synth_image = (torch.round(synth * 255) / 255).permute(1, 2, 0).numpy()
        synth_residuals.append(synth_image[:height, :width] - clean_image[:height, :width])
        real_residuals.append(to_float32(real_lr) - clean_image[:height, :width])
    return {
        "synth_residual_std": float(np.mean([r.std() for r in synth_residuals])),
        "real_residual_std": float(np.mean([r.std() for r in real_residuals])),
        "frechet_8x8": frechet_distance(patches(synth_residuals), patches(real_residuals)),
    }


REAL = "real (oracle)"


def region_summary(arm_std: dict[int, list[float]], real_std: dict[int, list[float]]) -> dict[str, float]:
    """Worst ratio (arm / real, RMS over channels) over the regions, and the share within 25%."""
    ratios = [
        float(np.sqrt(np.mean(np.square(arm_std[label]))) / max(np.sqrt(np.mean(np.square(real))), 1e-8))
        for label, real in real_std.items()
    ]
    worst = max(ratios, key=lambda ratio: abs(np.log(max(ratio, 1e-8))))
    return {"worst_region_ratio": worst, "regions_within_25pct": float(np.mean([0.75 <= r <= 1.25 for r in ratios]))}


def figure_crops(clean: dict[str, np.ndarray], arms: dict[str, dict[str, np.ndarray]], size: int = 24) -> np.ndarray:
    """The flattest and the darkest crop of the set, and two more: clean | each arm."""
    candidates = []
    for name, image in clean.items():
        for top in range(0, image.shape[0] - size + 1, size // 2):
            for left in range(0, image.shape[1] - size + 1, size // 2):
                crop = image[top : top + size, left : left + size]
                candidates.append((name, top, left, gradient_magnitude(crop).mean(), luma(crop).mean()))
    flattest = min(candidates, key=lambda c: c[3])
    darkest = min(candidates, key=lambda c: c[4])
    busiest = max(candidates, key=lambda c: c[3])
    middle = sorted(candidates, key=lambda c: c[3])[len(candidates) // 2]
    rows = []
    for name, top, left, *_ in (flattest, darkest, middle, busiest):
        images = [clean[name], *(arm[name] for arm in arms.values())]
        rows.append(
            [upscale_nearest(np.clip(image[top : top + size, left : left + size], 0, 1), 5) for image in images]
        )
    return grid(rows, ["clean LR", *arms])


def noise_level_check(flow, clean_lr: list[np.ndarray], oracle_lr: list[np.ndarray], flattest: float = 0.1) -> dict:
    """The flow's image-noise level per brightness bin beside two references that need the truth.

    ``paired``: the same estimate made from the clean LR images and their own
    true degradation ``oracle_lr``, which a user never has: what the method
    reads when the two sets hold the same content. ``flattest_true``: the true
    residual's std in the flattest ``flattest`` of each bin's clean pixels
    (noise, and what little blur shows there). Per bin: R/G/B std in 0-1
    units, and the luma each bin was measured at.
    """
    paired = estimate_noise(clean_lr, oracle_lr)
    return {
        "flow": flow.image_noise.rgb_std().tolist(),
        "flow_brightness": flow.image_noise.brightness.cpu().tolist(),
        "paired": paired.rgb_std().tolist(),
        "paired_brightness": paired.brightness.tolist(),
        "flattest_true": flattest_true_residual(clean_lr, oracle_lr, flattest),
    }


def _brightness_bins(image: np.ndarray) -> np.ndarray:
    """(H, W) int: the brightness bin of each pixel's luma (``NUM_BINS`` of equal width, as the noise estimate's)."""
    return np.clip((luma(image) * NUM_BINS).astype(int), 0, NUM_BINS - 1)


def flattest_pixels(clean_lr: list[np.ndarray], flattest: float = 0.1) -> list[np.ndarray]:
    """Per image, an (H, W) bool mask of the pixels in the flattest ``flattest`` of their brightness bin (the
    clean images' gradient magnitude, over the whole set; none in a bin of fewer than 100 pixels)."""
    brightness = [_brightness_bins(c) for c in clean_lr]
    texture = [gradient_magnitude(c) for c in clean_lr]
    all_bins = np.concatenate([b.ravel() for b in brightness])
    all_texture = np.concatenate([t.ravel() for t in texture])
    limits = np.full(NUM_BINS, -np.inf)
    for b in range(NUM_BINS):
        if (all_bins == b).sum() >= 100:
            limits[b] = np.quantile(all_texture[all_bins == b], flattest)
    return [t <= limits[b] for b, t in zip(brightness, texture)]


def flattest_true_residual(clean_lr: list[np.ndarray], oracle_lr: list[np.ndarray], flattest: float = 0.1) -> list:
    """(NUM_BINS, 3): the true residual's R/G/B std (0-1 units) in the flattest ``flattest`` of each brightness bin's
    clean pixels (NaN for a bin of fewer than 100 pixels): the noise, and what little blur shows there."""
    residuals = np.concatenate([(o - c).reshape(-1, 3) for o, c in zip(oracle_lr, clean_lr)])
    bins = np.concatenate([_brightness_bins(c).ravel() for c in clean_lr])
    flat = np.concatenate([mask.ravel() for mask in flattest_pixels(clean_lr, flattest)])
    return [
        residuals[flat & (bins == b)].std(axis=0).tolist() if (flat & (bins == b)).any() else [float("nan")] * 3
        for b in range(NUM_BINS)
    ]


def flattest_lag1(flat: list[np.ndarray], residuals: list[np.ndarray]) -> float:
    """The lag-1 autocorrelation of ``residuals`` ((H, W, 3), channels pooled, horizontal and vertical
    neighbours) over the pairs of pixels both in ``flat`` (``flattest_pixels`` of the clean images): how grainy
    or blotchy the noise is where the content shows least. NaN where no such pair or no residual is."""
    pairs = sum(int((mask[:, :-1] & mask[:, 1:]).sum() + (mask[:-1] & mask[1:]).sum()) for mask in flat)
    if pairs < 2 or max(float(r[mask].std()) if mask.any() else 0.0 for r, mask in zip(residuals, flat)) < 1e-12:
        return float("nan")  # no pairs, or no residual there: no grain to read
    return autocorrelation(residuals, 1, flat)


def evaluate(
    flow,
    bench: Path,
    temperatures: tuple[float, ...],
    num_bins: int,
    seed: int = 0,
    classifier_steps: int = 300,
    classifier_splits: int = 1,
):
    meta = json.loads((bench / "benchmark.json").read_text())
    scale, preset = meta["scale"], meta["degradation"]
    names = [p.stem for p in list_images(bench / "train_hr")]
    clean, lr_images = {}, {}
    clean_tensors, start_tensors = {}, {}
    for name in names:
        hr = read_image(bench / "train_hr" / f"{name}.png")
        hr_batch = image_to_tensor(hr)[None]
        clean_tensors[name] = clean_lr_from_hr(hr_batch, scale)[0]
        start_tensors[name] = flow.downscale(hr_batch, scale, [sample_seed(seed, name)])[0]  # each sample's own seed
        clean[name] = clean_tensors[name].permute(1, 2, 0).numpy()
        reseeded = degrade(hr, scale, preset, image_rng(meta["seed"] + 1000, name))
        lr_images.setdefault("true, re-seeded", {})[name] = np.round(np.clip(reseeded, 0, 1) * 255) / 255
        lr_images.setdefault(REAL, {})[name] = read_image(bench / "train_oracle_lr" / f"{name}.png")
    real_residuals = [lr_images[REAL][n] - clean[n] for n in names]
    real_std = np.concatenate([r.reshape(-1, 3) for r in real_residuals]).std(axis=0)
    rng = np.random.default_rng(seed)
    lr_images["no degradation"] = dict(clean)
    lr_images["white gaussian"] = {n: np.clip(clean[n] + rng.normal(0, real_std, clean[n].shape), 0, 1) for n in names}
    for temperature in temperatures:
        lr_images[f"flow T={temperature}"] = {
            n: (torch.round(degrade_image(flow, start_tensors[n], temperature, sample_seed(seed, n)) * 255) / 255)
            .permute(1, 2, 0)
            .numpy()
            for n in names
        }
    real_paths = list_images(bench / "train_real_lr")
    real_lr = [read_image(path) for path in real_paths]
    real_groups = [photo_group(path.stem) for path in real_paths]
    regions = RegionMap.of([clean[n] for n in names])
    real_regions = region_std(real_residuals, regions)
    real_patches = patches(real_residuals)
    rows = []
    for arm, images in lr_images.items():
        residuals = [images[n] - clean[n] for n in names]
        row = {"arm": arm, **residual_statistics(residuals)}
        arm_regions = region_std(residuals, regions)
        row["region_std"] = {RegionMap.name(label): arm_regions[label] for label in real_regions}
        row.update(region_summary(arm_regions, real_regions))
        row["frechet_8x8"] = 0.0 if arm == REAL else frechet_distance(patches(residuals), real_patches)
        if arm != REAL:
            test = two_sample_accuracy(
                real_lr,
                [images[n] for n in names],
                steps=classifier_steps,
                seed=seed,
                splits=classifier_splits,
                real_groups=real_groups,
                synthesized_groups=[photo_group(n) for n in names],
            )
            row["two_sample_accuracy"] = test["accuracy"]
            row["two_sample_split_accuracies"] = test["split_accuracies"]
        rows.append(row)
    latents = latent_check(
        flow, [clean_tensors[n] for n in names], [image_to_tensor(image) for image in real_lr[: len(names)]], num_bins
    )
    shown = {arm: lr_images[arm] for arm in lr_images if arm.startswith("flow") or arm == REAL}
    noise_level = None
    if flow.image_noise.is_estimated:
        noise_level = noise_level_check(flow, [clean[n] for n in names], [lr_images[REAL][n] for n in names])
    return rows, latents, figure_crops(clean, shown), noise_level


def benchmark_scale(bench: Path) -> int:
    """The scale a benchmark (``data_tools.make_benchmark``'s layout) was built at."""
    return int(json.loads((Path(bench) / "benchmark.json").read_text())["scale"])


def benchmark_flow_config(
    bench: Path, config_file: str, steps: int, device: str, overrides: list[str] = ()
) -> FlowConfig:
    """The flow config for training on a benchmark's ``train_hr`` + ``train_real_lr`` for ``steps`` steps, at
    the benchmark's scale."""
    words = ["--data.clean_dir", str(bench / "train_hr"), "--data.real_dir", str(bench / "train_real_lr")]
    words += ["--data.scale", str(benchmark_scale(bench))]
    words += ["--train.n_iter", str(steps), "--train.device", device]
    words += ["--train.sample_every", str(steps), "--train.save_every", str(steps), *overrides]
    return load_config(FlowConfig, config_file, words)
