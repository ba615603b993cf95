"""Shared fixtures: small real photos from scikit-image, written where a test wants them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from common.image_io import write_image

torch.set_num_threads(2)

# No test takes a minute here; one that runs for ten is hung (a deadlocked
# subprocess, say). pytest prints every thread's stack then (faulthandler_timeout
# in pyproject.toml) and this ends the run half a minute later, so CI fails with
# the place of the hang instead of idling to its time limit.
HUNG_TEST_SECONDS = 630


@pytest.fixture(autouse=True)
def fail_a_hung_test():
    timer = threading.Timer(HUNG_TEST_SECONDS, os._exit, args=(1,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def real_photo(name: str = "astronaut", size: int | None = None) -> np.ndarray:
    """A bundled photo as float32 RGB in [0, 1], optionally its top-left ``size`` x ``size``."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3].astype(np.float32) / 255.0
    return image[:size, :size] if size else image


@pytest.fixture
def photo_folder(tmp_path: Path):
    """Write crops of several real photos into a folder; returns a function (names, size) -> folder."""

    def make(folder: str = "photos", names=("astronaut", "coffee", "chelsea", "rocket"), size: int = 96) -> Path:
        out = tmp_path / folder
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            write_image(out / f"{name}.png", real_photo(name, size))
        return out

    return make
