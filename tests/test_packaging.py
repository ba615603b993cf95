"""The installed distribution: one package, unpaired_sr, and the usr-* commands; no generic top-level names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_one_package_and_working_commands(tmp_path):
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    source.mkdir()
    for name in (
        "pyproject.toml",
        "README.md",
        "requirements.txt",
        "requirements-dev.txt",
        "evaluate.py",
        "train_joint.py",
    ):
        shutil.copy(ROOT / name, source / name)
    for package in ("common", "data_tools", "degradation", "sr", "joint", "tools"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(source),
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
    ]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("unpaired_sr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"unpaired_sr", wheel.name.split("-py3")[0] + ".dist-info"}
    assert {"unpaired_sr/evaluate.py", "unpaired_sr/sr/infer.py", "unpaired_sr/common/config.py"} <= set(names)
    assert not any(name.startswith(("unpaired_sr/tests/", "unpaired_sr/benchmarks/")) for name in names)
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)]
    assert subprocess.run(install, capture_output=True, text=True, timeout=300).returncode == 0
    commands = sorted(path.name for path in (target / "bin").iterdir())
    assert {"usr-train-flow", "usr-synthesize", "usr-train-sr", "usr-infer", "usr-evaluate", "usr-pipeline"} <= set(
        commands
    )
    # From another folder, with only the installed copy: the command runs and names itself,
    # and `common` (or `evaluate`) is not importable.
    env = {**os.environ, "PYTHONPATH": str(target)}
    command = [str(target / "bin" / "usr-infer"), "--help"]  # pip wrote this interpreter into its #! line
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage: usr-infer [-h] --ckpt CKPT"), run.stderr[-2000:]
    probe = "import importlib.util as u, unpaired_sr.sr.infer as m; print(m.__file__, u.find_spec('common'))"
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.stdout.split() == [str(target / "unpaired_sr" / "sr" / "infer.py"), "None"], found.stderr
