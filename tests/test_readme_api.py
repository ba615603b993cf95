"""The README's Python API block runs as printed, on tiny checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import real_photo
from unpaired_sr.common.checkpoint import FLOW_KIND, SR_KIND, save_checkpoint
from unpaired_sr.common.config import config_to_dict
from unpaired_sr.common.image_io import write_image
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.config import FlowConfig, FlowModelConfig
from unpaired_sr.degradation.noise import estimate_noise
from unpaired_sr.sr.checkpoint import build_sr
from unpaired_sr.sr.config import SRConfig, SRModelConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_python_api_block_of_the_readme_runs(tmp_path, monkeypatch, trained_flow_and_sr):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    flow_ckpt, sr_ckpt = trained_flow_and_sr
    write_image(tmp_path / "photo.png", real_photo("coffee", 64))
    block = block.replace("runs/flow/checkpoints/last.pt", str(flow_ckpt))
    block = block.replace("runs/sr/checkpoints/last.pt", str(sr_ckpt))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["lq"].shape == (16, 16, 3)
    assert namespace["sr"].shape == (64, 64, 3) and np.isfinite(namespace["sr"]).all()
    assert not np.array_equal(namespace["lq"], namespace["clean_lr"].permute(1, 2, 0).numpy())


@pytest.fixture
def trained_flow_and_sr(tmp_path):
    """Small untrained networks saved as checkpoints, the flow with a noise estimate: the API is what is tested."""
    flow_config = FlowConfig(model=FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1))
    flow = build_flow(flow_config.model)
    clean = [real_photo(name, 128)[::2, ::2] for name in ("astronaut", "chelsea")]
    noisy = [np.clip(image + np.random.default_rng(0).normal(0, 0.03, image.shape), 0, 1) for image in clean]
    flow.image_noise.load_estimate(estimate_noise(clean, noisy))
    sr_config = SRConfig(model=SRModelConfig(num_features=8, num_layers=4))
    sr = build_sr(sr_config.model, sr_config.data.scale)
    flow_ckpt, sr_ckpt = tmp_path / "flow.pt", tmp_path / "sr.pt"
    save_checkpoint(flow_ckpt, {"kind": FLOW_KIND, "config": config_to_dict(flow_config), "model": flow.state_dict()})
    save_checkpoint(sr_ckpt, {"kind": SR_KIND, "config": config_to_dict(sr_config), "model": sr.state_dict()})
    return flow_ckpt, sr_ckpt
