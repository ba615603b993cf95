"""Shared fixtures: small real photos from scikit-image, tiny configs, a tiny trained flow."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from unpaired_sr.common.config import load_config
from unpaired_sr.common.image_io import write_image
from unpaired_sr.degradation.config import FlowConfig

torch.set_num_threads(2)

# No test takes a minute here; one that runs for ten is hung (a deadlocked
# subprocess, say). pytest prints every thread's stack then (faulthandler_timeout
# in pyproject.toml) and this ends the run half a minute later, so CI fails with
# the place of the hang instead of idling to its time limit.
HUNG_TEST_SECONDS = 630


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default="cpu",
        help="where tests taking the `device` fixture run (e.g. cuda); tests marked gpu need a device other than cpu",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device") == "cpu":
        skip = pytest.mark.skip(reason="a GPU test: run with --device cuda on a machine with one")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device of ``--device`` (default cpu)."""
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: no CUDA device is visible to torch here")
    return torch.device(name)


@pytest.fixture(autouse=True)
def fail_a_hung_test():
    timer = threading.Timer(HUNG_TEST_SECONDS, os._exit, args=(1,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def run_stop_hint(stderr: str, expected: str, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The resume command a stopped run printed last (checked to be ``expected``), run as printed plus ``extra``."""
    hint = re.search(r"continue with (.+)\)$", stderr.strip().splitlines()[-1]).group(1)
    assert hint == expected
    words = shlex.split(hint)
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, *words[1:], *extra], cwd=root, capture_output=True, text=True, timeout=timeout
    )


def run_commands(*commands: list[str], timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Python commands (``[module_or_script, *args]``) run from the repository root, all at once.

    Most of a failing command's time is the interpreter importing torch; the checks of bad input run
    a handful of them, so they start together instead of one after another.
    """
    root = Path(__file__).resolve().parents[1]

    def run(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *command], cwd=root, capture_output=True, text=True, timeout=timeout)

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(run, commands))


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


def tiny_flow_config(tmp_path: Path, **train_overrides) -> FlowConfig:
    hr, real = tmp_path / "hr", tmp_path / "real"
    for folder, names, size in ((hr, ("astronaut", "coffee", "chelsea"), 128), (real, ("rocket", "camera"), 48)):
        folder.mkdir(exist_ok=True)
        for name in names:
            photo = real_photo(name, size)
            if folder == real:  # a noisy "real" domain
                photo = np.clip(photo + np.random.default_rng(0).normal(0, 0.05, photo.shape), 0, 1)
            write_image(folder / f"{name}.png", photo)
    overrides = {
        "n_iter": 6,
        "batch_size": 4,
        "log_every": 1,
        "save_every": 3,
        "sample_every": 1000,
        "warmup_iter": 0,
        "device": "cpu",
        **train_overrides,
    }
    words = ["--data.clean_dir", str(hr), "--data.real_dir", str(real)]
    words += (
        "--data.crop_size 16 --data.num_workers 0 --model.num_steps 2 --model.hidden_channels 16 "
        "--model.cond_channels 8 --model.cond_blocks 1"
    ).split()
    for key, value in overrides.items():
        words += [f"--train.{key}", str(value)]
    return load_config(FlowConfig, "configs/deflow_light.yaml", words)


# Command-line words that make every stage of the pipeline (configs/joint.yaml) tiny.
TINY_PIPELINE = [
    "--data.crop_size",
    "16",
    "--data.num_workers",
    "0",
    "--flow.num_steps",
    "2",
    "--flow.hidden_channels",
    "16",
    "--flow.cond_channels",
    "8",
    "--flow.cond_blocks",
    "1",
    "--sr.num_features",
    "8",
    "--sr.num_layers",
    "4",
    "--flow_train.n_iter",
    "4",
    "--flow_train.batch_size",
    "2",
    "--flow_train.warmup_iter",
    "0",
    "--sr_train.n_iter",
    "3",
    "--sr_train.batch_size",
    "2",
    "--sr_train.warmup_iter",
    "0",
    "--train.n_iter",
    "3",
    "--train.batch_size",
    "2",
    "--train.warmup_iter",
    "0",
    "--train.log_every",
    "1",
]


@pytest.fixture(scope="session")
def data_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny clean HR and real LR folders, as ``tiny_flow_config`` writes them."""
    config = tiny_flow_config(tmp_path_factory.mktemp("joint_data"))  # writes tiny HR and real folders
    return {"clean": config.data.clean_dir, "real": config.data.real_dir}


@pytest.fixture(scope="session")
def flow_ckpt(tmp_path_factory) -> Path:
    """A tiny flow trained for two steps: its checkpoint."""
    from unpaired_sr.degradation.train import train as train_flow

    root = tmp_path_factory.mktemp("flow_for_sr")
    train_flow(tiny_flow_config(root, n_iter=2, save_every=2), root / "run")
    return root / "run" / "checkpoints" / "last.pt"
