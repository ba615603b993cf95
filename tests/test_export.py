"""Export through the real command: safetensors is covered in tests/common/test_reliability.py; ONNX here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from unpaired_sr.common.checkpoint import SR_KIND, save_checkpoint
from unpaired_sr.common.config import config_to_dict
from unpaired_sr.sr.checkpoint import build_sr, load_sr
from unpaired_sr.sr.config import SRConfig

ROOT = Path(__file__).resolve().parents[1]


def test_onnx_export_has_dynamic_size_and_matches_pytorch(tmp_path):
    config = SRConfig()
    config.model.num_features, config.model.num_layers = 8, 4
    model = build_sr(config.model, config.data.scale)
    with torch.no_grad():  # not bicubic: the network part must survive the export too
        model.body[-1].weight.normal_(std=0.05, generator=torch.Generator().manual_seed(0))
    ckpt = tmp_path / "sr.pt"
    save_checkpoint(ckpt, {"kind": SR_KIND, "step": 0, "config": config_to_dict(config), "model": model.state_dict()})
    command = [sys.executable, "-m", "tools.export", "--ckpt", str(ckpt), "--output", str(tmp_path / "sr.onnx")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    difference = float(re.search(r"max abs difference (\S+)", result.stdout).group(1))
    assert difference < 1e-4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sr.onnx", "sr.pt"]  # no partial file left
    # A size the export never saw, and a batch of three.
    session = onnxruntime.InferenceSession(str(tmp_path / "sr.onnx"), providers=["CPUExecutionProvider"])
    lr = torch.rand(3, 3, 19, 41, generator=torch.Generator().manual_seed(1))
    (sr,) = session.run(None, {"lr": lr.numpy()})
    loaded, _ = load_sr(ckpt)
    with torch.no_grad():
        expected = loaded(lr).numpy()
    assert sr.shape == (3, 3, 76, 164) and np.abs(sr - expected).max() < 1e-4
    # The flow is not exported to ONNX: one clear line.
    wrong = subprocess.run(
        [*command[:-1], str(tmp_path / "x.onnx"), "--part", "flow"], cwd=ROOT, capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "ONNX export is for the SR network" in wrong.stderr
