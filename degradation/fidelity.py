"""Is the learned degradation realistic? A check that needs no ground truth, for your own data.

    python -m degradation.fidelity --ckpt runs/flow/checkpoints/last.pt \\
        --clean-dir HR_DIR --real-dir REAL_LR_DIR --output runs/flow/fidelity

The flow degrades the clean photos; a small CNN is then trained to tell your
real LR images from those synthesized ones (crops of other photos, so it must
judge the degradation, not the scene) and tested on images it did not train
on. **Accuracy near 50%**: the two are hard to tell apart, the flow's samples
look like your source. **Near 100%**: they differ plainly. The same test of
the clean LR images themselves ("no degradation") stands beside it as the
reference: a useful flow is well below it. With few photos the answer
depends on which photos the classifier trains on, so it is repeated over
``--splits`` random splits (default 5) and averaged, and their range is
printed; where even the clean LR images come out below 65%, the classifier
cannot see your source's degradation on these photos and the check says so
rather than judge the flow (more photos help; so does the figure). Also reported: the colour shift
the flow adds (a degradation such as noise, blur or JPEG keeps the colours of
the scene, so this should be within about a level) and the strength of what
it adds (residual std). Writes ``fidelity.json`` and ``fidelity.png`` (real
and synthesized crops side by side).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unpaired_sr.common.cli import ArgumentParser, at_least, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.figures import grid, upscale_nearest
from unpaired_sr.common.image_io import image_to_tensor, list_images, read_image, write_image
from unpaired_sr.common.matlab_resize import clean_lr_from_hr, mod_crop
from unpaired_sr.common.training import select_device
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.degradation.realism import photo_group, two_sample_accuracy
from unpaired_sr.degradation.sampling import degrade_image, sample_seed


def read_folder(folder: str | Path, what: str, scale: int = 1, limit: int | None = None) -> dict[str, np.ndarray]:
    """Images of a folder by name (float RGB), HR mod-cropped to ``scale``."""
    paths = list_images(folder, what)[:limit]
    return {path.stem: mod_crop(read_image(path), scale) for path in paths}


def check_fidelity(
    ckpt: str | Path,
    clean_dir: str | Path,
    real_dir: str | Path,
    temperature: float | None = None,
    device: str = "auto",
    seed: int = 0,
    steps: int = 300,
    max_images: int | None = None,
    splits: int = 5,
) -> tuple[dict, np.ndarray]:
    """The report (a dict) and the figure of the two-sample check."""
    flow, config = load_flow(ckpt, select_device(device))
    scale = config.data.scale
    temperature = 1.0 if temperature is None else temperature
    clean_hr = read_folder(clean_dir, "clean folder", scale, max_images)
    real_by_name = read_folder(real_dir, "real folder", 1, max_images)
    real = list(real_by_name.values())
    groups = {
        "real_groups": [photo_group(n) for n in real_by_name],
        "synthesized_groups": [photo_group(n) for n in clean_hr],
    }
    clean_lr, synthesized = [], []
    for name, hr in tqdm(clean_hr.items(), desc="synthesize", unit="img", leave=False):
        hr_batch = image_to_tensor(hr)[None]
        clean_lr.append(clean_lr_from_hr(hr_batch, scale)[0].permute(1, 2, 0).numpy())
        image_seed = sample_seed(seed, name)
        start = flow.downscale(hr_batch, scale, [image_seed])[0]
        degraded = degrade_image(flow, start, temperature, image_seed)
        synthesized.append((torch.round(degraded * 255) / 255).permute(1, 2, 0).cpu().numpy())
    try:
        flow_test = two_sample_accuracy(real, synthesized, steps=steps, seed=seed, splits=splits, **groups)
        reference = two_sample_accuracy(real, clean_lr, steps=steps, seed=seed, splits=splits, **groups)
    except ValueError as error:
        raise UserError(str(error)) from error
    residual = np.concatenate([(s - c).reshape(-1, 3) for s, c in zip(synthesized, clean_lr)]) * 255
    report = {
        "ckpt": str(ckpt),
        "temperature": temperature,
        "num_clean": len(clean_lr),
        "num_real": len(real),
        "classifier_splits": splits,
        "two_sample_accuracy": flow_test,
        "two_sample_accuracy_no_degradation": reference,
        "colour_shift_levels": residual.mean(axis=0).tolist(),
        "residual_std_levels": residual.std(axis=0).tolist(),
    }
    shown = min(4, len(real), len(synthesized))
    size = min(48, *(min(image.shape[:2]) for image in real[:shown] + synthesized[:shown]))
    rows = [[upscale_nearest(image[:size, :size], 3) for image in (real[i], synthesized[i])] for i in range(shown)]
    figure = grid(rows, ["real LR", f"synthesized, T={temperature}"])
    return report, figure


def _percent(test: dict) -> str:
    """``61%``, or ``61% (splits 47-80%)`` where the test was repeated over several splits."""
    splits = test.get("split_accuracies", [])
    spread = f" (splits {100 * min(splits):.0f}-{100 * max(splits):.0f}%)" if len(splits) > 1 else ""
    return f"{100 * test['accuracy']:.1f}%{spread}"


def verdict(flow_accuracy: float, reference_accuracy: float) -> str:
    """What the two accuracies say; no verdict where the classifier cannot tell the clean images either."""
    if reference_accuracy < 0.65:
        return (
            "inconclusive: the classifier cannot tell even the clean LR images from the real ones on these photos "
            "(too few photos, or a degradation it does not see), so it cannot judge the flow; look at fidelity.png"
        )
    if flow_accuracy < 0.65:
        return "hard to tell apart"
    if flow_accuracy < reference_accuracy - 0.05:
        return "distinguishable, but closer than no degradation"
    return "no closer to the real images than the clean ones: the flow has not learned the degradation"


def summary_lines(report: dict) -> list[str]:
    flow, reference = report["two_sample_accuracy"], report["two_sample_accuracy_no_degradation"]
    shift = "/".join(f"{v:+.1f}" for v in report["colour_shift_levels"])
    std = "/".join(f"{v:.1f}" for v in report["residual_std_levels"])
    return [
        f"two-sample classifier accuracy (50% = indistinguishable): flow at T={report['temperature']} "
        f"{_percent(flow)}, no degradation {_percent(reference)}: {verdict(flow['accuracy'], reference['accuracy'])}",
        f"colour shift the flow adds (R/G/B levels): {shift}; residual std: {std} "
        f"({report['num_clean']} clean, {report['num_real']} real images)",
    ]


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m degradation.fidelity", __doc__)
    parser.add_argument("--ckpt", required=True, help="a trained flow (or joint) checkpoint")
    parser.add_argument("--clean-dir", required=True, help="clean HR photos (other than the ones the flow trained on)")
    parser.add_argument("--real-dir", required=True, help="real LR images")
    parser.add_output_option("folder for fidelity.json and fidelity.png", dest="out")
    parser.add_argument("--temperature", type=at_least(0.0, float), default=1.0)
    parser.add_argument("--steps", type=at_least(1), default=300, help="classifier training steps")
    parser.add_argument(
        "--splits", type=at_least(1), default=5, help="random photo splits to repeat the classifier on (averaged)"
    )
    parser.add_argument("--max-images", type=at_least(1), help="use at most this many images of each folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    report, figure = check_fidelity(
        args.ckpt,
        args.clean_dir,
        args.real_dir,
        args.temperature,
        args.device,
        args.seed,
        args.steps,
        args.max_images,
        args.splits,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(report, indent=2))
    write_image(out / "fidelity.png", figure)
    print(*summary_lines(report), f"wrote {out / 'fidelity.json'} and {out / 'fidelity.png'}", sep="\n")


if __name__ == "__main__":
    main()
