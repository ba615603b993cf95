from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import atomic_write_bytes, staged_output_dir

ROOT = Path(__file__).resolve().parents[2]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"data")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_staged_output_dir_appears_only_on_success(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_output_dir(tmp_path / "out") as staging:
            (staging / "half.txt").write_text("x")
            raise RuntimeError("crash half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with staged_output_dir(tmp_path / "out") as staging:
        (staging / "done.txt").write_text("x")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["done.txt"]
    with pytest.raises(UserError, match="not empty"):
        with staged_output_dir(tmp_path / "out"):
            pass
    with staged_output_dir(tmp_path / "out", overwrite=True) as staging:
        (staging / "new.txt").write_text("y")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]


def test_sigterm_inside_a_staged_output_dir_removes_it_and_exits_143(tmp_path):
    script = f"""
import os, signal
from unpaired_sr.common.files import staged_output_dir
with staged_output_dir({str(tmp_path / "out")!r}) as staging:
    (staging / "half.png").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the block")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "AssertionError" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor a hidden .out.partial-* folder
