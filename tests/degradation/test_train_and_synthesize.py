"""Training, resuming and synthesizing end to end on tiny real-photo data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import real_photo, tiny_flow_config
from unpaired_sr.common.checkpoint import load_checkpoint, save_checkpoint
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import image_to_tensor, read_image, write_image
from unpaired_sr.data_tools.datasets import ImageFolderCache, check_pairs
from unpaired_sr.degradation import train as flow_training
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.degradation.noise import ImageNoise
from unpaired_sr.degradation.sampling import degrade_image
from unpaired_sr.degradation.synthesize import synthesize_folder
from unpaired_sr.degradation.train import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_nll_falls_within_a_few_hundred_steps(tmp_path):
    config = tiny_flow_config(tmp_path, n_iter=200, log_every=20, save_every=200, lr=1e-3)
    history = []
    train(config, tmp_path / "run", max_steps=20)
    history.append(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "degradation_flow"))
    first = train(config, tmp_path / "run2", max_steps=20)
    last = train(config, tmp_path / "run2", resume=tmp_path / "run2" / "checkpoints" / "last.pt")
    assert last["nll_clean"] < first["nll_clean"] - 0.5
    assert last["nll_real"] < first["nll_real"] - 0.5
    assert last["skipped_steps"] == 0
    log = (tmp_path / "run2" / "train.log").read_text()
    assert "nll_clean=" in log and "resumed at step 20" in log
    assert (tmp_path / "run2" / "samples" / "step_0000200.png").exists()
    assert list((tmp_path / "run2" / "tb").iterdir())


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    config = tiny_flow_config(tmp_path)
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "split", max_steps=3)
    resumed = train(config, tmp_path / "split", resume=tmp_path / "split" / "checkpoints" / "step_0000003.pt")
    assert resumed["nll_clean"] == straight["nll_clean"] and resumed["nll_real"] == straight["nll_real"]
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt", "degradation_flow")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt", "degradation_flow")
    assert a["step"] == b["step"] == 6
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=0, msg=name)
    # Resuming a finished run does nothing more: it stops at train.n_iter.
    train(config, tmp_path / "split", resume=tmp_path / "split" / "checkpoints" / "last.pt")
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt", "degradation_flow")["step"] == 6


def test_resume_with_the_discriminator_reproduces_the_uninterrupted_run(tmp_path):
    config = tiny_flow_config(tmp_path, adv_weight=0.5, adv_start=2, adv_batch=2)
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "split", max_steps=3)
    resumed = train(config, tmp_path / "split", resume=tmp_path / "split" / "checkpoints" / "step_0000003.pt")
    for key in ("nll_clean", "nll_real", "adv_flow", "adv_disc", "disc_accuracy"):
        assert resumed[key] == straight[key], key
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt", "degradation_flow")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt", "degradation_flow")
    for part in ("model", "discriminator"):
        for name, tensor in a[part].items():
            torch.testing.assert_close(b[part][name], tensor, rtol=0, atol=0, msg=f"{part}.{name}")
    assert "disc_acc=" in (tmp_path / "straight" / "train.log").read_text()


def test_checkpoints_rotate_and_a_second_fresh_run_is_refused(tmp_path):
    config = tiny_flow_config(tmp_path, n_iter=4, save_every=1, keep_last=2)
    train(config, tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000003.pt", "step_0000004.pt"]
    with pytest.raises(UserError, match="already holds a run"):
        train(config, tmp_path / "run")


def test_training_matches_a_codec_without_a_lattice_as_jpeg_and_compresses_samples_so(tmp_path):
    import cv2

    from unpaired_sr.data_tools.degrade_classical import webp

    config = tiny_flow_config(tmp_path, n_iter=1, save_every=1)
    clean, real = tmp_path / "clean_hr", tmp_path / "webp_lr"
    for folder, names in ((clean, ("astronaut", "coffee", "chelsea")), (real, ("rocket", "camera", "brick"))):
        folder.mkdir()
        for name in names:
            photo = real_photo(name, 384)
            if folder == real:  # shrunk by pixel averaging, then lossy WebP: no JPEG lattice anywhere
                photo = webp(cv2.resize(photo, (96, 96), interpolation=cv2.INTER_AREA), 35)
            write_image(folder / f"{name}.png", photo)
    config.data.clean_dir, config.data.real_dir = str(clean), str(real)
    train(config, tmp_path / "default")  # the light config's rule: a matched codec only where clearly blurred
    log = (tmp_path / "default" / "train.log").read_text()
    assert "JPEG: none found in 3 real images" in log and "loss of detail as JPEG at quality" in log
    assert "not applied (model.image_matched_compression auto: the real images are not blurred" in log
    assert not load_flow(tmp_path / "default" / "checkpoints" / "last.pt")[0].image_compression.is_estimated
    config.model.image_matched_compression = True
    train(config, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "samples are compressed at those qualities (model.image_matched_compression true)" in log
    flow, _ = load_flow(tmp_path / "run" / "checkpoints" / "last.pt")
    assert flow.image_compression.is_estimated and flow.image_compression.probabilities[0] == 0
    config.model.image_compression = False  # no compression at all, the matched one included
    train(config, tmp_path / "none")
    assert "not applied (model.image_compression false)" in (tmp_path / "none" / "train.log").read_text()


@pytest.fixture(scope="module")
def trained_flow(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("flow")
    train(tiny_flow_config(tmp_path, n_iter=3, save_every=3), tmp_path / "run")
    return tmp_path / "run" / "checkpoints" / "last.pt"


def test_training_estimates_the_image_noise_and_logs_it(trained_flow):
    # The fixture's "real" images carry white noise of std 0.05 (12.8 levels) in every channel.
    flow, _ = load_flow(trained_flow)
    rgb_std = flow.image_noise.rgb_std() * 255
    assert rgb_std.min() > 8 and rgb_std.max() < 18, rgb_std
    log = (trained_flow.parents[1] / "train.log").read_text()
    assert "image noise std R/G/B x255 by brightness (0.0-0.2: " in log
    assert "quiet patches" not in log and len(flow.image_noise.texture) == 0  # the default texture: Gaussian
    assert "JPEG: none found in" in log and not flow.image_compression.is_estimated  # PNGs, never compressed
    assert "loss of detail: none clear" in log or "loss of detail not measured" in log
    assert "image blur not measured: too few strong edges" in log and flow.image_blur.sigma == 0.0  # 32 px tiles


def record_noise_estimates(monkeypatch, keyword: str) -> list:
    """The value of ``keyword`` in each call the flow's training makes to ``estimate_noise``, as it makes them."""
    seen = []
    estimate = flow_training.estimate_noise

    def recording(*args, **kwargs):
        seen.append(kwargs.get(keyword))
        return estimate(*args, **kwargs)

    monkeypatch.setattr(flow_training, "estimate_noise", recording)
    return seen


