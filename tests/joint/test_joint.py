"""The joint phase and the whole pipeline, on tiny models and real-photo crops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_PIPELINE, real_photo, run_stop_hint
from unpaired_sr.common.checkpoint import FLOW_KIND, load_checkpoint, save_checkpoint
from unpaired_sr.common.config import load_config
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import image_to_tensor, write_image
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.joint.config import PipelineConfig
from unpaired_sr.joint.train import train_joint
from unpaired_sr.sr.checkpoint import load_sr

ROOT = Path(__file__).resolve().parents[2]


def pipeline_config(data_dirs, *extra: str) -> PipelineConfig:
    words = ["--data.clean_dir", data_dirs["clean"], "--data.real_dir", data_dirs["real"], *TINY_PIPELINE, *extra]
    return load_config(PipelineConfig, "configs/joint.yaml", words + ["--train.device", "cpu"])


@pytest.fixture(scope="module")
def stage_checkpoints(tmp_path_factory, data_dirs) -> dict[str, Path]:
    from unpaired_sr.train_joint import run_pipeline

    out = tmp_path_factory.mktemp("stages")
    run_pipeline(
        pipeline_config(data_dirs, "--flow_train.device", "cpu", "--sr_train.device", "cpu"), out, stages=("flow", "sr")
    )
    return {"flow": out / "flow" / "checkpoints" / "last.pt", "sr": out / "sr" / "checkpoints" / "last.pt"}


@pytest.mark.parametrize("cycle_sr_weight", [0.0, 1.0])
def test_sr_loss_reaches_the_flow_only_with_a_cycle_weight(tmp_path, data_dirs, stage_checkpoints, cycle_sr_weight):
    config = pipeline_config(
        data_dirs,
        "--train.nll_weight",
        "0",
        "--train.content_penalty",
        "0",
        "--train.cycle_sr_weight",
        str(cycle_sr_weight),
        "--train.n_iter",
        "1",
    )
    train_joint(config, tmp_path / "joint", stage_checkpoints["flow"], stage_checkpoints["sr"])
    before, _ = load_flow(stage_checkpoints["flow"])
    after, _ = load_flow(tmp_path / "joint" / "checkpoints" / "last.pt")
    changed = [
        name for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()) if not torch.equal(a, b)
    ]
    if cycle_sr_weight == 0:
        assert changed == []  # with the likelihood switched off, nothing else may move the flow
    else:
        assert any("levels" in name for name in changed) and any("shift" in name for name in changed)
    sr_before, _ = load_sr(stage_checkpoints["sr"])
    state = load_checkpoint(tmp_path / "joint" / "checkpoints" / "last.pt", "joint")
    assert any(not torch.equal(a, state["sr"]["model"][k]) for k, a in sr_before.state_dict().items())


def test_joint_resume_continues_exactly(tmp_path, data_dirs, stage_checkpoints):
    config = pipeline_config(data_dirs, "--train.cycle_sr_weight", "1.0", "--train.save_every", "1")
    straight = train_joint(config, tmp_path / "a", stage_checkpoints["flow"], stage_checkpoints["sr"])
    train_joint(config, tmp_path / "b", stage_checkpoints["flow"], stage_checkpoints["sr"], max_steps=1)
    resumed = train_joint(config, tmp_path / "b", resume=tmp_path / "b" / "checkpoints" / "step_0000001.pt")
    assert resumed["l1"] == straight["l1"] and resumed["nll_real"] == straight["nll_real"]


@pytest.fixture(scope="module")
def validation_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two HR photos and their 'real' LR: bicubic x4 plus Gaussian noise of std 8/255."""
    root = tmp_path_factory.mktemp("joint_val")
    (root / "hr").mkdir()
    (root / "lr").mkdir()
    rng = np.random.default_rng(1)
    for name in ("astronaut", "coffee"):
        hr = real_photo(name, 64)
        clean = clean_lr_from_hr(image_to_tensor(hr)[None], 4)[0].permute(1, 2, 0).numpy()
        write_image(root / "hr" / f"{name}.png", hr)
        write_image(root / "lr" / f"{name}.png", np.clip(clean + rng.normal(0, 8 / 255, clean.shape), 0, 1))
    return {"lr": root / "lr", "hr": root / "hr"}


