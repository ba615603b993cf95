from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from tests.conftest import real_photo
from unpaired_sr.common.errors import ImageReadError, UserError
from unpaired_sr.common.image_io import (
    MAX_PIXELS_VARIABLE,
    list_images,
    read_image,
    read_image_native,
    set_max_pixels,
    write_image,
)

PHOTO = (real_photo("astronaut", 64) * 255).round().astype(np.uint8)


def test_8bit_formats_read_as_rgb(tmp_path):
    for ext in ("png", "bmp", "tif", "webp"):
        path = tmp_path / f"a.{ext}"
        cv2.imwrite(str(path), PHOTO[:, :, ::-1], [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == "webp" else [])
        image = read_image_native(path)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        np.testing.assert_array_equal(image, PHOTO, err_msg=ext)  # lossless formats, RGB order
    path = tmp_path / "a.jpg"
    Image.fromarray(PHOTO).save(path, quality=98)
    assert np.abs(read_image_native(path).astype(int) - PHOTO).mean() < 2.0  # RGB order, lossy


def test_16bit_png_and_tiff_keep_depth(tmp_path):
    deep = PHOTO.astype(np.uint16) * 257 + 3
    for ext in ("png", "tif"):
        path = tmp_path / f"deep.{ext}"
        cv2.imwrite(str(path), deep[:, :, ::-1])
        native = read_image_native(path)
        assert native.dtype == np.uint16
        np.testing.assert_array_equal(native, deep)
        np.testing.assert_allclose(read_image(path), deep / 65535.0, atol=1e-6)


def test_gray_rgba_palette_and_cmyk_become_rgb(tmp_path):
    gray = PHOTO[:, :, 1]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image_native(tmp_path / "gray.png"), np.repeat(gray[:, :, None], 3, 2))
    Image.fromarray(gray).convert("I;16").save(tmp_path / "gray16.png")
    assert read_image_native(tmp_path / "gray16.png").shape == (64, 64, 3)
    Image.fromarray(gray).convert("LA").save(tmp_path / "gray_alpha.png")
    np.testing.assert_array_equal(read_image_native(tmp_path / "gray_alpha.png")[:, :, 0], gray)
    rgba = np.concatenate([PHOTO, np.full((64, 64, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image_native(tmp_path / "rgba.png"), PHOTO)  # alpha dropped
    palette = Image.fromarray(PHOTO).convert("P")
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_image_native(tmp_path / "palette.png"), np.asarray(palette.convert("RGB")))
    palette.save(tmp_path / "palette_t.png", transparency=0)
    assert read_image_native(tmp_path / "palette_t.png").shape == (64, 64, 3)
    Image.fromarray(PHOTO).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    assert np.abs(read_image(tmp_path / "cmyk.jpg") - PHOTO / 255.0).mean() < 0.02


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_file_names_itself(tmp_path, ext):
    path = tmp_path / f"photo.{ext}"
    write_image(path, PHOTO)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"photo.{ext}"):
        read_image(path)


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png.*empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_list_images(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        list_images(tmp_path / "nope", "HR folder")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds no images .1 other files"):
        list_images(tmp_path, "HR folder")
    write_image(tmp_path / "b.png", PHOTO)
    write_image(tmp_path / "a.jpg", PHOTO)
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]  # non-images ignored, sorted
    write_image(tmp_path / "a.png", PHOTO)
    with pytest.raises(UserError, match="a.jpg and a.png differ only in extension"):
        list_images(tmp_path)


def test_write_is_atomic_and_refuses_nan(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, PHOTO)
    bad = PHOTO / 255.0
    bad[0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        write_image(path, bad)
    np.testing.assert_array_equal(read_image_native(path), PHOTO)  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left behind


@settings(max_examples=25, deadline=None)
@given(
    image=arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
    ext=st.sampled_from(["png", "tif"]),
)
def test_lossless_round_trip_property(tmp_path_factory, image, ext):
    path = tmp_path_factory.mktemp("io") / f"x.{ext}"
    write_image(path, image)
    np.testing.assert_array_equal(read_image_native(path), image)
    small = (image >> 8).astype(np.uint8)
    write_image(path, small)
    np.testing.assert_array_equal(read_image_native(path), small)
    assert read_image(path).dtype == np.float32


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_applies_it(tmp_path, orientation):
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # a red corner and a green bar: every turn and flip looks different
    stored[16:, 10:30] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), np.float32) / 255
    image = read_image(path)
    assert image.shape == expected.shape == ((40, 24, 3) if orientation >= 5 else (24, 40, 3))
    assert np.abs(image - expected).max() < 0.05  # two JPEG decoders


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)  # a few hundred bytes
    assert path.stat().st_size < 2000
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "100000")
    with pytest.raises(
        ImageReadError, match=r"bomb.png is 400x300 \(120,000 px\), above the limit of 100,000 px; raise it"
    ):
        read_image(path)
    set_max_pixels(120000)
    assert read_image(path).shape == (300, 400, 3)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(UserError, match="is not a number of pixels"):
        read_image(path)