def test_the_noise_from_a_smaller_share_of_quiet_patches_reaches_the_estimate_and_the_log(tmp_path, monkeypatch):
    config = tiny_flow_config(tmp_path, n_iter=1, save_every=1)
    config.model.image_noise_quiet_fraction = 0.01
    fractions_seen = record_noise_estimates(monkeypatch, "quiet_fraction")
    train(config, tmp_path / "run")
    assert fractions_seen == [0.01]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "from each bin's quietest 1% of patches (model.image_noise_quiet_fraction)" in log


@pytest.mark.parametrize("against_clean", [True, False])
def test_the_real_floor_reaches_the_estimate_where_the_clean_set_is_taken_off(tmp_path, monkeypatch, against_clean):
    config = tiny_flow_config(tmp_path, n_iter=1, save_every=1)
    config.model.image_noise_real_floor = 0.5
    config.model.image_noise_against_clean = against_clean
    floors_seen = record_noise_estimates(monkeypatch, "real_floor")
    train(config, tmp_path / "run")
    assert floors_seen == [0.5 if against_clean else 0.0]  # the real set alone is its own floor
    log = (tmp_path / "run" / "train.log").read_text()
    assert ("real floor 0.5 (model.image_noise_real_floor)" in log) == against_clean


def test_the_noise_read_off_the_real_set_alone_is_logged_as_such_and_reads_no_less(tmp_path, trained_flow, monkeypatch):
    config = tiny_flow_config(tmp_path, n_iter=1, save_every=1)  # the fixture's photos and noise
    config.model.image_noise_against_clean = False
    config.model.image_noise_texture = "patches"  # the option: the real quiet patches, stored with the flow
    config.model.image_noise_unclipped = True  # and the patches clipped at black or white left out
    # The calibrations add the Gaussian noise to the clean images, the texture is for the samples alone:
    # how many patches the noise each calibration adds holds, at the time it is called.
    textures_seen = []

    def recording(estimate):
        def wrapped(*args, **kwargs):
            add_noise = args[-1]  # partial(noisy_copies, flow.image_noise, ...)
            textures_seen.append(len(add_noise.args[0].texture))
            return estimate(*args, **kwargs)

        return wrapped

    for name in ("estimate_aliasing", "estimate_sharpening", "estimate_equivalent_jpeg"):
        monkeypatch.setattr(flow_training, name, recording(getattr(flow_training, name)))
    train(config, tmp_path / "run")
    assert textures_seen == [0, 0, 0]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "the real set alone (model.image_noise_against_clean false)" in log
    assert "from patches not clipped at black or white (model.image_noise_unclipped)" in log
    assert "real quiet patches (model.image_noise_texture patches), for the samples" in log
    alone_flow = load_flow(tmp_path / "run" / "checkpoints" / "last.pt")[0]
    assert len(alone_flow.image_noise.texture) >= 8
    alone = alone_flow.image_noise.rgb_std()
    against = load_flow(trained_flow)[0].image_noise.rgb_std()
    assert alone.mean() >= against.mean() and alone.max() * 255 < 25, (alone * 255, against * 255)