def test_the_discriminator_resumes_exactly_and_validation_reports_the_flows_degradations(
    tmp_path, data_dirs, stage_checkpoints, validation_dirs
):
    config = pipeline_config(
        data_dirs,
        *("--train.cycle_sr_weight 1.0 --train.adv_weight 0.5 --train.save_every 1 --train.val_every 2").split(),
        *("--data.val_lr_dir", str(validation_dirs["lr"]), "--data.val_hr_dir", str(validation_dirs["hr"])),
    )
    straight = train_joint(config, tmp_path / "a", stage_checkpoints["flow"], stage_checkpoints["sr"])
    train_joint(config, tmp_path / "b", stage_checkpoints["flow"], stage_checkpoints["sr"], max_steps=1)
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_0000001.pt", "joint")
    assert set(state["discriminator"]) >= {"model", "optimizer"}
    resumed = train_joint(config, tmp_path / "b", resume=tmp_path / "b" / "checkpoints" / "step_0000001.pt")
    for key in ("l1", "adv_flow", "adv_disc", "disc_accuracy", "val_frechet_8x8"):
        assert resumed[key] == straight[key], key
    assert 0 <= straight["disc_accuracy"] <= 1
    # The validation LR carries noise of std 8/255 (less where it clips): measured on its own residual.
    assert 6 / 255 < straight["val_real_residual_std"] < 8.5 / 255
    assert straight["val_frechet_8x8"] > 0 and straight["val_synth_residual_std"] > 0
    log = (tmp_path / "a" / "train.log").read_text()
    assert "disc_acc=" in log and "Frechet 8x8" in log


def test_feeding_the_sr_loss_to_a_flow_without_image_noise_says_what_to_watch(tmp_path, data_dirs, stage_checkpoints):
    state = load_checkpoint(stage_checkpoints["flow"], FLOW_KIND)
    assert state["model"]["image_noise.gains"].abs().sum() > 0  # the stage-1 flow estimated its noise
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("image_noise.")}
    save_checkpoint(tmp_path / "latent_noise_flow.pt", state)  # as a flow from before the image noise
    for weight, run in (("0", "control"), ("1.0", "fed_back")):
        config = pipeline_config(data_dirs, "--train.cycle_sr_weight", weight, "--train.n_iter", "1")
        train_joint(config, tmp_path / run, tmp_path / "latent_noise_flow.pt", stage_checkpoints["sr"])
    assert "no image-noise estimate" not in (tmp_path / "control" / "train.log").read_text()
    assert "watch residual_std" in (tmp_path / "fed_back" / "train.log").read_text()


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train_joint.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def flat_joint_layout(state: dict) -> dict:
    """A joint checkpoint as versions before the nesting wrote it (flat flow_*/sr_* keys)."""
    flow, sr = state["flow"], state["sr"]
    flat = {key: value for key, value in state.items() if key not in ("flow", "sr")}
    flat.update(flow_config=flow["config"], flow=flow["model"], flow_optimizer=flow["optimizer"])
    flat.update(flow_scheduler=flow["scheduler"], sr_config=sr["config"], sr=sr["model"], sr_ema=sr["ema"])
    flat.update(ema_updates=sr["ema_updates"], sr_optimizer=sr["optimizer"], sr_scheduler=sr["scheduler"])
    return flat


def test_joint_checkpoints_of_the_flat_layout_still_load_and_resume(tmp_path, data_dirs, stage_checkpoints):
    config = pipeline_config(data_dirs)
    train_joint(config, tmp_path / "a", stage_checkpoints["flow"], stage_checkpoints["sr"], max_steps=2)
    nested_path = tmp_path / "a" / "checkpoints" / "last.pt"
    nested = load_checkpoint(nested_path, "joint")
    assert set(nested["flow"]) >= {"config", "model"} and set(nested["sr"]) >= {"config", "model", "ema"}
    flat_path = tmp_path / "flat.pt"
    save_checkpoint(flat_path, flat_joint_layout(nested))
    for loader in (load_flow, load_sr):
        from_flat, from_nested = loader(flat_path)[0], loader(nested_path)[0]
        for name, tensor in from_nested.state_dict().items():
            assert torch.equal(tensor, from_flat.state_dict()[name]), name
    straight = train_joint(config, tmp_path / "b", stage_checkpoints["flow"], stage_checkpoints["sr"], max_steps=3)
    resumed = train_joint(config, tmp_path / "c", resume=flat_path, max_steps=1)
    assert resumed["l1"] == pytest.approx(straight["l1"], rel=1e-5)


