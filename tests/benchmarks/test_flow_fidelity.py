"""The statistics of degradation realism (``degradation.realism``) and the user's fidelity command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.degradation.realism import (
    RegionMap,
    frechet_distance,
    high_pass,
    photo_group,
    region_std,
    residual_statistics,
    two_sample_accuracy,
)

ROOT = Path(__file__).resolve().parents[2]


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1 / 255, (20000, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # N(0, s1^2 I) vs N(m, s2^2 I) in d dims: |m|^2 + d (s1 - s2)^2 (units of 1/255).
    b = rng.normal(0.5 / 255, 3 / 255, (20000, 4))
    assert frechet_distance(a, b) == pytest.approx(4 * 0.25 + 4 * (1 - 3) ** 2, rel=0.05)
    zeros = np.zeros((100, 4))  # a singular covariance is fine
    assert frechet_distance(zeros, b) == pytest.approx(4 * 0.25 + 4 * 9, rel=0.05)


def test_residual_statistics_on_constructed_fields():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 0.1, (64, 64, 1))
    correlated = np.repeat(white, 3, axis=2) + rng.normal(0, 0.1, (64, 64, 3))  # channel corr 0.5
    stats = residual_statistics([correlated + 0.02])
    assert stats["cross_channel_corr"] == pytest.approx(0.5, abs=0.05)
    assert all(abs(a) < 0.05 for a in stats["autocorr"])
    assert stats["mean"] == pytest.approx([0.02] * 3, abs=0.005)
    # Noise shared by the channels is pure luma: (1 - 0.5) of the energy is in the equal-channel direction.
    assert residual_statistics([np.repeat(white, 3, axis=2)])["luma_energy_share"] > 0.95
    smooth = (correlated[1:] + correlated[:-1])[:, 1:] + (correlated[1:] + correlated[:-1])[:, :-1]
    lags = residual_statistics([smooth])["autocorr"]
    assert lags[0] > 0.4 and abs(lags[3]) < 0.05
    assert residual_statistics([np.zeros((8, 8, 3))])["std"] == [0.0, 0.0, 0.0]


def test_region_std_finds_noise_where_it_is():
    image = real_photo("camera", 128)  # gray: a dark coat, a bright sky
    rng = np.random.default_rng(0)
    dark_only = rng.normal(0, 0.05, image.shape) * (image.mean(axis=2, keepdims=True) < 0.2)
    regions = RegionMap.of([image])
    stds = region_std([dark_only], regions, min_pixels=50)
    for label, std in stds.items():
        dark = RegionMap.name(label).startswith("luma 0.0-0.2")
        assert (np.mean(std) > 0.03) == dark, RegionMap.name(label)
    assert len(regions.texture_edges) == 2 and regions.texture_edges[0] < regions.texture_edges[1]


def test_high_pass_removes_the_scene_colour():
    images = torch.rand(2, 3, 16, 16) * 0.1
    features = high_pass(images)
    shifted = high_pass(images + torch.tensor([0.3, 0.0, -0.05]).view(1, 3, 1, 1))
    torch.testing.assert_close(features[:, :3], shifted[:, :3], atol=1e-5, rtol=0)
    assert features.shape == (2, 4, 16, 16)


def tiles(image: np.ndarray, size: int = 48) -> list[np.ndarray]:
    return [
        image[t : t + size, s : s + size]
        for t in range(0, image.shape[0] - size + 1, size)
        for s in range(0, image.shape[1] - size + 1, size)
    ]


@pytest.mark.slow
def test_two_sample_classifier_tells_noise_and_not_a_reseeded_truth():
    # "Real": noisy tiles (std 8 levels) of eight photos; the other set: other tiles of the same photos, clean
    # (plainly different) or with the same noise drawn again (indistinguishable). Split by photo.
    rng = np.random.default_rng(0)
    noisy = lambda image: np.clip(image + rng.normal(0, 8 / 255, image.shape), 0, 1)  # noqa: E731
    real, other, groups = [], [], []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera"):
        photo_tiles = tiles(real_photo(name)[:192, :192])
        real += [noisy(tile) for tile in photo_tiles[0::2]]
        other += photo_tiles[1::2]
        groups += [name] * (len(photo_tiles) // 2)
    kwargs = {"steps": 100, "test_crops": 256, "real_groups": groups, "synthesized_groups": groups}
    clean = two_sample_accuracy(real, other, **kwargs)
    same = two_sample_accuracy(real, [noisy(image) for image in other], **kwargs)
    assert clean["accuracy"] > 0.9, clean
    assert same["accuracy"] < 0.65, same
    with pytest.raises(ValueError, match="at least 2 real images"):
        two_sample_accuracy(real[:1], other)
    assert photo_group("rocket_t003") == "rocket" and photo_group("0001_s012") == "0001" and photo_group("a_t") == "a_t"


def test_two_sample_accuracy_averages_over_photo_splits_and_the_verdict_needs_a_telling_reference():
    from unpaired_sr.degradation.fidelity import verdict

    rng = np.random.default_rng(0)
    images = [rng.random((40, 40, 3)) for _ in range(8)]
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    kwargs = {"steps": 5, "test_crops": 16, "real_groups": groups, "synthesized_groups": groups}
    noisy = [np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1) for image in images]
    three = two_sample_accuracy(noisy, images[::-1], seed=4, splits=3, **kwargs)
    singles = [two_sample_accuracy(noisy, images[::-1], seed=4 + k, **kwargs)["accuracy"] for k in range(3)]
    assert three["split_accuracies"] == singles  # split k is the one-split test at seed + k
    assert three["accuracy"] == pytest.approx(np.mean(three["split_accuracies"]))
    assert three["stderr"] == pytest.approx(np.std(three["split_accuracies"], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="splits must be at least 1"):
        two_sample_accuracy(images, images, splits=0)
    # No verdict on the flow where the classifier cannot tell the clean images from the real ones either.
    assert verdict(0.52, 0.55).startswith("inconclusive")
    assert verdict(0.60, 0.95) == "hard to tell apart"
    assert verdict(0.80, 0.95).startswith("distinguishable, but closer")
    assert verdict(0.93, 0.95).startswith("no closer")


@pytest.mark.slow
def test_fidelity_command_on_a_tiny_flow(tmp_path):
    from tests.conftest import tiny_flow_config
    from unpaired_sr.common.image_io import write_image
    from unpaired_sr.common.matlab_resize import downscale
    from unpaired_sr.degradation.train import train

    train(tiny_flow_config(tmp_path, n_iter=2, save_every=2), tmp_path / "run")
    clean, real = tmp_path / "clean_photos", tmp_path / "real_photos"
    clean.mkdir()
    real.mkdir()
    for name in ("chelsea", "rocket", "camera"):
        write_image(clean / f"{name}.png", real_photo(name, 192))
    for name in ("astronaut", "coffee", "brick"):
        write_image(real / f"{name}.png", np.clip(downscale(real_photo(name, 192), 4), 0, 1))
    command = [sys.executable, "-m", "degradation.fidelity", "--ckpt", str(tmp_path / "run/checkpoints/last.pt")]
    command += ["--clean-dir", str(clean), "--real-dir", str(real), "--output", str(tmp_path / "out")]
    command += ["--steps", "5", "--splits", "2", "--device", "cpu"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "two-sample classifier accuracy" in result.stdout and "colour shift" in result.stdout
    assert "(splits " in result.stdout
    assert (tmp_path / "out" / "fidelity.png").exists() and (tmp_path / "out" / "fidelity.json").exists()
    command[command.index(str(real))] = str(clean / "chelsea.png")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith("error:")


def test_noise_level_check_reads_the_flow_estimate_and_a_paired_one_near_the_truth():
    from unpaired_sr.common.matlab_resize import downscale
    from unpaired_sr.degradation.checkpoint import build_flow
    from unpaired_sr.degradation.config import FlowModelConfig
    from unpaired_sr.degradation.noise import NoiseEstimate
    from unpaired_sr.degradation.oracle_fidelity import noise_level_check

    # Clean LR photos and their truth: white noise of std 0.01 + 0.02 * brightness in every channel.
    rng = np.random.default_rng(0)
    clean_lr, oracle_lr = [], []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        hr = np.round(real_photo(name, 256) * 255) / 255
        clean_lr.append(np.round(np.clip(downscale(hr, 4), 0, 1) * 255) / 255)
        noisy = clean_lr[-1] + rng.standard_normal(clean_lr[-1].shape) * (
            0.01 + 0.02 * clean_lr[-1].mean(axis=2, keepdims=True)
        )
        oracle_lr.append(np.round(np.clip(noisy, 0, 1) * 255) / 255)
    flow = build_flow(FlowModelConfig(num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=1))
    axes = np.linalg.qr(np.array([[1.0, 1, 1], [1, -1, 0], [1, 1, -2]]).T)[0]
    gains = np.zeros((5, 3))
    gains[:, 0] = [0.05, 0.04, 0.03, 0.02, 0.01]  # along one axis: every channel's std is the gain / sqrt(3)
    kernels = np.zeros((3, 8, 8))
    kernels[:, 4, 4] = 1
    flow.image_noise.load_estimate(NoiseEstimate(axes, gains, kernels, np.linspace(0.1, 0.9, 5), np.ones((2, 5))))
    check = noise_level_check(flow, clean_lr, oracle_lr)
    assert np.allclose(np.array(check["flow"]), gains[:, :1] / np.sqrt(3), rtol=1e-4)
    assert np.allclose(check["flow_brightness"], np.linspace(0.1, 0.9, 5))
    paired, truth = np.array(check["paired"]).mean(axis=1), np.array(check["flattest_true"]).mean(axis=1)
    # Measured: paired 4.2 / 5.8 / 6.5 levels against 3.8 / 5.0 / 6.1 at the brightness each bin was read at
    # (the quietest patches of photos still hold some content); the flattest truth 3.9 / 5.2 / 6.1.
    expected = 0.01 + 0.02 * np.array(check["paired_brightness"])
    assert np.allclose(paired[1:4], expected[1:4], rtol=0.25), (paired * 255, expected * 255)
    assert np.allclose(truth[1:4], 0.01 + 0.02 * np.array([0.3, 0.5, 0.7]), rtol=0.1), truth * 255


def test_a_benchmarks_flow_learns_at_the_benchmarks_scale(tmp_path):
    from unpaired_sr.degradation.oracle_fidelity import benchmark_flow_config, benchmark_scale

    (tmp_path / "benchmark.json").write_text('{"degradation": "grain", "scale": 2, "seed": 0}')
    assert benchmark_scale(tmp_path) == 2
    config = benchmark_flow_config(tmp_path, "configs/deflow_light.yaml", 20, "cpu")
    assert config.data.scale == 2  # the config file says 4
    assert (
        benchmark_flow_config(tmp_path, "configs/deflow_light.yaml", 20, "cpu", ["--data.scale", "3"]).data.scale == 3
    )
