"""Evaluation of SR methods on an LR test set: metrics per image, a summary, a comparison figure.

The library behind ``evaluate.py`` (see its docstring for the conventions:
BasicSR's border crop, Y channel, SSIM window; LPIPS AlexNet v0.1; NIQE
without ground truth)::

    summary = evaluate(lr_dir, hr_dir, 4, out_dir, models=[("flow", "runs/sr/checkpoints/last.pt")])
    print(format_table(summary))
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.figures import grid, label, upscale_nearest
from unpaired_sr.common.files import atomic_write_bytes, staged_output_dir
from unpaired_sr.common.image_io import image_to_tensor, list_images, read_image, tensor_to_image, write_image
from unpaired_sr.common.matlab_resize import imresize, mod_crop
from unpaired_sr.common.niqe_params import load_niqe_params
from unpaired_sr.common.training import select_device
from unpaired_sr.sr.checkpoint import load_sr
from unpaired_sr.sr.lpips_metric import LPIPSUnavailable, load_lpips
from unpaired_sr.sr.metrics import SSIM_MIN_SIZE, psnr, ssim
from unpaired_sr.sr.niqe import PATCH, niqe
from unpaired_sr.sr.upscale import upscale_image


@dataclass
class Method:
    name: str
    kind: str  # "bicubic", "checkpoint" or "folder"
    source: str = ""
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def match_pairs(lr_dir: str, hr_dir: str | None, scale: int) -> list[tuple[Path, Path | None]]:
    """LR files and their HR partners by name; checks HR (mod-cropped) == LR size x scale."""
    lr_paths = list_images(lr_dir, "LR folder")
    if hr_dir is None:
        return [(path, None) for path in lr_paths]
    hr_by_name = {path.stem: path for path in list_images(hr_dir, "HR folder")}
    pairs = []
    for lr_path in lr_paths:
        hr_path = hr_by_name.get(lr_path.stem)
        if hr_path is None:
            raise UserError(f"{lr_path.name} has no HR partner named {lr_path.stem}.* in {hr_dir}")
        pairs.append((lr_path, hr_path))
    extra = sorted(set(hr_by_name) - {p.stem for p in lr_paths})
    if extra:
        raise UserError(f"HR image {hr_by_name[extra[0]].name} has no LR partner in {lr_dir}")
    return pairs


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.clip(imresize(lr, scale), 0, 1).astype(np.float32)


def detail_crop(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` crop with the most gradient energy (where methods differ most)."""
    gray = hr.mean(axis=2)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
    best, best_pos = -1.0, (0, 0)
    step = max(1, size // 4)
    for top in range(0, max(1, energy.shape[0] - size + 1), step):
        for left in range(0, max(1, energy.shape[1] - size + 1), step):
            value = energy[top : top + size, left : left + size].sum()
            if value > best:
                best, best_pos = value, (top, left)
    return best_pos


def evaluate(
    lr_dir: str | Path,
    hr_dir: str | Path | None,
    scale: int,
    out_dir: str | Path,
    *,
    models: list[tuple[str, str]] = (),
    sr_dirs: list[tuple[str, str]] = (),
    crop_border: int | None = None,
    channel: str = "y",
    lpips_weights: str | None = None,
    use_lpips: bool = True,
    device: str = "auto",
    tile_size: int | None = None,
    self_ensemble: bool = False,
    figure_images: int = 4,
    overwrite: bool = False,
    quiet_lpips: bool = False,
) -> dict:
    """Run every method, compute metrics, write the outputs under ``out_dir``; returns the summary dict.

    ``models`` are (name, SR checkpoint) pairs, ``sr_dirs`` (name, folder of SR
    outputs made elsewhere); bicubic upsampling is always the first method.
    """
    if scale not in (2, 3, 4):
        raise UserError(f"--scale must be 2, 3 or 4, got {scale}")
    if channel not in ("y", "rgb"):
        raise UserError(f"--channel must be y or rgb, got {channel!r}")
    crop_border = scale if crop_border is None else crop_border
    names = ["bicubic"] + [n for n, _ in models] + [n for n, _ in sr_dirs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UserError(f"method name {duplicate!r} is used twice")
    pairs = match_pairs(lr_dir, hr_dir, scale)
    torch_device = select_device(device)
    methods = [Method("bicubic", "bicubic")]
    networks = {}
    for name, ckpt in models:
        networks[name] = load_sr(ckpt, torch_device)[0]
        if networks[name].scale != scale:
            raise UserError(f"--model {name}: {ckpt} is a x{networks[name].scale} network, the test set is x{scale}")
        methods.append(Method(name, "checkpoint", ckpt))
    for name, folder in sr_dirs:
        list_images(folder, f"--sr {name} folder")
        methods.append(Method(name, "folder", folder))
    has_hr = hr_dir is not None
    lpips_model, lpips_note = None, None
    if has_hr and use_lpips:
        try:
            lpips_model = load_lpips(lpips_weights, torch_device)
        except LPIPSUnavailable as error:
            lpips_note = str(error)
            if not quiet_lpips:
                print(f"LPIPS left out: {error}")
    niqe_params = None
    if not has_hr:  # no ground truth: the no-reference score, where its pristine model has been fetched
        niqe_params = load_niqe_params()
        if niqe_params is None and not quiet_lpips:
            print("NIQE left out: its pristine model is not here (make lpips-weights fetches it)")
    y_channel = channel == "y"
    figure_picks = set(range(0, len(pairs), max(1, len(pairs) // figure_images))[:figure_images])
    figure_cells: list[list[np.ndarray]] = []
    with staged_output_dir(out_dir, overwrite) as staging:
        for method in methods:
            (staging / method.name).mkdir()
        for index, (lr_path, hr_path) in enumerate(tqdm(pairs, desc="evaluate", unit="img", leave=False)):
            lr = read_image(lr_path)
            hr = None
            if hr_path is not None:
                hr = mod_crop(read_image(hr_path), scale)
                if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
                    raise UserError(
                        f"{hr_path.name}: HR is {hr.shape[1]}x{hr.shape[0]} after cropping to a multiple "
                        f"of {scale}, but LR {lr_path.name} is {lr.shape[1]}x{lr.shape[0]} (x{scale} = "
                        f"{lr.shape[1] * scale}x{lr.shape[0] * scale})"
                    )
                check_measurable(hr, crop_border, hr_path.name)
            outputs = {}
            for method in methods:
                start = time.perf_counter()
                if method.kind == "bicubic":
                    sr = bicubic_upscale(lr, scale)
                elif method.kind == "checkpoint":
                    sr_tensor = upscale_image(
                        networks[method.name], image_to_tensor(lr), tile_size, self_ensemble=self_ensemble
                    )
                    sr = tensor_to_image(sr_tensor)
                else:
                    sr = read_sr_output(Path(method.source), lr_path, lr, scale, method.name)
                method.seconds += time.perf_counter() - start
                write_image(staging / method.name / f"{lr_path.stem}.png", sr)
                outputs[method.name] = sr
                row = {"image": lr_path.stem}
                if hr is not None:
                    row["psnr"] = psnr(sr, hr, crop_border, y_channel)
                    row["ssim"] = ssim(sr, hr, crop_border, y_channel)
                    if lpips_model is not None:
                        row["lpips"] = lpips_distance(lpips_model, sr, hr, crop_border, torch_device)
                elif niqe_params is not None:
                    row["niqe"] = niqe_score(sr, crop_border, niqe_params)
                method.rows.append(row)
            if index in figure_picks:
                figure_cells.append(figure_row(lr, hr, outputs, scale, y_channel))
        summary = summarize(
            methods,
            scale,
            crop_border,
            channel,
            len(pairs),
            has_hr,
            lpips_model is not None,
            lpips_note,
            niqe_params is not None,
        )
        atomic_write_bytes(staging / "summary.json", json.dumps(summary, indent=2).encode())
        atomic_write_bytes(
            staging / "per_image.csv", per_image_csv(methods, has_hr, lpips_model is not None, niqe_params is not None)
        )
        if figure_cells:
            write_image(staging / "comparison.png", grid(figure_cells))
    return summary


def check_measurable(hr: np.ndarray, crop_border: int, name: str) -> None:
    """Refuse an HR image that ``crop_border`` leaves too small for SSIM's window."""
    width, height = hr.shape[1] - 2 * crop_border, hr.shape[0] - 2 * crop_border
    if min(width, height) < SSIM_MIN_SIZE:
        raise UserError(
            f"{name} is {hr.shape[1]}x{hr.shape[0]}: after --crop-border {crop_border}, {max(0, width)}x"
            f"{max(0, height)} px are left and SSIM needs {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} "
            "(use a smaller --crop-border or larger images)"
        )


def read_sr_output(folder: Path, lr_path: Path, lr: np.ndarray, scale: int, name: str) -> np.ndarray:
    candidates = [p for p in folder.iterdir() if p.stem == lr_path.stem and p.is_file()]
    if not candidates:
        raise UserError(f"--sr {name}: no output named {lr_path.stem}.* in {folder}")
    sr = read_image(candidates[0])
    expected = (lr.shape[0] * scale, lr.shape[1] * scale)
    if sr.shape[:2] != expected:
        raise UserError(
            f"--sr {name}: {candidates[0].name} is {sr.shape[1]}x{sr.shape[0]}, expected "
            f"{expected[1]}x{expected[0]} (LR x{scale})"
        )
    return sr


@torch.no_grad()
def lpips_distance(model, sr: np.ndarray, hr: np.ndarray, crop_border: int, device) -> float:
    if crop_border:
        sr, hr = (
            sr[crop_border:-crop_border, crop_border:-crop_border],
            hr[crop_border:-crop_border, crop_border:-crop_border],
        )
    to_input = lambda x: (image_to_tensor(np.ascontiguousarray(x))[None] * 2 - 1).to(device)
    return float(model(to_input(sr), to_input(hr)))


def figure_row(lr, hr, outputs: dict[str, np.ndarray], scale: int, y_channel: bool) -> list[np.ndarray]:
    """One figure row: LR (nearest) | each method | HR, on the crop with the most detail, PSNR on each."""
    size = min(96, (min(lr.shape[:2]) * scale) // scale * scale)
    reference = hr if hr is not None else outputs["bicubic"]
    top, left = detail_crop(reference, size)
    top, left = top // scale * scale, left // scale * scale
    crop = lambda x: x[top : top + size, left : left + size]
    lr_crop = lr[top // scale : (top + size) // scale, left // scale : (left + size) // scale]
    cells = [label(upscale_nearest(lr_crop, scale), "LR")]
    for name, sr in outputs.items():
        text = name
        if hr is not None:
            text += f" {psnr(crop(sr), crop(hr), 0, y_channel):.2f}dB"
        cells.append(label(crop(sr), text))
    if hr is not None:
        cells.append(label(crop(hr), "HR"))
    return cells


def niqe_score(sr: np.ndarray, crop_border: int, params) -> float:
    """NIQE of an SR output (borders cropped); NaN for an image smaller than one 96x96 patch."""
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
    if min(sr.shape[:2]) < PATCH:
        return float("nan")
    return niqe(sr, *params)


def summarize(methods, scale, crop_border, channel, num_images, has_hr, has_lpips, lpips_note, has_niqe=False) -> dict:
    summary = {
        "settings": {
            "scale": scale,
            "crop_border": crop_border,
            "y_channel": channel == "y",
            "channel": channel,
            "lpips": "alex v0.1" if has_lpips else None,
            "lpips_note": lpips_note,
            "niqe": "MATLAB release's pristine model, luma, 96x96 patches" if has_niqe else None,
            "ground_truth": has_hr,
        },
        "methods": {},
    }
    for method in methods:
        entry = {"kind": method.kind, "source": method.source, "n_images": num_images}
        if has_hr:
            for metric in ("psnr", "ssim"):
                values = [row[metric] for row in method.rows]
                entry[metric] = float(np.mean(values)) if np.all(np.isfinite(values)) else float("inf")
            entry["lpips"] = float(np.mean([row["lpips"] for row in method.rows])) if has_lpips else None
        elif has_niqe:
            scores = [row["niqe"] for row in method.rows if np.isfinite(row["niqe"])]
            entry["niqe"] = float(np.mean(scores)) if scores else None
        if method.kind != "folder":
            entry["seconds_per_image"] = method.seconds / max(1, num_images)
        summary["methods"][method.name] = entry
    return summary


def per_image_csv(methods, has_hr: bool, has_lpips: bool, has_niqe: bool = False) -> bytes:
    buffer = io.StringIO()
    columns = ["method", "image"] + (["psnr", "ssim"] if has_hr else []) + (["lpips"] if has_lpips else [])
    columns += ["niqe"] if has_niqe else []
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for method in methods:
        for row in method.rows:
            writer.writerow(
                {"method": method.name, **{k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()}}
            )
    return buffer.getvalue().encode()


def _cell(entry: dict, key: str, fmt: str) -> str:
    return format(entry[key], fmt) if entry.get(key) is not None else "-"


def format_table(summary: dict) -> str:
    settings = summary["settings"]
    channel = "Y" if settings["y_channel"] else "RGB"
    with_niqe = bool(settings.get("niqe"))
    header = f"{'method':<20} {'PSNR (' + channel + ')':>11} {'SSIM (' + channel + ')':>11} {'LPIPS':>7} {'s/image':>8}"
    header += f" {'NIQE':>7}" if with_niqe else ""
    lines = [header, "-" * len(header)]
    for name, entry in summary["methods"].items():
        lines.append(
            f"{name:<20} {_cell(entry, 'psnr', '.3f'):>11} {_cell(entry, 'ssim', '.4f'):>11} "
            f"{_cell(entry, 'lpips', '.4f'):>7} {_cell(entry, 'seconds_per_image', '.3f'):>8}"
            + (f" {_cell(entry, 'niqe', '.3f'):>7}" if with_niqe else "")
        )
    num_images = next(iter(summary["methods"].values()))["n_images"]
    lines.append(f"x{settings['scale']}, crop {settings['crop_border']} px, {num_images} images")
    if not settings["ground_truth"]:
        lines.append(
            "no --hr given: PSNR, SSIM and LPIPS need ground truth"
            + ("; NIQE (no reference, lower is better) does not" if with_niqe else "")
        )
    return "\n".join(lines)
