"""Checkpoints: one dict, written atomically, loaded without unpickling code.

A checkpoint holds ``kind`` (what it is), ``step``, ``config`` (plain data),
model/optimizer/scheduler state dicts and the RNG states: everything a run
needs to continue exactly where it stopped. Loading uses
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code.

The format, in one place (this module)::

    flow  {"kind": FLOW_KIND,  "step", "config", "model", "optimizer", "scheduler", "guard", "rng", ...}
    sr    {"kind": SR_KIND,    "step", "config", "model", "ema", "ema_updates", "optimizer", "scheduler", ...}
    joint {"kind": JOINT_KIND, "step", "config", "guard", "rng",
           "flow": {"config", "model", "optimizer", "scheduler"},
           "sr": {"config", "model", "ema", "ema_updates", "optimizer", "scheduler"}}

``network_state(state, "flow" | "sr")`` is the part a network loader reads:
the file itself for a flow or SR checkpoint, its sub-dict for a joint one.
Joint checkpoints written before the nesting (flat ``flow_config``,
``sr_ema``, ``flow_optimizer``, ... keys) are nested on loading.

Trained weights can also be exported as safetensors (``python -m
tools.export``): tensors plus the kind and config as metadata, readable
without torch's pickle at all. ``load_checkpoint`` reads both formats, so
every command that takes a checkpoint also takes an exported ``.safetensors``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from unpaired_sr.common.config import config_from_dict
from unpaired_sr.common.errors import ConfigError, UserError
from unpaired_sr.common.files import atomic_write_bytes

FLOW_KIND = "degradation_flow"
SR_KIND = "sr"
JOINT_KIND = "joint"
KIND_NAMES = {
    FLOW_KIND: "a degradation-flow checkpoint",
    SR_KIND: "an SR checkpoint",
    JOINT_KIND: "a joint checkpoint",
}
# What every file of a kind holds (exported weights too), and what resuming a training needs on top.
REQUIRED_KEYS = {FLOW_KIND: ("config", "model"), SR_KIND: ("config", "model"), JOINT_KIND: ("config", "flow", "sr")}
NETWORK_KEYS = ("config", "model")  # what each network of a joint checkpoint holds at least
RESUME_KEYS = ("step", "rng", "guard")
# A flat joint checkpoint's keys (before the nesting) -> (network, key in its sub-dict).
_FLAT_JOINT_KEYS = {
    "flow_config": ("flow", "config"),
    "flow": ("flow", "model"),
    "flow_optimizer": ("flow", "optimizer"),
    "flow_scheduler": ("flow", "scheduler"),
    "sr_config": ("sr", "config"),
    "sr": ("sr", "model"),
    "sr_ema": ("sr", "ema"),
    "ema_updates": ("sr", "ema_updates"),
    "sr_optimizer": ("sr", "optimizer"),
    "sr_scheduler": ("sr", "scheduler"),
}
_PICKLED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _unreadable(path: Path, error: BaseException) -> UserError:
    """A one-line reason why ``torch.load(weights_only=True)`` refused or failed on ``path``."""
    text = str(error)
    found = _PICKLED_GLOBAL.search(text)
    if found:
        return UserError(
            f"{path} was refused: it contains a pickled Python object ({found.group(1)}), and unpickling it could "
            "run arbitrary code; checkpoints of this toolkit hold only tensors and plain data, so this file was not "
            "made by it or was altered"
        )
    # torch's message for damaged data is a page of advice; the reason is the line after this marker.
    reason = text.split("WeightsUnpickler error:")[-1] if "WeightsUnpickler error:" in text else text
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    return UserError(f"{path} is not a readable checkpoint ({lines[0][:200] if lines else type(error).__name__})")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialize ``state`` and write it to ``path`` atomically (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise UserError(f"cannot write checkpoint {path}: {error.strerror or error}") from error


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...], resume: bool = False) -> dict[str, Any]:
    """Load a checkpoint (``.pt`` or exported ``.safetensors``) and check it is of ``kind``.

    ``kind`` is one kind or a tuple of accepted ones. With ``resume``, the file
    must be a training checkpoint (exported weights have no optimizer state).
    """
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    wanted = " or ".join(KIND_NAMES.get(k, k) for k in kinds)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state = _load_exported(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as error:  # random bytes reach the unpickler's internals: KeyError, IndexError, ...
            raise _unreadable(path, error) from error
    if not isinstance(state, dict) or "kind" not in state:
        raise UserError(f"{path} is not a checkpoint of this toolkit (expected {wanted})")
    if state["kind"] not in kinds:
        raise UserError(f"{path} is {KIND_NAMES.get(state['kind'], state['kind'])}, expected {wanted}")
    if state["kind"] == JOINT_KIND and "flow_config" in state:
        state = _nest_flat_joint(state)
    if resume and state.get("exported"):
        raise UserError(f"{path} holds exported weights only (no optimizer state); resume from a .pt checkpoint")
    needed = REQUIRED_KEYS.get(state["kind"], ()) + (RESUME_KEYS if resume else ())
    missing = [key for key in needed if key not in state]
    if missing or not isinstance(state.get("config"), dict):
        what = f"no {', '.join(missing)}" if missing else "a config that is not a mapping"
        raise UserError(f"{path} is damaged or hand-made: {what} (a {state['kind']} checkpoint needs {needed})")
    if state["kind"] == JOINT_KIND:
        for network in ("flow", "sr"):
            part = state[network]
            if not isinstance(part, dict) or any(key not in part for key in NETWORK_KEYS):
                raise UserError(f"{path} is damaged or hand-made: its {network} part lacks {NETWORK_KEYS}")
    return state


def _nest_flat_joint(state: dict[str, Any]) -> dict[str, Any]:
    """A joint checkpoint written before the nesting, in today's layout."""
    nested: dict[str, Any] = {"flow": {}, "sr": {}}
    for key, value in state.items():
        if key in _FLAT_JOINT_KEYS:
            network, inner = _FLAT_JOINT_KEYS[key]
            nested[network][inner] = value
        else:
            nested[key] = value
    return nested


