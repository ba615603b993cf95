"""Pieces every training loop uses: device choice, LR schedule, non-finite guard, run folder."""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.checkpoint import load_checkpoint
from common.config import describe_fields, load_config, save_config
from common.errors import UserError


@dataclass
class TrainLoopConfig:
    """The ``train`` fields every training loop reads; each stage extends it."""

    n_iter: int = 20000
    batch_size: int = 16
    lr: float = 2e-4
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_iter: int = 100
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    grad_clip: float = 10.0
    save_every: int = 1000
    log_every: int = 100
    keep_last: int = 3
    max_bad_steps: int = 20
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast where it is numerically safe (CUDA only)


def select_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but this machine has no CUDA GPU (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r} (use auto, cpu or cuda)") from error


def lr_factor(
    schedule: str,
    n_iter: int,
    warmup_iter: int = 0,
    milestones: list[int] | None = None,
    gamma: float = 0.5,
) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warmup, then cosine, multistep or constant."""

    def factor(step: int) -> float:
        if step < warmup_iter:
            return (step + 1) / warmup_iter
        if schedule == "cosine":
            progress = min(1.0, (step - warmup_iter) / max(1, n_iter - warmup_iter))
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "multistep":
            return gamma ** sum(step >= milestone for milestone in (milestones or []))
        return 1.0

    return factor


@dataclass
class NonFiniteGuard:
    """Counts steps skipped for a non-finite loss or gradient; too many in a row stop the run."""

    max_in_a_row: int
    in_a_row: int = 0
    total: int = 0

    def ok(self, *values: torch.Tensor) -> bool:
        """True when every value is finite; otherwise counts a skipped step. (A host sync.)"""
        finite = all(bool(torch.isfinite(value).all()) for value in values)
        if finite:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.max_in_a_row:
            raise UserError(
                f"{self.in_a_row} steps in a row had a non-finite loss or gradient; stopping. The last good "
                "checkpoint is kept; try a lower train.lr or train.grad_clip, or resume from an earlier step"
            )
        return False

    def state_dict(self) -> dict[str, int]:
        return {"in_a_row": self.in_a_row, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.in_a_row, self.total = state["in_a_row"], state["total"]


class EMA:
    """Exponential moving average of a model's weights, with warmup.

    The decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))``, so short runs
    are not dominated by their first steps. Buffers (e.g. batch-norm statistics)
    are copied, not averaged. The count lives on the host: no device sync per step.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.module.parameters(), model.parameters()):
            average.lerp_(current.detach(), weight)
        for average, current in zip(self.module.buffers(), model.buffers()):
            average.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


def environment_info() -> str:
    lines = [f"python {sys.version.split()[0]} on {platform.platform()}", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        lines.append(f"cuda {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
    else:
        lines.append(f"cpu, {torch.get_num_threads()} threads")
    return "\n".join(lines)


@dataclass
class RunFolder:
    """A run's folder: ``config.yaml``, ``train.log``, ``checkpoints/``, ``tb/`` (TensorBoard), ``samples/``."""

    root: Path
    writer: SummaryWriter = field(init=False)

    def __post_init__(self) -> None:
        for sub in ("checkpoints", "samples"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.root / "tb"))
        self._log = open(self.root / "train.log", "a", buffering=1)  # noqa: SIM115  (closed in close())

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def start(self, config: Any, title: str) -> None:
        save_config(config, self.root / "config.yaml")
        self.log(f"== {title} {time.strftime('%Y-%m-%d %H:%M:%S')}\n{environment_info()}")

    def log(self, line: str) -> None:
        """A line for the terminal (above the progress bar) and for train.log."""
        tqdm.write(line)
        self._log.write(line + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()
        self._log.close()


def prepare_out_dir(out_dir: str | Path, resuming: bool) -> Path:
    """Refuse to start a fresh run in a folder that already holds one."""
    out_dir = Path(out_dir)
    if not resuming and (out_dir / "checkpoints" / "last.pt").exists():
        raise UserError(
            f"{out_dir} already holds a run; pass --resume {out_dir / 'checkpoints' / 'last.pt'} "
            "to continue it, or choose another --out"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run folder {out_dir}: {error.strerror or error}") from error
    return out_dir


def training_main(argv: list[str] | None, *, prog: str, doc: str, schema: type, kind: str,
                  train: Callable[..., Any]) -> None:  # fmt: skip
    """The command line every training entry point shares: config, overrides, --out, --resume, --device."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc.split("\n\n")[0],
        epilog="config fields:\n  " + "\n  ".join(describe_fields(schema)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", help="YAML config (default: the checkpoint's own when resuming)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", help="checkpoint to continue from (RUN_DIR/checkpoints/last.pt)")
    parser.add_argument("--device", help="auto, cpu or cuda (same as --train.device)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps of this call (smoke runs)")
    args, overrides = parser.parse_known_args(argv)
    if args.device:
        overrides += ["--train.device", args.device]
    if args.config is None and args.resume is None:
        raise UserError("give --config (or --resume a checkpoint to reuse its config)")
    source = args.config if args.config else load_checkpoint(args.resume, kind)["config"]
    train(load_config(schema, source, overrides), args.out, args.resume, args.max_steps)
