"""evaluate.py: outputs, metric conventions, missing ground truth, LPIPS handling and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import real_photo, run_commands
from unpaired_sr.common.checkpoint import save_checkpoint
from unpaired_sr.common.config import load_config
from unpaired_sr.common.image_io import read_image, write_image
from unpaired_sr.common.matlab_resize import downscale
from unpaired_sr.common.niqe_params import default_params_path, load_niqe_params
from unpaired_sr.data_tools.degrade_classical import degrade, image_rng
from unpaired_sr.sr.config import SRConfig
from unpaired_sr.sr.evaluation import bicubic_upscale, evaluate, format_table, niqe_score
from unpaired_sr.sr.metrics import psnr
from unpaired_sr.sr.train import train

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    lr_dir, hr_dir, other = root / "lr", root / "hr", root / "other_sr"
    for folder in (lr_dir, hr_dir, other):
        folder.mkdir()
    for name in NAMES:
        hr = real_photo(name)[:64, :80]
        lr = degrade(hr, 4, "noise_jpeg", image_rng(0, name))
        write_image(hr_dir / f"{name}.png", hr)
        write_image(lr_dir / f"{name}.png", lr)
        write_image(other / f"{name}.png", bicubic_upscale(read_image(lr_dir / f"{name}.png"), 4))
    train_hr = root / "train_hr"
    train_hr.mkdir()
    write_image(train_hr / "rocket.png", real_photo("rocket", 64))
    words = ["--data.hr_dir", str(train_hr)]
    words += (
        "--data.degradation bicubic --data.crop_size 8 --data.num_workers 0 --model.num_features 8 "
        "--model.num_layers 4 --train.n_iter 1 --train.batch_size 2 --train.device cpu"
    ).split()
    config = load_config(SRConfig, "configs/sr_vdsr_fast.yaml", words)
    train(config, root / "sr_run")
    return {
        "lr": lr_dir,
        "hr": hr_dir,
        "other": other,
        "ckpt": root / "sr_run" / "checkpoints" / "last.pt",
        "root": root,
    }


def test_outputs_and_conventions(tmp_path, test_set):
    summary = evaluate(
        str(test_set["lr"]),
        str(test_set["hr"]),
        4,
        tmp_path / "out",
        models=[("vdsr", str(test_set["ckpt"]))],
        sr_dirs=[("other", str(test_set["other"]))],
        device="cpu",
        use_lpips=False,
    )
    out = tmp_path / "out"
    assert summary["settings"]["crop_border"] == 4 and summary["settings"]["y_channel"] is True
    assert list(summary["methods"]) == ["bicubic", "vdsr", "other"]
    assert json.loads((out / "summary.json").read_text()) == summary
    for name in NAMES:
        assert read_image(out / "vdsr" / f"{name}.png").shape == (64, 80, 3)
    bicubic_psnr = np.mean(
        [
            psnr(
                bicubic_upscale(read_image(test_set["lr"] / f"{n}.png"), 4), read_image(test_set["hr"] / f"{n}.png"), 4
            )
            for n in NAMES
        ]
    )
    assert summary["methods"]["bicubic"]["psnr"] == pytest.approx(bicubic_psnr, abs=1e-9)
    # The outside folder holds bicubic outputs written to 8 bits: nearly the same numbers.
    assert summary["methods"]["other"]["psnr"] == pytest.approx(bicubic_psnr, abs=0.05)
    assert summary["methods"]["vdsr"]["n_images"] == 3 and summary["methods"]["vdsr"]["lpips"] is None
    assert summary["methods"]["vdsr"]["seconds_per_image"] > 0
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 9 and set(rows[0]) == {"method", "image", "psnr", "ssim"}
    figure = read_image(out / "comparison.png")
    assert figure.shape[1] > 5 * 64  # LR | bicubic | vdsr | other | HR
    table = format_table(summary)
    assert "PSNR (Y)" in table and "vdsr" in table
    rgb = evaluate(
        str(test_set["lr"]), str(test_set["hr"]), 4, tmp_path / "rgb", channel="rgb", crop_border=0, use_lpips=False
    )
    assert (
        rgb["settings"]["channel"] == "rgb"
        and rgb["methods"]["bicubic"]["psnr"] != summary["methods"]["bicubic"]["psnr"]
    )


def test_without_ground_truth(tmp_path, test_set, capsys):
    summary = evaluate(
        str(test_set["lr"]), None, 4, tmp_path / "out", models=[("vdsr", str(test_set["ckpt"]))], device="cpu"
    )
    assert "psnr" not in summary["methods"]["vdsr"]
    assert (tmp_path / "out" / "comparison.png").exists() and (tmp_path / "out" / "vdsr" / "coffee.png").exists()
    assert "need ground truth" in format_table(summary)


def test_lpips_missing_is_one_line_and_null(tmp_path, test_set, capsys):
    summary = evaluate(
        str(test_set["lr"]), str(test_set["hr"]), 4, tmp_path / "out", lpips_weights=str(tmp_path / "nowhere.pth")
    )
    assert summary["methods"]["bicubic"]["lpips"] is None
    assert "LPIPS left out" in capsys.readouterr().out
    assert "nowhere.pth" in summary["settings"]["lpips_note"]


def test_lpips_column_when_weights_are_given(tmp_path, test_set):
    import torchvision

    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")  # plumbing only
    summary = evaluate(
        str(test_set["lr"]), str(test_set["hr"]), 4, tmp_path / "out", lpips_weights=str(tmp_path / "alexnet.pth")
    )
    value = summary["methods"]["bicubic"]["lpips"]
    assert value is not None and value >= 0
    assert "lpips" in next(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_bad_input(tmp_path, test_set):
    base = ["--lr", str(test_set["lr"]), "--hr", str(test_set["hr"]), "--scale", "4", "--no-lpips", "--device", "cpu"]
    # HR of the wrong size.
    wrong_hr = tmp_path / "wrong_hr"
    wrong_hr.mkdir()
    for name in NAMES:
        write_image(wrong_hr / f"{name}.png", real_photo(name)[:60, :80])
    # A missing partner.
    partial = tmp_path / "partial_hr"
    partial.mkdir()
    write_image(partial / "coffee.png", real_photo("coffee")[:64, :80])
    # An unreadable LR file.
    broken = tmp_path / "broken_lr"
    broken.mkdir()
    for name in NAMES:
        (broken / f"{name}.png").write_bytes((test_set["lr"] / f"{name}.png").read_bytes()[:100])
    # An empty folder.
    (tmp_path / "empty").mkdir()
    # A checkpoint that is not an SR checkpoint.
    save_checkpoint(tmp_path / "flow.pt", {"kind": "degradation_flow", "step": 1})
    # A --sr folder with the wrong sizes.
    small = tmp_path / "small_sr"
    small.mkdir()
    for name in NAMES:
        write_image(small / f"{name}.png", real_photo(name)[:32, :40])
    cases = {
        "ok": (base, None),
        "a": ([*base[:2], "--hr", str(wrong_hr), *base[4:]], ["HR is 80x60", "x4 = 80x64"]),
        "b": ([*base[:2], "--hr", str(partial), *base[4:]], ["astronaut.png has no HR partner"]),
        "c": (["--lr", str(broken), *base[2:]], ["astronaut.png"]),
        "d": (["--lr", str(tmp_path / "empty"), *base[2:]], ["holds no images"]),
        "e": (
            [*base, "--model", f"x={tmp_path / 'flow.pt'}"],
            ["is a degradation-flow checkpoint, expected an SR checkpoint"],
        ),
        "f": ([*base, "--sr", f"small={small}"], ["--sr small", "is 40x32, expected 80x64"]),
        "g": ([*base, "--model", "nonsense"], ["NAME=PATH"]),
    }
    results = run_commands(
        *(["evaluate.py", *args, "--output", str(tmp_path / name)] for name, (args, _) in cases.items())
    )
    for (name, (_, fragments)), result in zip(cases.items(), results):
        if fragments is None:
            assert result.returncode == 0 and "bicubic" in result.stdout, result.stderr
        else:
            assert_one_line_error(result, *fragments)
            assert not (tmp_path / name).exists()  # nothing half-written


@pytest.mark.slow
def test_tiny_and_mixed_size_images(tmp_path, test_set):
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    lr.mkdir(), hr.mkdir()
    for name, size in (("astronaut", 5), ("coffee", 24)):  # 5x5 LR: 20x20 HR, 12x12 after the 4-px border
        photo = real_photo(name, size * 4)
        write_image(hr / f"{name}.png", photo)
        write_image(lr / f"{name}.png", downscale(photo, 4))
    base = ["--lr", str(lr), "--hr", str(hr), "--scale", "4", "--no-lpips", "--device", "cpu"]
    result = run_evaluate(*base, "--output", str(tmp_path / "ok"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_image(tmp_path / "ok" / "comparison.png").shape[0] > 20
    message = "astronaut.png is 20x20: after --crop-border 5, 10x10 px are left and SSIM needs 11x11"
    assert_one_line_error(run_evaluate(*base, "--crop-border", "5", "--output", str(tmp_path / "a")), message)
    assert_one_line_error(
        run_evaluate(*base, "--crop-border", "400", "--output", str(tmp_path / "b")), "0x0 px are left"
    )
    (tmp_path / "a_file").write_text("x")
    assert_one_line_error(run_evaluate(*base, "--output", str(tmp_path / "a_file" / "out")), "cannot write into")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(not default_params_path().is_file(), reason="NIQE model not fetched (make lpips-weights)")
def test_niqe_column_without_ground_truth(tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    write_image(lr_dir / "coffee.png", downscale(real_photo("coffee", 160), 4))  # x4 output: one 96-px patch
    summary = evaluate(str(lr_dir), None, 4, tmp_path / "out", device="cpu")
    assert summary["methods"]["bicubic"]["niqe"] > 0 and summary["settings"]["niqe"]
    assert np.isnan(niqe_score(np.zeros((100, 100, 3)), 4, load_niqe_params()))  # under one patch: left out
    assert "NIQE" in format_table(summary)
    header = (tmp_path / "out" / "per_image.csv").read_text().splitlines()[0]
    assert header == "method,image,niqe"