def network_state(state: dict[str, Any], network: str) -> dict[str, Any]:
    """The ``config`` and ``model`` (SR: and ``ema``) of one network ("flow" or "sr") of a loaded checkpoint."""
    own_kind = {"flow": FLOW_KIND, "sr": SR_KIND}[network]
    if state["kind"] == own_kind:
        return state
    if state["kind"] == JOINT_KIND:
        return state[network]
    raise UserError(f"{KIND_NAMES.get(state['kind'], state['kind'])} holds no {network} network")


def load_network(path: str | Path, network: str, schema: type, what: str) -> tuple[dict[str, Any], Any]:
    """One network's saved part (``network_state``) of the checkpoint at ``path``, and its config as ``schema``.

    Reads the network's own checkpoints, joint ones and exports alike.
    """
    own_kind = {"flow": FLOW_KIND, "sr": SR_KIND}[network]
    saved = network_state(load_checkpoint(path, (own_kind, JOINT_KIND)), network)
    try:
        config = config_from_dict(schema, saved["config"])
    except ConfigError as error:
        raise UserError(f"{path}: its config does not fit this version of the {what} ({error})") from error
    return saved, config


EXPORT_FORMAT = "unpaired-sr weights 1"


def export_weights(path: str | Path, kind: str, weights: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write ``weights`` as safetensors (atomically) with ``kind`` and ``config`` (JSON) as metadata."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
    metadata = {"format": EXPORT_FORMAT, "kind": kind, "config": json.dumps(config)}
    try:
        atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error


def _load_exported(path: Path) -> dict[str, Any]:
    """An exported ``.safetensors`` file as a checkpoint-like dict: kind, config, model weights."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({str(error)[:200]})") from error
    if metadata.get("format") != EXPORT_FORMAT:
        raise UserError(f"{path} is a safetensors file, but not weights exported by this toolkit (no kind/config)")
    return {"kind": metadata["kind"], "config": json.loads(metadata["config"]), "model": tensors, "exported": True}


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], source: str | Path, what: str) -> None:
    """``module.load_state_dict(weights)``, or an error that names what differs (keys, shapes).

    The file is tried first: a module may fill in what files older than one of
    its parts lack (``ImageNoise`` does), which a comparison of keys would refuse.
    """
    try:
        module.load_state_dict(weights)
        return
    except RuntimeError:
        pass
    expected = module.state_dict()
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    reshaped = [
        f"{name} is {tuple(weights[name].shape)} in the file, {tuple(tensor.shape)} in the {what}"
        for name, tensor in expected.items()
        if name in weights and weights[name].shape != tensor.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if reshaped:
        problems.append(f"{len(reshaped)} of another shape (e.g. {reshaped[0]})")
    if problems:
        raise UserError(f"{source}: the weights do not fit the {what} its config describes: {'; '.join(problems)}")
    raise UserError(f"{source}: the weights do not load into the {what} its config describes")


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
