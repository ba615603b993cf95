"""``benchmarks/noise_levels.py``: the image-noise estimate against the true noise on a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import real_photo
from unpaired_sr.common.image_io import write_image
from unpaired_sr.common.matlab_resize import downscale

ROOT = Path(__file__).resolve().parents[2]
LEVEL = 4 / 255  # the true noise: white, the same in every channel and at every brightness


def noisy_benchmark(folder: Path, blotch_px: float = 0.0) -> Path:
    """A x4 benchmark whose degradation is bicubic + noise of ``LEVEL`` (white, or blurred by a Gaussian of
    ``blotch_px`` LR px and scaled back to ``LEVEL``: blotchy): clean photos with their truth, other photos as
    the real set."""
    rng = np.random.default_rng(0)
    for split in ("train_hr", "train_oracle_lr", "train_real_lr"):
        (folder / split).mkdir(parents=True)

    def degraded(hr: np.ndarray) -> np.ndarray:
        lr = np.round(np.clip(downscale(hr, 4), 0, 1) * 255) / 255
        noise = rng.standard_normal(lr.shape).astype(np.float32)
        if blotch_px > 0:
            noise = cv2.GaussianBlur(noise, (0, 0), blotch_px, borderType=cv2.BORDER_REFLECT_101)
            noise /= noise.std()
        return np.clip(lr + LEVEL * noise, 0, 1)

    for name in ("astronaut", "coffee", "chelsea"):
        hr = real_photo(name, 256)
        write_image(folder / "train_hr" / f"{name}.png", hr)
        write_image(folder / "train_oracle_lr" / f"{name}.png", degraded(hr))
    for name in ("rocket", "camera", "immunohistochemistry"):
        write_image(folder / "train_real_lr" / f"{name}.png", degraded(real_photo(name, 256)))
    (folder / "benchmark.json").write_text('{"degradation": "noise", "scale": 4, "seed": 0}')
    return folder


def test_the_level_reading_finds_the_true_noise_and_the_estimate_near_it(tmp_path):
    bench = noisy_benchmark(tmp_path / "bench")
    out = tmp_path / "levels"
    command = [sys.executable, "benchmarks/noise_levels.py", "--bench", str(bench), "--output", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    reading = json.loads((out / "noise_levels.json").read_text())["benches"]["bench"]
    truth, estimate = np.array(reading["truth"]), np.array(reading["estimate"])
    # Measured: the truth 3.8-4.1 levels by bin; the estimate 3.8 / 4.1 / 3.9 in the middle bins (4.8 in the darkest).
    assert np.allclose(truth[np.isfinite(truth)], 4.0, rtol=0.05), truth
    assert np.allclose(estimate[1:4], 4.0, rtol=0.25), estimate
    assert abs(reading["mean_abs_log_ratio"] - np.nanmean(np.abs(np.log(reading["ratios"])))) < 0.005
    assert "| bench |" in (out / "noise_levels.md").read_text() and "over 1 benchmarks" in result.stdout
    # A flow config override reaches the estimate: the real set alone reads its flattest content as noise too
    # (measured: 4.7 / 4.8 / 4.6 levels in the middle bins).
    busier = [*command[:-1], str(tmp_path / "busier"), "--", "--model.image_noise_against_clean", "false"]
    result = subprocess.run(busier, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    busier_reading = json.loads((tmp_path / "busier" / "noise_levels.json").read_text())
    assert busier_reading["overrides"] == ["--model.image_noise_against_clean", "false"]
    assert (np.array(busier_reading["benches"]["bench"]["estimate"])[1:4] > 1.1 * estimate[1:4]).all()


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "train_hr").mkdir()
    command = [sys.executable, "benchmarks/noise_levels.py", "--bench", str(tmp_path)]
    run = dict(cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = subprocess.run(command, **run)
    assert result.returncode == 2 and result.stderr.startswith("error:"), result.stderr
    assert "no benchmark.json, train_real_lr, train_oracle_lr: not a benchmark folder" in result.stderr
    # A config override with a typo: one line naming it, no traceback.
    (tmp_path / "benchmark.json").write_text('{"degradation": "noise", "scale": 4, "seed": 0}')
    for name in ("train_real_lr", "train_oracle_lr"):
        (tmp_path / name).mkdir()
    result = subprocess.run([*command, "--", "--model.image_noise_quiet_fractio", "0.01"], **run)
    assert result.returncode == 2 and "image_noise_quiet_fraction" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_grain_reading_tells_white_noise_from_blotchy_noise(tmp_path):
    readings = {}
    for name, blotch_px in (("white", 0.0), ("blotchy", 1.0)):
        bench = noisy_benchmark(tmp_path / name, blotch_px)
        command = [
            sys.executable,
            "benchmarks/noise_levels.py",
            "--bench",
            str(bench),
            "--output",
            str(tmp_path / f"{name}_out"),
        ]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        readings[name] = json.loads((tmp_path / f"{name}_out" / "noise_levels.json").read_text())["benches"][name]
        assert "lag-1: mean |estimate - truth|" in result.stdout
    white, blotchy = readings["white"], readings["blotchy"]
    # The truth: white noise (and the 8-bit rounding) reads about 0, noise blurred by 1 px about 0.8.
    assert abs(white["true_lag1"]) < 0.05 and blotchy["true_lag1"] > 0.6, (white, blotchy)
    # The estimate, read against other photos than the real ones, follows it part of the way: measured 0.24 and
    # 0.50 (the other photos' flattest content reads as grain; the fidelity log, forty-ninth round).
    assert blotchy["lag1"] > white["lag1"] + 0.15, (white, blotchy)
