"""The benchmark script's quick mode runs on CPU and prints one well-formed JSON line per case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_prints_every_case():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--quick", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    cases = [(line["case"], line.get("form") or line.get("config")) for line in lines]
    assert ("flow_train", "deflow_light") in cases and ("synthesize", "deflow_light") in cases
    for form in ("post_upsample", "pre_upsample"):
        assert ("sr_train", form) in cases and ("sr_infer", form) in cases
    (shared,) = [line for line in lines if line["case"] == "shared_cpu"]
    for setting in ("auto", "all"):
        assert shared[setting]["solo_steps_per_s"] > 0 and len(shared[setting]["pair_fraction"]) == 2
    (data,) = [line for line in lines if line["case"] == "flow_data"]
    assert (
        min(data["data_batches_per_s_0_workers"], data["data_batches_per_s_2_workers"], data["train_steps_per_s"]) > 0
    )
    layouts = [line for line in lines if line["case"] == "flow_layout"]
    assert [line["lr_crop"] for line in layouts] == [32, 64]
    for line in layouts:
        assert line["ratio_to_nchw_fp32"]["nchw_fp32"] == 1.0 and min(line["steps_per_s"].values()) > 0
        assert {"nchw_fp32", "channels_last_fp32"} <= set(line["ratio_to_nchw_fp32"])
    for line in lines:
        if line["case"] in ("shared_cpu", "flow_data", "flow_layout"):
            continue
        speed = line.get("steps_per_s") or line.get("mp_per_s")
        assert speed > 0 and line["device"].startswith("cpu")
    infer = [line for line in lines if line["case"] == "sr_infer"]
    assert all(line["tflops"] > 0 and line["fraction_of_peak"] is None for line in infer)  # no CPU peak assumed