def test_synthesize_is_seeded_and_names_samples(tmp_path, trained_flow, photo_folder):
    photos = photo_folder(size=64)
    synthesize_folder(trained_flow, photos, tmp_path / "a", temperature=0.8, n_samples=2, seed=1, device="cpu")
    synthesize_folder(trained_flow, photos, tmp_path / "b", temperature=0.8, n_samples=2, seed=1, device="cpu")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names[:2] == ["astronaut_s1.png", "astronaut_s2.png"] and len(names) == 8
    first = read_image(tmp_path / "a" / "coffee_s1.png")
    assert first.shape == (16, 16, 3)
    np.testing.assert_array_equal(first, read_image(tmp_path / "b" / "coffee_s1.png"))
    assert not np.array_equal(first, read_image(tmp_path / "a" / "coffee_s2.png"))
    # The samples pair with their HR originals for --data.degradation pairs.
    lq, hr = ImageFolderCache(tmp_path / "a", "LQ"), ImageFolderCache(photos, "HR")
    pairs = check_pairs(lq, hr, scale=4)
    assert [(lq.names[i], hr.names[j]) for i, j in pairs][:2] == [
        ("astronaut_s1", "astronaut"),
        ("astronaut_s2", "astronaut"),
    ]
    # One file works as --input too; a scale the flow was not trained at does not.
    synthesize_folder(trained_flow, photos / "coffee.png", tmp_path / "one", device="cpu")
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["coffee.png"]
    with pytest.raises(UserError, match="--scale 2 does not match the flow's x4"):
        synthesize_folder(trained_flow, photos, tmp_path / "x2", scale=2, device="cpu")


def test_synthesize_from_lr_inputs_notes_the_aliasing_it_cannot_apply(tmp_path, trained_flow, photo_folder, capsys):
    # The fixture's "real" images are full-resolution crops: finer than any downscale, they read as aliasing.
    flow, _ = load_flow(trained_flow)
    assert flow.image_downscale.is_decimating
    photos = photo_folder(size=64)
    synthesize_folder(trained_flow, photos, tmp_path / "hr_in", device="cpu")
    assert "alias" not in capsys.readouterr().err
    synthesize_folder(trained_flow, photos, tmp_path / "lr_in", input_is_lr=True, device="cpu")
    assert "LR inputs (--input-is-lr) are used as they are" in capsys.readouterr().err
    assert read_image(tmp_path / "lr_in" / "coffee.png").shape == (64, 64, 3)


