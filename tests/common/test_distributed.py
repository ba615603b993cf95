"""torchrun with 2 CPU processes (gloo) trains like 1 process with the doubled batch, for every stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_PIPELINE
from unpaired_sr.common.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BATCH_WORDS = ("--flow_train.batch_size", "--sr_train.batch_size", "--train.batch_size")


def run_pipeline(out: Path, data_dirs: dict[str, str], batch_size: int, processes: int) -> None:
    words = [
        "train_joint.py",
        "--config",
        "configs/joint.yaml",
        "--output",
        str(out),
        "--device",
        "cpu",
        "--data.clean_dir",
        data_dirs["clean"],
        "--data.real_dir",
        data_dirs["real"],
        *TINY_PIPELINE,
    ]
    for word in BATCH_WORDS:
        words += [word, str(batch_size)]
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    # One thread per process in both cases, as torchrun sets it: the same float arithmetic order.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launcher, *words], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    # A rank's own error line comes early; torchrun's report of it fills the end of stderr.
    errors = [line for line in result.stderr.splitlines() if "error:" in line.lower()][:5]
    assert result.returncode == 0, "\n".join(errors) + "\n...\n" + result.stderr[-3000:]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    """The trained parameters of all three stages, by name."""
    weights = {}
    for stage, kind, keys in (
        ("flow", "degradation_flow", ("model",)),
        ("sr", "sr", ("model", "ema")),
        ("joint", "joint", ("flow.model", "sr.model")),
    ):
        state = load_checkpoint(out / stage / "checkpoints" / "last.pt", kind)
        for key in keys:
            network, _, inner = key.rpartition(".")
            for name, tensor in (state[network][inner] if network else state[inner]).items():
                if tensor.is_floating_point() and tensor.numel():  # an empty buffer (no noise texture) has no max
                    weights[f"{stage}.{key}.{name}"] = tensor
    return weights


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    worst = max(a, key=lambda name: (a[name] - b[name]).abs().max().item())
    return (a[worst] - b[worst]).abs().max().item(), worst


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path, data_dirs):
    run_pipeline(tmp_path / "one", data_dirs, batch_size=4, processes=1)
    run_pipeline(tmp_path / "two", data_dirs, batch_size=2, processes=2)
    run_pipeline(tmp_path / "half", data_dirs, batch_size=2, processes=1)  # the control: half the data
    one, two, half = (final_weights(tmp_path / name) for name in ("one", "two", "half"))
    assert one.keys() == two.keys()
    difference, name = max_difference(one, two)
    assert difference < 1e-4, f"{name} differs by {difference}"
    # The same check tells apart a run that saw only half of each step's batch: it is not vacuous.
    control, _ = max_difference(one, half)
    assert control > 100 * max(difference, 1e-6)
    # Rank 0 alone wrote the run's files.
    assert (tmp_path / "two" / "summary.json").exists()
    assert "2 processes x batch 2" in (tmp_path / "two" / "flow" / "train.log").read_text()
