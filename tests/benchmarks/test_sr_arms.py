"""The SR-arms benchmark trains its upper bound on the benchmark's own degradation, drawn afresh, at the
benchmark's scale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_truth_arm_trains_on_the_benchmarks_preset(tmp_path):
    bench = tmp_path / "bench"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_tools.prepare_demo",
            "--output",
            str(bench),
            "--degradation",
            "grain",
            "--scale",
            "2",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "arms"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/sr_arms.py",
            "--bench",
            str(bench),
            "--arms",
            "truth",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--crop-size",
            "16",
            "--device",
            "cpu",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Not the fixed oracle pairs: the preset itself, applied to each training crop.
    config = yaml.safe_load((out / "sr_truth" / "config.yaml").read_text())
    assert config["data"]["degradation"] == "grain" and not config["data"]["lq_dir"]
    assert config["data"]["scale"] == 2  # the benchmark's, not the SR config's x4
    evaluation = json.loads((out / "arms.json").read_text())["evaluation"]
    assert evaluation["settings"]["scale"] == 2
    methods = evaluation["methods"]
    assert set(methods) == {"bicubic", "truth"}