@pytest.mark.parametrize("noise", ["image", "latent"])
def test_tiles_show_no_seams(trained_flow, noise):
    flow, _ = load_flow(trained_flow)
    assert flow.image_noise.is_estimated  # training estimated it
    with torch.no_grad():  # a flow that really degrades: strong noise of either kind
        if noise == "image":
            flow.image_noise.gains.fill_(0.05)
        else:
            flow.image_noise = ImageNoise()  # no estimate: the latent shift's noise
            flow.sample_latent_shift = True
            for level in flow.shift.levels:
                level.noise_factor.mul_(4)
    clean = image_to_tensor(real_photo("chelsea")[:96, :128])
    whole = degrade_image(flow, clean, 1.0, seed=5, tile_size=512)
    tiled = degrade_image(flow, clean, 1.0, seed=5, tile_size=32, overlap=16, batch_size=3)
    other_seed = degrade_image(flow, clean, 1.0, seed=6, tile_size=512)
    # The tiles share the global noise field: tiled output is the whole-image output up to border effects.
    seam_error = (tiled - whole).abs().mean()
    assert seam_error < 0.2 * (other_seed - whole).abs().mean()
    # And the noise level is the same along the tile borders as elsewhere.
    residual = tiled - degrade_image(flow, clean, 0.0, seed=5, tile_size=512)
    border_columns = residual[:, :, 15:18].std()
    assert 0.7 < float(border_columns / residual.std()) < 1.3


def test_non_finite_output_is_an_error_not_a_black_image(trained_flow):
    flow, _ = load_flow(trained_flow)
    flow.sample_latent_shift = True  # the shift is where a broken flow's NaN would come from
    with torch.no_grad():
        flow.shift.levels[0].mean.fill_(float("nan"))
    with pytest.raises(UserError, match="non-finite values at temperature 0.8"):
        degrade_image(flow, image_to_tensor(real_photo("coffee", 32)), 0.8, seed=0)


@pytest.mark.slow
def test_synthesize_command_bad_checkpoints(tmp_path, trained_flow, photo_folder):
    photos = photo_folder(size=64)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    save_checkpoint(tmp_path / "sr.pt", {"kind": "sr", "step": 1})

    def run(ckpt: Path) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "degradation.synthesize",
            "--ckpt",
            str(ckpt),
            "--input",
            str(photos),
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    for ckpt, message in (
        (tmp_path / "junk.pt", "is not a readable checkpoint"),
        (tmp_path / "sr.pt", "is an SR checkpoint, expected a degradation-flow checkpoint"),
        (tmp_path / "none.pt", "does not exist"),
    ):
        result = run(ckpt)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr
    result = run(trained_flow)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 images" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config_file", ["configs/deflow_light.yaml", "configs/deflow_standard.yaml"])
