"""The estimate-time benchmark builds its sets, runs every estimate and prints each line with its time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_estimate_time_prints_each_estimate_with_its_seconds():
    result = subprocess.run(
        [sys.executable, "benchmarks/estimate_time.py", "--num-clean", "4", "--num-real", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("built 4 clean and 6 real images")
    timed = [line for line in lines[1:] if re.match(r"^\s*\d+\.\d s  ", line)]
    assert "from 4 clean and 6 real images" in timed[0]  # the first line says how much of each set is read
    for estimate in ("image blur", "image noise", "image aliasing", "image sharpening", "image chroma blur"):
        assert any(estimate in line for line in timed), estimate
    assert timed[-1].endswith("in all")
