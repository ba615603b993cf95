"""Crashes, stop signals, full disks, untrusted and damaged files."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import real_photo, run_stop_hint, tiny_flow_config
from unpaired_sr.common.checkpoint import load_checkpoint, save_checkpoint
from unpaired_sr.common.config import save_config
from unpaired_sr.common.errors import ImageReadError, UserError
from unpaired_sr.common.image_io import read_image
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.degradation.train import train as train_flow
from unpaired_sr.sr.checkpoint import load_sr
from unpaired_sr.tools.export import export_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def start_training(config_path: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "degradation.train", "--config", str(config_path), "--output", str(out), *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training made no progress")
        time.sleep(0.05)


def flow_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint, "degradation_flow")["model"]


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_result(tmp_path):
    config = tiny_flow_config(tmp_path, n_iter=120, save_every=5, log_every=50, keep_last=2)
    save_config(config, tmp_path / "config.yaml")
    train_flow(config, tmp_path / "straight")

    out = tmp_path / "killed"
    process = start_training(tmp_path / "config.yaml", out)
    last = out / "checkpoints" / "last.pt"
    wait_for(lambda: last.exists() and load_checkpoint(last, "degradation_flow")["step"] >= 10, process)
    process.send_signal(signal.SIGKILL)  # no handler runs: whatever is on disk is all there is
    process.wait(timeout=30)
    killed_at = load_checkpoint(last, "degradation_flow")["step"]
    assert 10 <= killed_at < 120
    resumed = subprocess.run(
        [sys.executable, "-m", "degradation.train", "--resume", str(last), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed at step {killed_at}" in (out / "train.log").read_text()
    assert load_checkpoint(last, "degradation_flow")["step"] == 120
    straight, again = flow_weights(tmp_path / "straight" / "checkpoints" / "last.pt"), flow_weights(last)
    for name, tensor in straight.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_after_the_current_step(tmp_path):
    config = tiny_flow_config(tmp_path, n_iter=100000, save_every=100000, log_every=1)
    save_config(config, tmp_path / "config.yaml")
    out = tmp_path / "run"
    process = start_training(tmp_path / "config.yaml", out)
    log = out / "train.log"
    wait_for(lambda: log.exists() and log.read_text().count("nll_clean=") >= 3, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM after step" in stderr and "--resume" in stderr and "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoints" / "last.pt", "degradation_flow")["step"]
    assert step >= 3 and f"stopped after step {step}" in log.read_text()
    # The hint is a whole command that works as printed: the run folder holds config and checkpoint.
    resumed = run_stop_hint(stderr, f"python -m degradation.train --resume {out}", "--max-steps", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt", "degradation_flow")["step"] == step + 2


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_writes_a_checkpoint(tmp_path):
    # Schedulers signal the whole group: the DataLoader workers get SIGTERM as well.
    config = tiny_flow_config(tmp_path, n_iter=100000, save_every=100000, log_every=1)
    config.data.num_workers = 2
    save_config(config, tmp_path / "config.yaml")
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "degradation.train",
        "--config",
        str(tmp_path / "config.yaml"),
        "--output",
        str(out),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = out / "train.log"
    wait_for(lambda: log.exists() and log.read_text().count("nll_clean=") >= 3, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM after step" in stderr and "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoints" / "last.pt", "degradation_flow")["step"]
    assert step >= 3 and f"stopped after step {step}" in log.read_text()


def test_disk_full_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
    config = tiny_flow_config(tmp_path, n_iter=9, save_every=3)
    train_flow(config, tmp_path / "run", max_steps=3)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    real_fsync = os.fsync

    def fsync_on_a_full_disk(fd: int, only: str) -> None:
        if only in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    # The disk fills up during training: the next checkpoint cannot be written.
    monkeypatch.setattr(os, "fsync", lambda fd: fsync_on_a_full_disk(fd, "step_"))
    with pytest.raises(UserError, match="cannot write checkpoint .*step_0000006.pt: No space left on device"):
        train_flow(config, tmp_path / "run", resume=last)
    # The disk is full from the start: not even the run's config can be written.
    monkeypatch.setattr(os, "fsync", lambda fd: fsync_on_a_full_disk(fd, "config.yaml"))
    with pytest.raises(UserError, match="cannot write .*config.yaml.*: No space left on device"):
        train_flow(config, tmp_path / "run", resume=last)
    monkeypatch.undo()
    assert last.read_bytes() == before  # the last good checkpoint, untouched
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.endswith(".tmp")] == []
    assert load_checkpoint(last, "degradation_flow")["step"] == 3


def test_unwritable_run_folder_is_one_clear_error(tmp_path):
    config = tiny_flow_config(tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="cannot create run folder .*a_file/run"):
        train_flow(config, tmp_path / "a_file" / "run")


def test_safetensors_export_loads_like_the_checkpoint(tmp_path, flow_ckpt):
    out = tmp_path / "flow.safetensors"
    assert export_checkpoint(flow_ckpt, out) == "degradation_flow"
    original, _ = load_flow(flow_ckpt)
    exported, config = load_flow(out)
    for (name, a), b in zip(original.state_dict().items(), exported.state_dict().values()):
        assert torch.equal(a, b), name
    assert config.model.num_steps == 2
    with pytest.raises(UserError, match="is a degradation-flow checkpoint, expected an SR checkpoint"):
        load_sr(out)
    with pytest.raises(UserError, match="exported weights only"):
        load_checkpoint(out, "degradation_flow", resume=True)
    with pytest.raises(UserError, match="must end in .safetensors"):
        export_checkpoint(flow_ckpt, tmp_path / "flow.pt")
    out.write_bytes(out.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_flow(out)


def test_incompatible_architecture_names_what_differs(tmp_path, flow_ckpt):
    state = load_checkpoint(flow_ckpt, "degradation_flow")
    state["config"]["model"]["hidden_channels"] = 24  # the weights are for 16
    save_checkpoint(tmp_path / "wrong.pt", state)
    with pytest.raises(UserError, match=r"of another shape \(e.g. levels\.0\.3\.\S+ is \(16, .* in the file, \(24, "):
        load_flow(tmp_path / "wrong.pt")
    state = load_checkpoint(flow_ckpt, "degradation_flow")
    state["config"]["model"]["num_steps"] = 3
    save_checkpoint(tmp_path / "deeper.pt", state)
    with pytest.raises(UserError, match=r"missing \(e.g. levels\.0\.7\."):
        load_flow(tmp_path / "deeper.pt")


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"kind": "sr", "model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(
        UserError,
        match=r"evil.pt was refused: it contains a pickled Python object \(\S*system\)"
        ", and unpickling it could run arbitrary code",
    ):
        load_checkpoint(tmp_path / "evil.pt", "sr")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_as_a_checkpoint_are_one_clear_error(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "noise.pt"
    path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="noise.pt is not a readable checkpoint"):
        load_checkpoint(path, "sr")


def test_hand_made_checkpoints_missing_parts_are_one_clear_error(tmp_path, flow_ckpt):
    save_checkpoint(tmp_path / "bare.pt", {"kind": "sr"})
    with pytest.raises(UserError, match=r"bare.pt is damaged or hand-made: no config, model"):
        load_sr(tmp_path / "bare.pt")
    save_checkpoint(tmp_path / "odd.pt", {"kind": "sr", "config": [1, 2], "model": {}})
    with pytest.raises(UserError, match="a config that is not a mapping"):
        load_sr(tmp_path / "odd.pt")
    state = load_checkpoint(flow_ckpt, "degradation_flow")
    del state["rng"]
    save_checkpoint(tmp_path / "no_rng.pt", state)
    load_flow(tmp_path / "no_rng.pt")  # enough to use it
    with pytest.raises(UserError, match="no rng"):
        load_checkpoint(tmp_path / "no_rng.pt", "degradation_flow", resume=True)  # not enough to resume it


def test_resuming_from_a_checkpoint_without_its_optimizer_is_one_clear_error(tmp_path, flow_ckpt):
    state = load_checkpoint(flow_ckpt, "degradation_flow")
    del state["optimizer"]
    save_checkpoint(tmp_path / "no_optimizer.pt", state)
    config = tiny_flow_config(tmp_path, n_iter=4)
    with pytest.raises(UserError, match="has no optimizer to resume from: it is damaged or hand-made"):
        train_flow(config, tmp_path / "run", resume=tmp_path / "no_optimizer.pt")


def test_stale_temporaries_are_swept_when_a_run_starts_or_resumes(tmp_path):
    config = tiny_flow_config(tmp_path, n_iter=6, save_every=3)
    train_flow(config, tmp_path / "run", max_steps=3)
    checkpoints = tmp_path / "run" / "checkpoints"
    stale = checkpoints / ".last.pt.k1ll3d.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"x" * 10000)
    train_flow(config, tmp_path / "run", resume=checkpoints / "last.pt")
    assert not stale.exists()
    assert load_checkpoint(checkpoints / "last.pt", "degradation_flow")["step"] == 6


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


PHOTO_BYTES = {fmt: encoded((real_photo("coffee", 48) * 255).astype(np.uint8), fmt) for fmt in ("PNG", "JPEG")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["PNG", "JPEG"]), cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 10**6), max_size=4))
def test_damaged_image_files_read_or_fail_with_their_name(tmp_path, fmt, cut, flips):
    data = bytearray(PHOTO_BYTES[fmt][: int(len(PHOTO_BYTES[fmt]) * cut)])
    for position in flips:  # flipped bits anywhere: header, chunk lengths, compressed data
        if data:
            data[position % len(data)] ^= 0x55
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(data))
    try:
        image = read_image(path)
    except ImageReadError as error:
        assert "damaged." in str(error)
        return
    # Decoders may accept some damage (a JPEG with flipped bits in its data decodes): the result is still an image.
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