def test_train_command_runs_both_configs(tmp_path, config_file):
    config = tiny_flow_config(tmp_path)  # writes the tiny photo folders
    command = [
        sys.executable,
        "-m",
        "degradation.train",
        "--config",
        config_file,
        "--data.clean_dir",
        config.data.clean_dir,
        "--data.real_dir",
        config.data.real_dir,
        "--output",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--max-steps",
        "2",
        "--train.batch_size",
        "2",
        "--data.crop_size",
        "24",
        "--data.num_workers",
        "0",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "M parameters" in result.stdout
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "degradation_flow")
    assert state["step"] == 2
    assert (tmp_path / "run" / "config.yaml").exists()
    bad = subprocess.run(command[:-6] + ["--train.n_itr", "5"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean 'train.n_iter'" in bad.stderr and "Traceback" not in bad.stderr


def test_train_help_lists_config_fields():
    result = subprocess.run(
        [sys.executable, "-m", "degradation.train", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and "--train.n_iter" in result.stdout and "--model.num_levels" in result.stdout


@pytest.mark.slow
def test_a_colour_difference_between_the_sets_is_not_learned_as_degradation(tmp_path):
    # Clean photos, and "real" LR photos of other scenes, redder (+20 levels) and noisy. The latent mean
    # shift learns how the two sets' colours differ as if the camera made it; the kept low-pass takes it
    # back out of the samples, and samples without the shift (the shipped configs) never had it.
    hr, real = tmp_path / "hr", tmp_path / "real"
    hr.mkdir()
    real.mkdir()
    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee", "chelsea"):
        write_image(hr / f"{name}.png", real_photo(name, 128))
    for name in ("rocket", "camera", "immunohistochemistry"):
        photo = real_photo(name, 48) + np.array([20 / 255, 0, 0]) + rng.normal(0, 8 / 255, (48, 48, 3))
        write_image(real / f"{name}.png", np.clip(photo, 0, 1))
    config = tiny_flow_config(tmp_path, n_iter=300, save_every=300, log_every=100, lr=1e-3)
    config.data.clean_dir, config.data.real_dir = str(hr), str(real)
    train(config, tmp_path / "run")
    flow, _ = load_flow(tmp_path / "run" / "checkpoints" / "last.pt")
    assert not flow.sample_latent_shift  # the shipped config's setting
    clean_lr = image_to_tensor(real_photo("grass", 64))

    def mean_residual() -> list[float]:
        synthesized = torch.stack([degrade_image(flow, clean_lr, 1.0, seed) for seed in range(4)])
        return ((synthesized - clean_lr).mean(dim=(0, 2, 3)) * 255).tolist()

    without_shift = mean_residual()
    flow.sample_latent_shift = True
    with_shift = {}
    for sigma in (0.0, 4.0):
        flow.keep_low_pass_sigma = sigma
        with_shift[sigma] = mean_residual()
    # Measured: +8.5/+18.6/+29.8 levels without, +0.1/+0.2/+0.2 with the kept low-pass.
    assert max(abs(v) for v in with_shift[0.0]) > 4, with_shift  # a content difference, learned
    assert max(abs(v) for v in with_shift[4.0]) < 1, with_shift  # and kept out of the samples
    assert max(abs(v) for v in without_shift) < 1, without_shift


def test_training_with_the_detail_statistics_logs_them_and_resumes_exactly(tmp_path):
    config = tiny_flow_config(tmp_path, stats_weight=0.1, adv_start=2, adv_batch=2)
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "split", max_steps=3)
    resumed = train(config, tmp_path / "split", resume=tmp_path / "split" / "checkpoints" / "step_0000003.pt")
    assert resumed["detail_stats"] == straight["detail_stats"] > 0
    assert resumed["nll_real"] == straight["nll_real"]
    assert "detail_stats=" in (tmp_path / "straight" / "train.log").read_text()


def test_an_overlap_as_large_as_the_tile_is_one_clear_error(trained_flow):
    flow, _ = load_flow(trained_flow)
    with pytest.raises(UserError, match="--overlap 32 must be smaller than --tile-size 32"):
        degrade_image(flow, torch.rand(3, 64, 64), 1.0, seed=0, tile_size=32, overlap=32)


def test_a_resume_trains_at_the_learning_rate_of_the_command_line(tmp_path):
    train(tiny_flow_config(tmp_path, lr=1e-3), tmp_path / "run", max_steps=3)
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000003.pt"
    train(tiny_flow_config(tmp_path, lr=1e-4), tmp_path / "run", resume=ckpt)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "degradation_flow")
    flow_group, shift_group = state["optimizer"]["param_groups"]
    assert flow_group["initial_lr"] == 1e-4 and shift_group["initial_lr"] == pytest.approx(1e-4 * 10)
    assert state["scheduler"]["base_lrs"] == [1e-4, pytest.approx(1e-3)]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "learning rate from the config, not the checkpoint: train.lr (group 0) 0.001 -> 0.0001" in log


def test_images_too_small_for_a_noise_estimate_are_one_clear_error(tmp_path):
    config = tiny_flow_config(tmp_path)
    for folder, size in ((tmp_path / "hr", 16), (tmp_path / "real", 4)):
        for image in folder.iterdir():
            write_image(image, real_photo(image.stem, size))
    config.data.crop_size = 4
    with pytest.raises(UserError, match=r"too few 8x8 patches .* --model.image_noise false"):
        train(config, tmp_path / "run")


def test_samples_without_the_latent_shift_need_the_image_noise(tmp_path):
    config = tiny_flow_config(tmp_path)
    config.model.sample_latent_shift, config.model.image_noise = False, False
    with pytest.raises(UserError, match="sample_latent_shift false needs model.image_noise true"):
        train(config, tmp_path / "run")


def test_resuming_a_finished_run_says_there_is_nothing_to_do(trained_flow, capsys):
    from unpaired_sr.degradation.train import main

    before = trained_flow.stat().st_mtime_ns
    main(["--resume", str(trained_flow), "--output", str(trained_flow.parents[1])])
    printed = capsys.readouterr().out
    assert "nothing to do: " in printed and "is at step 3 and train.n_iter is 3" in printed
    assert "--train.n_iter 6" in printed
    assert trained_flow.stat().st_mtime_ns == before


def test_a_warmup_longer_than_the_run_is_a_warning_in_the_log(tmp_path):
    train(tiny_flow_config(tmp_path, n_iter=2, save_every=2, warmup_iter=5), tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "warning: train.warmup_iter 5 >= train.n_iter 2: the learning rate never reaches train.lr" in log
