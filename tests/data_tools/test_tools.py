"""extract_subimages, downsample, degrade_classical, make_benchmark and prepare_demo as functions."""

from __future__ import annotations

import json
import os
from functools import partial

import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import list_images, read_image, read_image_native, write_image
from unpaired_sr.common.matlab_resize import downscale
from unpaired_sr.data_tools.degrade_classical import PRESETS, degrade, degrade_folder, image_rng
from unpaired_sr.data_tools.downsample import downsample_folder
from unpaired_sr.data_tools.extract_subimages import crop_positions, extract_subimages
from unpaired_sr.data_tools.make_benchmark import make_benchmark, split_photos
from unpaired_sr.data_tools.parallel import map_with_progress
from unpaired_sr.data_tools.prepare_demo import prepare_demo


def test_crop_positions_follow_div2k_preparation():
    # DIV2K 2040 x 1356 with 480 crops, step 240: a flush last crop covers the remainder.
    assert crop_positions(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert crop_positions(1356, 480, 240) == [0, 240, 480, 720, 876]
    assert crop_positions(960, 480, 240) == [0, 240, 480]  # exact fit: nothing added
    assert crop_positions(1000, 480, 240, thresh_size=40) == [0, 240, 480]  # 40 px left over: ignored
    assert crop_positions(1000, 480, 240, thresh_size=39) == [0, 240, 480, 520]


def test_pool_workers_are_spawned_with_one_thread_each():
    # The caller has run torch's OpenMP pool (as every test process has); forked
    # workers of such a process can deadlock, spawned ones start clean.
    torch.ones(256, 256).mm(torch.ones(256, 256))
    callers_setting = os.environ.get("OMP_NUM_THREADS")
    thread_setting = partial(os.getenv, "OMP_NUM_THREADS")
    assert map_with_progress(thread_setting, ["unset"] * 3, num_workers=2) == ["1", "1", "1"]
    assert os.environ.get("OMP_NUM_THREADS") == callers_setting


def test_extract_subimages_covers_the_image(tmp_path):
    image = (np.random.default_rng(0).random((100, 130, 3)) * 65535).astype(np.uint16)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "big.png", image)
    count = extract_subimages(tmp_path / "in", tmp_path / "out", crop_size=48, step=24, num_workers=1)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert count == len(names) == 4 * 5  # rows 0, 24, 48, 52; cols 0, 24, 48, 72, 82
    assert names[0] == "big_s001.png"
    last = read_image_native(tmp_path / "out" / "big_s020.png")
    np.testing.assert_array_equal(last, image[52:100, 82:130])  # flush with the corner, 16-bit kept


def test_extract_subimages_rejects_small_images_and_leaves_no_output(tmp_path, photo_folder):
    folder = photo_folder(size=40)
    with pytest.raises(UserError, match=r"astronaut.png \(40x40\) is smaller than the crop size 48"):
        extract_subimages(folder, tmp_path / "out", crop_size=48, step=24, num_workers=2)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_downsample_folder_is_matlab_bicubic(tmp_path, photo_folder):
    folder = photo_folder(size=98)  # not a multiple of 4: mod-cropped to 96
    downsample_folder(folder, tmp_path / "lr", scale=4, num_workers=1)
    lr = read_image(tmp_path / "lr" / "coffee.png")
    assert lr.shape == (24, 24, 3)
    expected = downscale(read_image(folder / "coffee.png")[:96, :96], 4)
    assert np.abs(lr - expected).max() <= 0.5 / 255 + 1e-6  # only the 8-bit rounding differs


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_presets_shape_range_and_determinism(preset, scale):
    hr = real_photo("coffee")[:96, :96]
    lr = degrade(hr, scale, preset, image_rng(0, "coffee"))
    assert lr.shape == (96 // scale, 96 // scale, 3) and lr.dtype == np.float32
    assert lr.min() >= 0 and lr.max() <= 1
    np.testing.assert_array_equal(lr, degrade(hr, scale, preset, image_rng(0, "coffee")))
    if preset != "bicubic":
        assert not np.array_equal(lr, degrade(hr, scale, preset, image_rng(1, "coffee")))
        assert np.abs(lr - downscale(hr, scale)).mean() > 1 / 255  # it really degrades


def test_degrade_rejects_bad_arguments():
    hr = real_photo("coffee")[:96, :96]
    with pytest.raises(UserError, match="unknown degradation 'blurry'"):
        degrade(hr, 4, "blurry", image_rng(0, "x"))
    with pytest.raises(UserError, match="scale must be 2, 3 or 4"):
        degrade(hr, 5, "bicubic", image_rng(0, "x"))


def test_degrade_folder_does_not_depend_on_worker_count(tmp_path, photo_folder):
    folder = photo_folder()
    degrade_folder(folder, tmp_path / "one", 4, "realesrgan", seed=3, num_workers=1)
    degrade_folder(folder, tmp_path / "two", 4, "realesrgan", seed=3, num_workers=2)
    for path in list_images(tmp_path / "one"):
        np.testing.assert_array_equal(read_image_native(path), read_image_native(tmp_path / "two" / path.name))


def test_split_is_by_photo_and_deterministic():
    names = [f"p{i}" for i in range(10)]
    split = split_photos(names, seed=0)
    assert split == split_photos(names, seed=0)
    assert len(split["test"]) == 2
    assert sorted(sum(split.values(), [])) == sorted(names)
    with pytest.raises(UserError, match="at least 3 photos"):
        split_photos(["a", "b"], seed=0)
    with pytest.raises(UserError, match="not found among the inputs: zz"):
        split_photos(names, seed=0, test_names=["zz"])


def test_make_benchmark_layout(tmp_path, photo_folder):
    folder = photo_folder(names=("astronaut", "coffee", "chelsea", "rocket", "camera"), size=176)
    meta = make_benchmark(folder, tmp_path / "bench", "camera", scale=4, tile_size=64, test_names=["coffee"])
    bench = tmp_path / "bench"
    assert json.loads((bench / "benchmark.json").read_text()) == meta
    stems = lambda split: sorted(p.stem for p in list_images(bench / split))
    assert stems("test_lr") == stems("test_hr") and stems("test_hr")[0].startswith("coffee_t")
    assert stems("train_oracle_lr") == stems("train_hr")
    photo_of = lambda split: {s.rsplit("_t", 1)[0] for s in stems(split)}
    assert photo_of("train_hr").isdisjoint(photo_of("train_real_lr"))  # split by photo
    assert "coffee" not in photo_of("train_hr") | photo_of("train_real_lr")
    hr, lr = read_image(bench / "test_hr" / "coffee_t001.png"), read_image(bench / "test_lr" / "coffee_t001.png")
    assert hr.shape == (64, 64, 3) and lr.shape == (16, 16, 3)
    # 176 px: tiles at 0 and 64, and a flush one at 112 (48 px > half a tile left), per axis.
    assert meta["num_images"]["test"] == 9


def test_prepare_demo_builds_the_benchmark_offline(tmp_path):
    meta = prepare_demo(tmp_path / "demo", num_workers=2)
    assert meta["photos"]["test"] == ["chelsea", "coffee", "rocket"]
    assert all(count >= 15 for count in meta["num_images"].values())
    for split in ("train_hr", "train_real_lr", "train_oracle_lr", "test_lr", "test_hr"):
        assert list_images(tmp_path / "demo" / split)
    with pytest.raises(UserError, match="not empty"):
        prepare_demo(tmp_path / "demo")
