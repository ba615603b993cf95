"""The data tools as commands: help works, bad input gives one line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import real_photo, run_commands
from unpaired_sr.common.image_io import write_image

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["extract_subimages", "downsample", "degrade_classical", "make_benchmark", "prepare_demo"]


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"data_tools.{name}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help():
    for name, result in zip(TOOLS, run_commands(*(["-m", f"data_tools.{name}", "--help"] for name in TOOLS))):
        assert result.returncode == 0 and f"usage: python -m data_tools.{name}" in result.stdout, name


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_bad_inputs(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_image(mixed / "good.png", real_photo("coffee", 64))
    (mixed / "readme.txt").write_text("not an image")  # ignored
    (mixed / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    small = tmp_path / "small"
    small.mkdir()
    write_image(small / "tiny.png", real_photo("coffee", 30))
    cases = [
        (["downsample", "--input", str(tmp_path / "nope")], ["nope", "does not exist"]),
        (["downsample", "--input", str(tmp_path / "empty")], ["holds no images"]),
        (["degrade_classical", "--input", str(mixed), "--preset", "noise_jpeg"], ["corrupt.png"]),
        (
            ["extract_subimages", "--input", str(small), "--crop-size", "48"],
            ["tiny.png", "smaller than the crop size 48"],
        ),
    ]
    results = run_commands(*(["-m", f"data_tools.{tool}", *args, "--output", str(out)] for (tool, *args), _ in cases))
    for (_, fragments), result in zip(cases, results):
        assert_one_line_error(result, *fragments)
    assert not out.exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.slow
def test_commands_run(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        write_image(photos / f"{name}.png", real_photo(name, 96))
    result = run_tool(
        "make_benchmark",
        "--input",
        str(photos),
        "--output",
        str(tmp_path / "bench"),
        "--degradation",
        "noise_jpeg",
        "--workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "benchmark in" in result.stdout
    result = run_tool("downsample", "--input", str(photos), "--output", str(tmp_path / "lr"), "--scale", "3")
    assert result.returncode == 0 and "wrote 3 images" in result.stdout