@pytest.mark.slow
def test_pipeline_command_end_to_end_with_resume(tmp_path, data_dirs):
    base = [
        "--data.clean_dir",
        data_dirs["clean"],
        "--data.real_dir",
        data_dirs["real"],
        *TINY_PIPELINE,
        "--device",
        "cpu",
    ]
    out = tmp_path / "run"
    # A run that stops half-way through the flow stage, as a killed run would.
    first = run_command(
        "--config", "configs/joint.yaml", *base, "--output", str(out), "--stages", "flow", "--max-steps", "2"
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert load_checkpoint(out / "flow" / "checkpoints" / "last.pt", "degradation_flow")["step"] == 2
    again = run_command("--config", "configs/joint.yaml", *base, "--output", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_command("--resume", str(out), "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"flow", "sr", "joint"}
    assert load_checkpoint(out / "flow" / "checkpoints" / "last.pt", "degradation_flow")["step"] == 4
    assert load_checkpoint(out / "joint" / "checkpoints" / "last.pt", "joint")["step"] == 3
    assert (out / "config.yaml").exists() and (out / "joint" / "samples").exists()
    # A joint checkpoint works wherever a flow or an SR checkpoint does.
    load_flow(out / "joint" / "checkpoints" / "last.pt")
    load_sr(out / "joint" / "checkpoints" / "last.pt")
    finished = run_command("--resume", str(out), "--device", "cpu")
    assert finished.returncode == 0 and finished.stdout.count("finished earlier") == 3
    bad = run_command("--config", "configs/joint.yaml", *base, "--output", str(tmp_path / "x"), "--stages", "sr")
    assert bad.returncode == 2 and "needs a flow" in bad.stderr


@pytest.mark.slow
def test_a_wrong_data_folder_leaves_no_run_behind(tmp_path, data_dirs):
    base = ["--data.real_dir", data_dirs["real"], *TINY_PIPELINE, "--device", "cpu", "--output", str(tmp_path / "run")]
    typo = run_command("--config", "configs/joint.yaml", "--data.clean_dir", str(tmp_path / "hr_typo"), *base)
    assert (
        typo.returncode == 2 and "clean HR folder (--data.clean_dir)" in typo.stderr and "does not exist" in typo.stderr
    )
    assert not (tmp_path / "run").exists()  # so the corrected command starts afresh
    (tmp_path / "a_file").write_text("x")
    under_a_file = run_command(
        "--config",
        "configs/joint.yaml",
        "--data.clean_dir",
        data_dirs["clean"],
        *base[:-1],
        str(tmp_path / "a_file" / "run"),
    )
    assert under_a_file.returncode == 2 and "Traceback" not in under_a_file.stderr
    assert "cannot create run folder" in under_a_file.stderr


@pytest.mark.slow
def test_the_pipeline_stop_hint_is_a_command_that_resumes_it(tmp_path, data_dirs):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "train_joint.py",
        "--config",
        "configs/joint.yaml",
        "--data.clean_dir",
        data_dirs["clean"],
        "--data.real_dir",
        data_dirs["real"],
        *TINY_PIPELINE,
        "--flow_train.n_iter",
        "100000",
        "--flow_train.log_every",
        "1",
        "--device",
        "cpu",
        "--output",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "flow" / "train.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("nll_clean=") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "the flow stage did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    resumed = run_stop_hint(stderr, f"python train_joint.py --resume {out}", "--max-steps", "1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step" in log.read_text()


def test_a_flow_that_samples_without_its_latent_shift_says_the_sr_loss_cannot_move_it(
    tmp_path, data_dirs, stage_checkpoints
):
    state = load_checkpoint(stage_checkpoints["flow"], FLOW_KIND)
    state["config"]["model"]["sample_latent_shift"] = False
    save_checkpoint(tmp_path / "plain_flow.pt", state)
    config = pipeline_config(data_dirs, "--train.cycle_sr_weight", "1.0", "--train.n_iter", "1")
    train_joint(config, tmp_path / "run", tmp_path / "plain_flow.pt", stage_checkpoints["sr"])
    assert "cannot move; the joint phase trains the SR network" in (tmp_path / "run" / "train.log").read_text()
    # The run keeps the flow's own settings, whatever the pipeline config's flow section says.
    flow, _ = load_flow(tmp_path / "run" / "checkpoints" / "last.pt")
    assert flow.sample_latent_shift is False


def test_checkpoints_of_another_scale_are_refused(tmp_path, data_dirs, stage_checkpoints):
    config = pipeline_config(data_dirs, "--data.scale", "2", "--train.n_iter", "1")
    with pytest.raises(UserError, match="the flow .* was trained at x4; the joint phase is asked for x2"):
        train_joint(config, tmp_path / "run", stage_checkpoints["flow"], stage_checkpoints["sr"])
    assert not (tmp_path / "run" / "checkpoints").exists()
