"""The SR network, its data sources, training, resuming and inference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import real_photo
from unpaired_sr.common.checkpoint import load_checkpoint, save_checkpoint
from unpaired_sr.common.config import load_config
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import (
    PngStripWriter,
    image_to_tensor,
    list_images,
    read_image,
    read_image_native,
    tensor_to_image,
    write_image,
)
from unpaired_sr.common.matlab_resize import downscale, imresize_torch
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.degradation.compression import JpegEstimate
from unpaired_sr.degradation.sampling import degrade_image
from unpaired_sr.sr.checkpoint import load_sr
from unpaired_sr.sr.config import SRConfig
from unpaired_sr.sr.data import flow_degrade
from unpaired_sr.sr.infer import infer_folder
from unpaired_sr.sr.lpips_metric import LPIPSUnavailable, load_lpips
from unpaired_sr.sr.metrics import psnr
from unpaired_sr.sr.model import VDSR, relu_activity
from unpaired_sr.sr.train import train
from unpaired_sr.sr.upscale import upscale_image, upscale_strips
from unpaired_sr.tools.curves import plot_curves

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("form", ["pre_upsample", "post_upsample"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shapes(form, scale):
    model = VDSR(scale, form, num_features=8, num_layers=4)
    assert model(torch.rand(2, 3, 11, 13)).shape == (2, 3, 11 * scale, 13 * scale)


@pytest.mark.parametrize("form", ["pre_upsample", "post_upsample"])
def test_tiled_inference_equals_whole_image(form, device):
    torch.manual_seed(0)
    model = VDSR(4, form, num_features=16, num_layers=8).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.to(device)
    lr = image_to_tensor(real_photo("chelsea")[:70, :93]).to(device)
    whole = upscale_image(model, lr, tile_size=512)
    tiled = upscale_image(model, lr, tile_size=40, batch_size=3)
    if device.type == "cuda":
        # cuDNN's default TF32 rounds each tile shape's convolutions its own way (~1e-3, measured on an H200):
        # the tiling itself is exact, which full float32 shows; TF32's own error is checked loosely.
        assert (whole - tiled).abs().max() < 1e-2
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
            whole = upscale_image(model, lr, tile_size=512)
            tiled = upscale_image(model, lr, tile_size=40, batch_size=3)
    assert (whole - tiled).abs().max() < 1e-5
    ensemble = upscale_image(model, lr, tile_size=40, self_ensemble=True)
    assert ensemble.shape == whole.shape and not torch.equal(ensemble, whole)
    # Strips of LR rows (what sr.infer does) give the same pixels, as 8-bit rows.
    lr_uint8 = (real_photo("chelsea")[:70, :93] * 255).round().astype(np.uint8)
    whole = upscale_image(model, image_to_tensor(lr_uint8), tile_size=512)
    strips = list(upscale_strips(model, lr_uint8, tile_size=40, batch_size=3, strip_rows=16))
    assert [len(rows) for rows in strips] == [64, 64, 64, 64, 24]
    difference = np.abs(np.concatenate(strips) - tensor_to_image(whole))
    assert difference.max() < 1e-5


def test_png_strip_writer_writes_what_cv2_reads(tmp_path):
    image = (real_photo("astronaut", 120)[:, :77] * 255).round().astype(np.uint8)
    with PngStripWriter(tmp_path / "strips.png", 77, 120) as png:
        for top in range(0, 120, 50):
            png.write_rows(image[top : top + 50])
    np.testing.assert_array_equal(read_image_native(tmp_path / "strips.png"), image)
    with pytest.raises(ValueError, match="100 of 120 rows written"):
        with PngStripWriter(tmp_path / "short.png", 77, 120) as png:
            png.write_rows(image[:100])
            png.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strips.png"]  # no partial file, no temporary


@pytest.mark.parametrize("form", ["pre_upsample", "post_upsample"])
def test_new_network_is_bicubic_upsampling(form):
    lr = image_to_tensor(real_photo("coffee", 32))[None]
    model = VDSR(4, form)
    with torch.no_grad():
        assert torch.equal(model(lr), imresize_torch(lr, 4))
    activity = relu_activity(model, lr)
    assert len(activity) == 19 and min(activity) > 0.2 and model.training


def test_a_network_saved_before_input_centring_loads_without_an_offset():
    lr = image_to_tensor(real_photo("coffee", 32))[None]
    trained = VDSR(2, "post_upsample")
    with torch.no_grad():
        trained.body[-1].weight.normal_(std=0.01)  # not bicubic: the offset matters
    old_weights = {name: value for name, value in trained.state_dict().items() if name != "input_offset"}
    loaded = VDSR(2, "post_upsample")
    loaded.load_state_dict(old_weights)
    assert float(loaded.input_offset) == 0.0
    trained.input_offset.fill_(0.0)
    with torch.no_grad():
        assert torch.equal(loaded(lr), trained(lr))


@pytest.fixture(scope="module")
def clean_pairs(tmp_path_factory) -> dict:
    """Four HR photos to train on, and two held-out photos with their bicubic-downsampled LR."""
    hr = tmp_path_factory.mktemp("clean_pairs_hr")
    for name, (top, left) in {"astronaut": (0, 0), "coffee": (100, 200), "chelsea": (0, 0), "camera": (0, 0)}.items():
        write_image(hr / f"{name}.png", real_photo(name)[top : top + 192, left : left + 192])
    held_out = [real_photo("rocket")[200:328, 200:328], real_photo("immunohistochemistry")[:128, :128]]
    lr = [
        image_to_tensor(np.round(np.clip(downscale(image, 4), 0, 1) * 255).astype(np.float32) / 255)
        for image in held_out
    ]
    return {"hr": hr, "held_out": list(zip(lr, held_out))}


@pytest.mark.slow
@pytest.mark.parametrize("form, crop_size", [("post_upsample", 24), ("pre_upsample", 8)])
def test_training_on_clean_pairs_beats_bicubic_and_no_layer_dies(tmp_path, clean_pairs, form, crop_size):
    # 300 steps of a 10-layer, 32-wide VDSR on bicubic pairs. Measured (mean gain over the two held-out
    # photos, 2-core CPU): post_upsample +0.31 / +0.41 dB (seeds 0 / 1), pre_upsample +0.29 dB; with the old
    # last-layer init (random x 0.1) +0.000 / +0.000 and +0.04 dB, the last ReLU layer 4-5% active.
    words = [
        "--data.hr_dir",
        str(clean_pairs["hr"]),
        "--data.degradation",
        "bicubic",
        "--data.num_workers",
        "0",
        "--data.crop_size",
        str(crop_size),
        "--model.form",
        form,
        "--model.num_layers",
        "10",
        "--model.num_features",
        "32",
        "--train.n_iter",
        "300",
        "--train.batch_size",
        "16",
        "--train.warmup_iter",
        "20",
        "--train.device",
        "cpu",
        "--train.save_every",
        "300",
        "--train.log_every",
        "300",
        "--train.val_every",
        "150",
    ]
    train(load_config(SRConfig, "configs/sr_vdsr_fast.yaml", words), tmp_path / "run")
    model, _ = load_sr(tmp_path / "run" / "checkpoints" / "last.pt")
    gains = []
    for lr, hr in clean_pairs["held_out"]:
        sr = upscale_image(model, lr).permute(1, 2, 0).numpy()
        upsampled = imresize_torch(lr[None], 4)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        gains.append(psnr(sr, hr, crop_border=4) - psnr(upsampled, hr, crop_border=4))
    assert np.mean(gains) > 0.15 and min(gains) > 0.05, gains
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "sr")
    trained = VDSR(4, form, num_features=32, num_layers=10)
    trained.load_state_dict(state["model"])
    assert min(relu_activity(trained, clean_pairs["held_out"][0][0][None])) > 0.05
    events = (tmp_path / "run" / "tb").glob("events.*")
    assert any(b"sr_active/layer_09" in path.read_bytes() for path in events)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sr_data")
    hr, val_lr, val_hr = root / "hr", root / "val_lr", root / "val_hr"
    for folder in (hr, val_lr, val_hr):
        folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        write_image(hr / f"{name}.png", real_photo(name, 96))
    image = real_photo("rocket", 64)
    write_image(val_hr / "rocket.png", image)
    from unpaired_sr.common.matlab_resize import downscale

    write_image(val_lr / "rocket.png", np.clip(downscale(image, 4), 0, 1))
    return {"hr": hr, "val_lr": val_lr, "val_hr": val_hr, "root": root}


def tiny_sr_config(photos, **overrides) -> SRConfig:
    words = ["--data.hr_dir", str(photos["hr"])]
    words += (
        "--data.crop_size 12 --data.num_workers 0 --model.num_features 8 --model.num_layers 4 --train.n_iter 6 "
        "--train.batch_size 2 --train.log_every 1 --train.save_every 3 --train.val_every 3 --train.warmup_iter 0 "
        "--train.device cpu"
    ).split()
    for key, value in overrides.items():
        words += [f"--{key}", str(value)]
    return load_config(SRConfig, "configs/sr_vdsr_fast.yaml", words)


def test_resume_continues_the_same_loss_curve(tmp_path, photos):
    config = tiny_sr_config(photos, **{"data.degradation": "noise_jpeg"})
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "split", max_steps=3)
    resumed = train(config, tmp_path / "split", resume=tmp_path / "split" / "checkpoints" / "step_0000003.pt")
    assert resumed["l1"] == straight["l1"]
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt", "sr")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt", "sr")
    for name, tensor in a["ema"].items():
        torch.testing.assert_close(b["ema"][name], tensor, rtol=0, atol=0, msg=name)


def test_validation_writes_best_checkpoint_and_curves(tmp_path, photos, flow_ckpt):
    config = tiny_sr_config(
        photos,
        **{"data.degradation": "bicubic", "data.val_lr_dir": photos["val_lr"], "data.val_hr_dir": photos["val_hr"]},
    )
    monitor = train(config, tmp_path / "run")
    assert 15 < monitor["val_psnr"] < 60 and monitor["best_psnr"] >= monitor["val_psnr"]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert "validation PSNR" in (tmp_path / "run" / "train.log").read_text()
    # One LQ | SR | HR figure per validation (every 3 steps of 6), of the 64x64 validation image.
    figures = sorted((tmp_path / "run" / "samples").glob("step_*.png"))
    assert [path.name for path in figures] == ["step_0000003.png", "step_0000006.png"]
    assert read_image(figures[-1]).shape[1] == 3 * 64 + 2 * 4
    # The curves figure finds both runs' TensorBoard logs and draws all three panels.
    panels = plot_curves([tmp_path, flow_ckpt.parents[1]], tmp_path / "curves.png")
    assert panels == ["degradation flow: NLL per domain", "SR: training loss", "SR: validation PSNR"]
    assert read_image(tmp_path / "curves.png").shape[1] == round(3 * 5.2 * 110)  # three panels wide
    with pytest.raises(UserError, match="no training runs"):
        plot_curves([photos["hr"]], tmp_path / "none.png")


def test_diverging_run_stops_with_advice_and_keeps_its_checkpoint(tmp_path, photos):
    # lr 1e30: the first step blows the weights up, every later loss is inf/NaN and skipped.
    overrides = {
        "data.degradation": "bicubic",
        "train.lr": 1e30,
        "train.save_every": 1,
        "train.max_bad_steps": 3,
        "train.n_iter": 20,
        "train.schedule": "constant",
    }
    config = tiny_sr_config(photos, **overrides)
    with pytest.raises(UserError, match="3 steps in a row had a non-finite loss.*lower train.lr or train.grad_clip"):
        train(config, tmp_path / "run")
    # Steps 2 and 3 were skipped: no checkpoint during the streak, so last.pt is step 1's, the last finite one.
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "sr")
    assert state["step"] == 1 and state["guard"] == {"in_a_row": 0, "total": 0}
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.pt", "step_0000001.pt"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "skipped=2" in log and "no checkpoint: the last 2 steps were non-finite" in log


def test_flow_source_equals_synthesize_for_the_same_seed(flow_ckpt, photos):
    flow, _ = load_flow(flow_ckpt)
    with torch.no_grad():
        for level in flow.shift.levels:
            level.noise_factor.mul_(3)  # a visible degradation
    hr = torch.stack([image_to_tensor(real_photo(n, 64)) for n in ("astronaut", "coffee")])
    with torch.no_grad():
        batch = flow_degrade(flow, hr, 4, 0.8, seeds=[11, 12])
    for i, seed in enumerate((11, 12)):
        single = degrade_image(flow, flow.downscale(hr[i : i + 1], 4, [seed])[0], 0.8, seed)  # as synthesize starts
        single = torch.round(single * 255) / 255  # as written to PNG
        assert (batch[i] - single).abs().max() <= 1 / 255 + 1e-6
        assert (batch[i] - single).abs().mean() < 1e-4
    assert not torch.equal(batch[0], flow_degrade(flow, hr[:1], 4, 0.8, seeds=[13])[0])
    # With a compression estimate both paths compress each sample at the quality its seed draws.
    flow.image_compression.load_estimate(JpegEstimate(qualities=[20, 90], uncompressed=0, images=2))
    with torch.no_grad():
        compressed = flow_degrade(flow, hr, 4, 0.8, seeds=[11, 12])
    assert (compressed * 255 - torch.round(compressed * 255)).abs().max() < 1e-4  # 8-bit values
    assert (compressed - batch).abs().mean() > 1e-3  # JPEG at 20 or 90 changes the samples
    for i, seed in enumerate((11, 12)):
        single = degrade_image(flow, flow.downscale(hr[i : i + 1], 4, [seed])[0], 0.8, seed)
        assert (compressed[i] - single).abs().mean() < 2e-3  # the same quality (inputs differ by rare 1/255s)


def test_flow_and_pairs_sources_train(tmp_path, photos, flow_ckpt):
    flow_config = tiny_sr_config(photos, **{"data.degradation": "flow", "data.flow_ckpt": flow_ckpt, "train.n_iter": 2})
    assert np.isfinite(train(flow_config, tmp_path / "flow")["l1"])
    lq = tmp_path / "lq"
    lq.mkdir()
    for path in list_images(photos["hr"]):
        write_image(lq / path.name, read_image(path)[::4, ::4])
    pairs_config = tiny_sr_config(photos, **{"data.degradation": "pairs", "data.lq_dir": lq, "train.n_iter": 2})
    assert np.isfinite(train(pairs_config, tmp_path / "pairs")["l1"])


def test_a_flow_of_another_scale_is_refused(tmp_path, photos, flow_ckpt):
    # The flow learned x4: its blur, aliasing and noise are in x4's LR pixels, wrong at x2.
    config = tiny_sr_config(photos, **{"data.degradation": "flow", "data.flow_ckpt": flow_ckpt, "data.scale": 2})
    with pytest.raises(UserError, match="learned the real images at x4, and SR is asked for x2"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_sources(tmp_path, photos):
    for overrides, message in (
        ({"data.degradation": "blurry"}, "data.degradation = 'blurry' is not one of pairs, flow, bicubic"),
        ({"data.degradation": "camrea"}, "did you mean 'camera'"),
        ({"data.degradation": "flow"}, "needs --data.flow_ckpt"),
        ({"data.degradation": "pairs"}, "needs --data.lq_dir"),
        ({"data.degradation": "bicubic", "data.val_lr_dir": photos["val_lr"]}, "give both"),
    ):
        with pytest.raises(UserError, match=message):
            train(tiny_sr_config(photos, **overrides), tmp_path / "bad")


@pytest.mark.slow
def test_infer_command(tmp_path, photos):
    config = tiny_sr_config(photos, **{"data.degradation": "bicubic", "train.n_iter": 1})
    train(config, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    command = [sys.executable, "-m", "sr.infer", "--ckpt", str(ckpt), "--input", str(photos["val_lr"])]
    command += ["--output", str(tmp_path / "sr"), "--device", "cpu", "--tile-size", "32"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "sr" / "rocket.png").shape == (64, 64, 3)
    # What the input had is kept: alpha, 16 bits, gray; one file works as --input; names and scale as asked.
    rocket = (read_image(photos["val_lr"] / "rocket.png") * 255).round().astype(np.uint8)
    special = tmp_path / "special"
    special.mkdir()
    alpha = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    Image.fromarray(np.dstack([rocket, alpha]), "RGBA").save(special / "rgba.png")
    cv2.imwrite(str(special / "deep.png"), (rocket[:, :, ::-1].astype(np.uint16) * 257))
    Image.fromarray(rocket[:, :, 1]).save(special / "gray.png")
    Image.fromarray(rocket).save(special / "photo.jpg", quality=95)
    run = [*command[:5], "--device", "cpu", "--tile-size", "32"]
    result = subprocess.run(
        [*run, "--input", str(special), "--output", str(tmp_path / "kept"), "--ext", "auto", "--suffix", "_x4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "kept"
    assert sorted(p.name for p in kept.iterdir()) == ["deep_x4.png", "gray_x4.png", "photo_x4.jpg", "rgba_x4.png"]
    rgba = np.asarray(Image.open(kept / "rgba_x4.png"))
    assert rgba.shape == (64, 64, 4) and abs(int(rgba[:, -1, 3].mean()) - 255) <= 2 and rgba[:, 0, 3].max() <= 8
    deep = cv2.imread(str(kept / "deep_x4.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (64, 64, 3)
    assert Image.open(kept / "gray_x4.png").mode == "L"
    result = subprocess.run(
        [*run, "--input", str(special / "photo.jpg"), "--output", str(tmp_path / "one"), "--outscale", "2.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["photo.png"]
    assert read_image(tmp_path / "one" / "photo.png").shape == (40, 40, 3)
    save_checkpoint(tmp_path / "flow.pt", {"kind": "degradation_flow", "step": 0})
    command[command.index(str(ckpt))] = str(tmp_path / "flow.pt")
    result = subprocess.run(
        command[:-4] + ["--output", str(tmp_path / "sr2")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "is a degradation-flow checkpoint, expected an SR checkpoint" in result.stderr


def test_half_is_bfloat16_on_cuda_and_a_note_on_cpu(tmp_path, photos, device, capsys):
    train(tiny_sr_config(photos, **{"data.degradation": "bicubic", "train.n_iter": 1}), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    infer_folder(ckpt, photos["val_lr"], tmp_path / "full", device=str(device))
    infer_folder(ckpt, photos["val_lr"], tmp_path / "half", device=str(device), half=True)
    full, half = read_image(tmp_path / "full" / "rocket.png"), read_image(tmp_path / "half" / "rocket.png")
    if device.type == "cpu":
        assert np.array_equal(full, half) and "--half applies on CUDA only" in capsys.readouterr().err
    else:
        assert 40 < psnr(half, full) < float("inf")  # bfloat16 ran, and it is close


def test_lpips_plumbing_with_a_random_backbone(tmp_path):
    with pytest.raises(LPIPSUnavailable, match="alexnet-owt-7be5be79.pth"):
        load_lpips(tmp_path / "missing.pth")
    import torchvision

    fake = torchvision.models.alexnet().state_dict()  # random weights stand in for the real file
    torch.save(fake, tmp_path / "alexnet.pth")
    model = load_lpips(tmp_path / "alexnet.pth")
    torch.testing.assert_close(dict(model.net.slice3.named_children())["6"].weight, fake["features.6.weight"])
    a = image_to_tensor(real_photo("coffee", 64))[None] * 2 - 1
    distance = model(a, a.flip(3))
    assert distance.shape == (1, 1, 1, 1) and float(distance) > 0 and float(model(a, a)) == 0
    (tmp_path / "bad.pth").write_bytes(b"nonsense")
    with pytest.raises(LPIPSUnavailable, match="cannot read"):
        load_lpips(tmp_path / "bad.pth")


def test_a_dead_layer_is_logged_and_warned_about():
    from unpaired_sr.sr.train import check_activity

    class Recorder:
        def __init__(self):
            self.lines, self.values = [], {}

        def log(self, line):
            self.lines.append(line)

        def scalars(self, values, step):
            self.values.update(values)

    model = VDSR(4, "post_upsample", num_features=8, num_layers=5)
    lr = image_to_tensor(real_photo("coffee", 32))[None]
    healthy = Recorder()
    check_activity(model, lr, 10, 100, healthy)
    expected = ["sr/active_min", *(f"sr_active/layer_0{i}" for i in range(1, 5))]
    assert not healthy.lines and sorted(healthy.values) == expected
    with torch.no_grad():
        model.body[5].bias.fill_(-100)  # the third convolution: its ReLU never fires
    dead = Recorder()
    check_activity(model, lr, 10, 100, dead)
    assert dead.values["sr/active_min"] == 0 and dead.values["sr_active/layer_04"] == 0
    assert len(dead.lines) == 1 and "warning: ReLU layer(s) 3 (0.0%), 4 (0.0%) of 4 are dead" in dead.lines[0]
