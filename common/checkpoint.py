"""Checkpoints: one dict, written atomically, loaded without unpickling code.

A checkpoint holds ``kind`` (what it is), ``step``, ``config`` (plain data),
model/optimizer/scheduler state dicts and the RNG states: everything a run
needs to continue exactly where it stopped. Loading uses
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from common.files import atomic_write_bytes

KIND_NAMES = {
    "degradation_flow": "a degradation-flow checkpoint",
    "sr": "an SR checkpoint",
    "joint": "a joint checkpoint",
}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialize ``state`` and write it to ``path`` atomically (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise UserError(f"cannot write checkpoint {path}: {error.strerror or error}") from error


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...]) -> dict[str, Any]:
    """Load a checkpoint and check it is of ``kind`` (one kind or several accepted ones)."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    wanted = " or ".join(KIND_NAMES.get(k, k) for k in kinds)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable checkpoint ({first_line[:200]})") from error
    if not isinstance(state, dict) or "kind" not in state:
        raise UserError(f"{path} is not a checkpoint of this toolkit (expected {wanted})")
    if state["kind"] not in kinds:
        raise UserError(f"{path} is {KIND_NAMES.get(state['kind'], state['kind'])}, expected {wanted}")
    return state


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and, where present, CUDA). Data sampling is seeded per step instead."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def save_training_checkpoint(checkpoint_dir: Path, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``last.pt`` and ``step_NNNNNNN.pt``; keep only the newest ``keep_last`` step files."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    step_path = checkpoint_dir / f"step_{state['step']:07d}.pt"
    save_checkpoint(step_path, state)
    save_checkpoint(checkpoint_dir / "last.pt", state)
    step_files = sorted(p for p in checkpoint_dir.iterdir() if _STEP_FILE.search(p.name))
    for old in step_files[: max(0, len(step_files) - keep_last)]:
        old.unlink(missing_ok=True)
    return step_path
