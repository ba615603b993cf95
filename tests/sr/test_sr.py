"""The SR network, its data sources, training, resuming and inference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint, save_checkpoint
from common.config import load_config
from common.curves import plot_curves
from common.errors import UserError
from data_tools.image_io import image_to_tensor, list_images, read_image, write_image
from data_tools.matlab_resize import clean_lr_from_hr
from degradation.checkpoint import load_flow
from degradation.synthesize import degrade_image
from sr.config import SRConfig
from sr.data import flow_degrade
from sr.infer import upscale_image
from sr.lpips_metric import LPIPSUnavailable, load_lpips
from sr.model import VDSR
from sr.train import train
from tests.conftest import real_photo
from tests.degradation.test_train_and_synthesize import tiny_config as tiny_flow_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("form", ["pre_upsample", "post_upsample"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shapes(form, scale):
    model = VDSR(scale, form, num_features=8, num_layers=4)
    assert model(torch.rand(2, 3, 11, 13)).shape == (2, 3, 11 * scale, 13 * scale)


@pytest.mark.parametrize("form", ["pre_upsample", "post_upsample"])
def test_tiled_inference_equals_whole_image(form):
    torch.manual_seed(0)
    model = VDSR(4, form, num_features=16, num_layers=8).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    lr = image_to_tensor(real_photo("chelsea")[:70, :93])
    whole = upscale_image(model, lr, tile_size=512)
    tiled = upscale_image(model, lr, tile_size=40, batch_size=3)
    assert (whole - tiled).abs().max() < 1e-5
    ensemble = upscale_image(model, lr, tile_size=40, self_ensemble=True)
    assert ensemble.shape == whole.shape and not torch.equal(ensemble, whole)


def test_new_network_starts_near_bicubic():
    lr = image_to_tensor(real_photo("coffee", 32))[None]
    model = VDSR(4, "post_upsample")
    from data_tools.matlab_resize import imresize_torch

    with torch.no_grad():
        assert (model(lr) - imresize_torch(lr, 4)).abs().mean() < 0.02


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
    from data_tools.matlab_resize import downscale

    write_image(val_lr / "rocket.png", np.clip(downscale(image, 4), 0, 1))
    return {"hr": hr, "val_lr": val_lr, "val_hr": val_hr, "root": root}


def tiny_sr_config(photos, **overrides) -> SRConfig:
    words = [
        "--data.hr_dir", str(photos["hr"]), "--data.crop_size", "12", "--data.num_workers", "0",
        "--model.num_features", "8", "--model.num_layers", "4",
        "--train.n_iter", "6", "--train.batch_size", "2", "--train.log_every", "1", "--train.save_every", "3",
        "--train.val_every", "3", "--train.warmup_iter", "0", "--train.device", "cpu",
    ]  # fmt: skip
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
    config = tiny_sr_config(photos, **{"data.degradation": "bicubic", "data.val_lr_dir": photos["val_lr"],
                                       "data.val_hr_dir": photos["val_hr"]})  # fmt: skip
    monitor = train(config, tmp_path / "run")
    assert 15 < monitor["val_psnr"] < 60 and monitor["best_psnr"] >= monitor["val_psnr"]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert "validation PSNR" in (tmp_path / "run" / "train.log").read_text()
    # The curves figure finds both runs' TensorBoard logs and draws all three panels.
    panels = plot_curves([tmp_path, flow_ckpt.parents[1]], tmp_path / "curves.png")
    assert panels == ["degradation flow: NLL per domain", "SR: training loss", "SR: validation PSNR"]
    assert read_image(tmp_path / "curves.png").shape[1] == round(3 * 5.2 * 110)  # three panels wide
    with pytest.raises(UserError, match="no training runs"):
        plot_curves([photos["hr"]], tmp_path / "none.png")


def test_diverging_run_stops_with_advice_and_keeps_its_checkpoint(tmp_path, photos):
    # lr 1e30: the first step blows the weights up, every later loss is inf/NaN and skipped.
    overrides = {"data.degradation": "bicubic", "train.lr": 1e30, "train.save_every": 1, "train.max_bad_steps": 3,
                 "train.n_iter": 20, "train.schedule": "constant"}  # fmt: skip
    config = tiny_sr_config(photos, **overrides)
    with pytest.raises(UserError, match="3 steps in a row had a non-finite loss.*lower train.lr or train.grad_clip"):
        train(config, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "sr")
    assert state["step"] == 3 and state["guard"] == {"in_a_row": 2, "total": 2}  # written before the third
    assert "skipped=2" in (tmp_path / "run" / "train.log").read_text()


@pytest.fixture(scope="module")
def flow_ckpt(tmp_path_factory) -> Path:
    from degradation.train import train as train_flow

    root = tmp_path_factory.mktemp("flow_for_sr")
    train_flow(tiny_flow_config(root, n_iter=2, save_every=2), root / "run")
    return root / "run" / "checkpoints" / "last.pt"


def test_flow_source_equals_synthesize_for_the_same_seed(flow_ckpt, photos):
    flow, _ = load_flow(flow_ckpt)
    with torch.no_grad():
        for level in flow.shift.levels:
            level.noise_factor.mul_(3)  # a visible degradation
    hr = torch.stack([image_to_tensor(real_photo(n, 64)) for n in ("astronaut", "coffee")])
    with torch.no_grad():
        batch = flow_degrade(flow, hr, 4, 0.8, seeds=[11, 12])
    for i, seed in enumerate((11, 12)):
        single = degrade_image(flow, clean_lr_from_hr(hr[i : i + 1], 4)[0], 0.8, seed)
        single = torch.round(single * 255) / 255  # as written to PNG
        assert (batch[i] - single).abs().max() <= 1 / 255 + 1e-6
        assert (batch[i] - single).abs().mean() < 1e-4
    assert not torch.equal(batch[0], flow_degrade(flow, hr[:1], 4, 0.8, seeds=[13])[0])


def test_flow_and_pairs_sources_train(tmp_path, photos, flow_ckpt):
    flow_config = tiny_sr_config(photos, **{"data.degradation": "flow", "data.flow_ckpt": flow_ckpt,
                                            "train.n_iter": 2})  # fmt: skip
    assert np.isfinite(train(flow_config, tmp_path / "flow")["l1"])
    lq = tmp_path / "lq"
    lq.mkdir()
    for path in list_images(photos["hr"]):
        write_image(lq / path.name, read_image(path)[::4, ::4])
    pairs_config = tiny_sr_config(photos, **{"data.degradation": "pairs", "data.lq_dir": lq, "train.n_iter": 2})
    assert np.isfinite(train(pairs_config, tmp_path / "pairs")["l1"])


def test_bad_sources(tmp_path, photos):
    for overrides, message in (
        ({"data.degradation": "blurry"}, "unknown data.degradation 'blurry'"),
        ({"data.degradation": "flow"}, "needs --data.flow_ckpt"),
        ({"data.degradation": "pairs"}, "needs --data.lq_dir"),
        ({"data.degradation": "bicubic", "data.val_lr_dir": photos["val_lr"]}, "give both"),
    ):
        with pytest.raises(UserError, match=message):
            train(tiny_sr_config(photos, **overrides), tmp_path / "bad")


def test_infer_command(tmp_path, photos):
    config = tiny_sr_config(photos, **{"data.degradation": "bicubic", "train.n_iter": 1})
    train(config, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    command = [sys.executable, "-m", "sr.infer", "--ckpt", str(ckpt), "--input", str(photos["val_lr"]),
               "--output", str(tmp_path / "sr"), "--device", "cpu", "--tile-size", "32"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "sr" / "rocket.png").shape == (64, 64, 3)
    save_checkpoint(tmp_path / "flow.pt", {"kind": "degradation_flow", "step": 0})
    command[command.index(str(ckpt))] = str(tmp_path / "flow.pt")
    result = subprocess.run(command[:-4] + ["--output", str(tmp_path / "sr2")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "is a degradation-flow checkpoint, expected an SR checkpoint" in result.stderr


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
