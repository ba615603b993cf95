from __future__ import annotations

import math

import pytest
import torch

from unpaired_sr.common import training
from unpaired_sr.common.distributed import Distributed
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.training import EMA, NonFiniteGuard, lr_factor
from unpaired_sr.degradation.config import FlowConfig


def test_ema_warms_up_then_uses_its_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 2/11): the average moves 9/11 of the way
    assert ema.module.weight.item() == pytest.approx(9 / 11)
    for _ in range(200):
        ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1.0, abs=1e-6)
    restored = EMA(torch.nn.Linear(1, 1, bias=False), decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 201 and restored.module.weight.item() == ema.module.weight.item()
    assert not ema.module.weight.requires_grad


def test_lr_schedules():
    cosine = lr_factor("cosine", n_iter=110, warmup_iter=10)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(10) == pytest.approx(1.0) and cosine(60) == pytest.approx(0.5) and cosine(110) == pytest.approx(0.0)
    steps = lr_factor("multistep", n_iter=100, milestones=[10, 20], gamma=0.5)
    assert [steps(s) for s in (0, 10, 19, 20, 99)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert lr_factor("constant", n_iter=5)(4) == 1.0


def test_non_finite_guard_counts_and_stops():
    guard = NonFiniteGuard(max_in_a_row=3)
    assert guard.ok(torch.tensor(1.0))
    assert not guard.ok(torch.tensor(math.nan))
    assert not guard.ok(torch.tensor(1.0), torch.tensor(math.inf))
    assert guard.ok(torch.tensor(2.0)) and guard.total == 2 and guard.in_a_row == 0
    guard.ok(torch.tensor(math.nan))
    guard.ok(torch.tensor(math.nan))
    with pytest.raises(UserError, match="3 steps in a row.*lower train.lr"):
        guard.ok(torch.tensor(math.nan))


def test_amp_runs_in_bf16_only_where_the_device_has_it(monkeypatch):
    conv = torch.nn.Conv2d(3, 3, 3)
    image = torch.randn(1, 3, 8, 8)
    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: True)
    with training.autocast(cpu, True):
        assert conv(image).dtype == torch.bfloat16
    with training.autocast(cpu, False):
        assert conv(image).dtype == torch.float32
    # Without bf16 instructions oneDNN emulates bf16, slower than float32: the step stays float32.
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: False)
    with training.autocast(cpu, True):
        assert conv(image).dtype == torch.float32


def test_a_run_asking_for_amp_where_it_cannot_run_says_so_in_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: False)
    config = FlowConfig()
    config.train.device, config.train.amp = "cpu", True
    out = training.open_run(tmp_path / "run", config, "flow", Distributed(), None, 0, [])
    out.close()
    assert "train.amp: this CPU has no bf16 instructions" in (tmp_path / "run" / "train.log").read_text()


def test_only_the_writing_process_tidies_the_run_folder(tmp_path):
    # Another rank sweeping the folder would delete the writer's temporary files mid-write.
    run = tmp_path / "run"
    run.mkdir()
    in_flight = run / ".config.yaml.1234.tmp"
    in_flight.write_text("being written by rank 0")
    training.prepare_out_dir(run, resuming=False, writer=False)
    assert in_flight.exists()
    training.prepare_out_dir(run, resuming=False, writer=True)  # a writer starting: left over from a killed one
    assert not in_flight.exists()
    assert training.prepare_out_dir(tmp_path / "new", resuming=False, writer=False) == tmp_path / "new"
    assert not (tmp_path / "new").exists()
