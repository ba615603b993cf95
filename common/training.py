"""Pieces every training loop uses: device choice, LR schedule, non-finite guard, run folder."""

from __future__ import annotations

import copy
import functools
import math
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from unpaired_sr.common.checkpoint import load_checkpoint, restore_rng_state, rng_state
from unpaired_sr.common.cli import ArgumentParser, command, resume_checkpoint, run_folder_of
from unpaired_sr.common.config import TrainLoopConfig, config_to_dict, fields_help, load_config, save_config
from unpaired_sr.common.cpu_share import CpuShare, available_cores
from unpaired_sr.common.distributed import Distributed, any_across, barrier, init_distributed, mean_across
from unpaired_sr.common.errors import TrainingStopped, UserError
from unpaired_sr.common.files import sweep_temporaries
from unpaired_sr.common.image_io import write_image


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


def setup_device(device: torch.device) -> None:
    """Speed settings that do not change results beyond float noise."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: autotuned kernels pay off after a step


def start_process(train: TrainLoopConfig) -> tuple[Distributed, torch.device]:
    """This process's place in the run and its device, set up and seeded from ``train``.

    Under torchrun each process trains on its slice of the global batch
    ``world_size * train.batch_size`` (see ``common.distributed``).
    """
    global _cpu_share
    world, device = init_distributed(select_device(train.device))
    setup_device(device)
    if _cpu_share is not None:
        _cpu_share.close()
    _cpu_share = CpuShare(train.cpu_threads) if device.type == "cpu" else None
    if _cpu_share is not None:
        _cpu_share.rebalance()
    torch.manual_seed(train.seed)
    return world, device


# This process's share of the cores while it trains on the CPU (common.cpu_share); TrainingSteps
# counts the trainings again at every log point and gives the share back when the steps end.
_cpu_share: CpuShare | None = None


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast when ``enabled`` (``train.amp``) on CUDA or on a CPU with bf16 instructions; else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and amp_supported(device))


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private check: if a torch release drops it, stay in float32
        return False


def amp_supported(device: torch.device) -> bool:
    """Whether ``train.amp`` runs in bf16 on ``device`` (else the step stays float32, said once in the log)."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


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


def lr_scheduler(optimizer: torch.optim.Optimizer, train: TrainLoopConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The config's schedule (``train.schedule`` with its warmup, milestones and gamma) for ``optimizer``."""
    factor = lr_factor(train.schedule, train.n_iter, train.warmup_iter, train.milestones, train.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class NonFiniteGuard:
    """Counts steps skipped for a non-finite loss or gradient; too many in a row stop the run."""

    max_in_a_row: int
    in_a_row: int = 0
    total: int = 0

    def ok(self, *values: torch.Tensor, world: Distributed | None = None) -> bool:
        """True when every value is finite (on every rank); otherwise counts a skipped step.

        The one host sync of a training step: whether to step the optimizer has
        to be known on the host. Under DDP the ranks agree (one tiny all-reduce),
        so no rank steps while another skips.
        """
        finite = bool(torch.stack([torch.isfinite(value.detach()).all() for value in values]).all())
        if world is not None and world.enabled:
            finite = not any_across(not finite, world)
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


def keep_config_rates(scheduler: torch.optim.lr_scheduler.LambdaLR, config_rates: list[float], name: str) -> list[str]:
    """Put the config's base rates back into a scheduler (and its optimizer) loaded from a checkpoint.

    Adam's moments, the step count and the schedule's position come from the
    checkpoint; the base learning rates do not: a run that diverged at
    ``lr 10`` and is resumed with ``--train.lr 1e-4`` must train at 1e-4, not
    silently at the checkpoint's rate. Returns one line per rate that changed.
    """
    optimizer = scheduler.optimizer
    changes = [
        f"{name} (group {index}) {saved:.3g} -> {wanted:.3g}"
        for index, (saved, wanted) in enumerate(zip(scheduler.base_lrs, config_rates))
        if saved != wanted
    ]
    scheduler.base_lrs = config_rates
    for group, rate, factor in zip(optimizer.param_groups, config_rates, scheduler.lr_lambdas):
        group["initial_lr"] = rate
        group["lr"] = rate * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return changes


def state_dicts(parts: dict[str, Any]) -> dict[str, Any]:
    """``{name: part.state_dict()}`` for named stateful parts (nested dicts alike): what a checkpoint keeps of them.

    Saving and resuming go through the same ``parts`` dict, so the checkpoint's
    keys are written once, in the loop that owns the parts.
    """
    return {name: state_dicts(part) if isinstance(part, dict) else part.state_dict() for name, part in parts.items()}


def load_state_dicts(
    parts: dict[str, Any],
    state: dict[str, Any],
    rate_names: dict[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> list[str]:
    """Load every part of ``parts`` from ``state`` (``state_dicts``'s layout); returns the learning-rate changes.

    Parts named in ``optional`` (a critic switched on at resume) may be missing
    from the checkpoint and then keep their fresh state; any other missing part
    is a damaged checkpoint.

    Schedulers keep the *config's* base rates (see ``keep_config_rates``);
    ``rate_names`` names each scheduler's config field by its dotted path in
    ``parts`` (e.g. ``{"flow.scheduler": "train.flow_lr"}``) for the message.
    """
    rate_names = rate_names or {}
    schedulers: dict[str, tuple[torch.optim.lr_scheduler.LambdaLR, list[float]]] = {}

    def load(level: dict[str, Any], saved: dict[str, Any], path: str) -> None:
        for name, part in level.items():
            if name not in saved:
                if name in optional:
                    continue
                raise UserError(f"the checkpoint has no {path}{name} to resume from: it is damaged or hand-made")
            if isinstance(part, dict):
                load(part, saved[name], f"{path}{name}.")
                continue
            if isinstance(part, torch.optim.lr_scheduler.LambdaLR):
                schedulers[path + name] = (part, list(part.base_lrs))
            part.load_state_dict(saved[name])

    load(parts, state, "")
    changes = []
    for path, (scheduler, config_rates) in schedulers.items():
        changes += keep_config_rates(scheduler, config_rates, rate_names.get(path, "lr"))
    return changes


def resume_parts(
    state: dict[str, Any],
    parts: dict[str, Any],
    rate_names: dict[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> tuple[int, list[str]]:
    """Load ``parts`` (``load_state_dicts``) and the RNG state from a training checkpoint's ``state``.

    Returns the step to continue from and the learning-rate changes.
    """
    rate_changes = load_state_dicts(parts, state, rate_names, optional)
    restore_rng_state(state["rng"])
    return state["step"], rate_changes


def training_state(kind: str, step: int, config: Any, parts: dict[str, Any]) -> dict[str, Any]:
    """What a training checkpoint holds: kind, step, config, RNG state and every part's state."""
    state = {"kind": kind, "step": step, "config": config_to_dict(config), "rng": rng_state()}
    return {**state, **state_dicts(parts)}


def open_run(
    out_dir: str | Path,
    config: Any,
    title: str,
    world: Distributed,
    resume: str | Path | None,
    start_step: int,
    rate_changes: list[str],
) -> RunFolder:
    """The run folder, started: config saved, a header line, and the learning rates a resume changed."""
    out = RunFolder(prepare_out_dir(out_dir, resuming=resume is not None, writer=world.is_main), active=world.is_main)
    out.start(config, f"{title}, {'resumed at step ' + str(start_step) if resume else 'new run'}")
    if rate_changes:
        out.log(f"learning rate from the config, not the checkpoint: {'; '.join(rate_changes)}")
    train = getattr(config, "train", None)
    if train is not None and train.amp and not amp_supported(select_device(train.device)):
        out.log("train.amp: this CPU has no bf16 instructions (bf16 would be emulated, slower): steps stay float32")
    return out


def progress_bar(start_step: int, end_step: int, total: int, desc: str, world: Distributed) -> tqdm:
    """The steps this call runs, as a progress bar of the whole run (on the main process only)."""
    return tqdm(
        range(start_step, end_step),
        initial=start_step,
        total=total,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=not world.is_main,
    )


class LogWindow:
    """Sums of the logged values over the steps since the last log line, and how fast those steps went.

    The sums stay on the device (no sync per step); ``means`` averages them
    over the steps and across processes, then starts a new window.
    """

    def __init__(self, names: list[str], device: torch.device):
        self.sums = {name: torch.zeros((), device=device) for name in names}
        self.steps, self.start = 0, time.perf_counter()

    def add(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            self.sums[name] += value.detach()

    def step(self) -> None:
        self.steps += 1

    def means(self, world: Distributed) -> dict[str, float]:
        means = mean_across({name: total / max(self.steps, 1) for name, total in self.sums.items()}, world)
        means["steps_per_s"] = self.steps / max(time.perf_counter() - self.start, 1e-9)
        self.sums = {name: torch.zeros_like(total) for name, total in self.sums.items()}
        self.steps, self.start = 0, time.perf_counter()
        return means


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
    """A run's folder: ``config.yaml``, ``train.log``, ``checkpoints/``, ``tb/`` (TensorBoard), ``samples/``.

    Under torchrun only rank 0 writes (``active``); on the other ranks every
    method is a no-op, so training loops need no rank checks for logging.
    """

    root: Path
    active: bool = True
    writer: Any = field(init=False, default=None)  # a TensorBoard SummaryWriter on the active rank

    def __post_init__(self) -> None:
        if not self.active:
            return
        try:
            for sub in ("checkpoints", "samples"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._log = open(self.root / "train.log", "a", buffering=1)  # noqa: SIM115  (closed in close())
        except OSError as error:
            raise UserError(f"cannot write to run folder {self.root}: {error.strerror or error}") from error
        from torch.utils.tensorboard import SummaryWriter  # here, not at the top: slow, and only a run writes

        self.writer = SummaryWriter(log_dir=str(self.root / "tb"))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def start(self, config: Any, title: str) -> None:
        if self.active:
            save_config(config, self.root / "config.yaml")
            self.log(f"== {title} {time.strftime('%Y-%m-%d %H:%M:%S')}\n{environment_info()}")
            train = getattr(config, "train", None)
            if train is not None and 0 < train.n_iter <= train.warmup_iter:
                self.log(
                    f"warning: train.warmup_iter {train.warmup_iter} >= train.n_iter {train.n_iter}: "
                    f"the learning rate never reaches train.lr"
                )

    def log(self, line: str) -> None:
        """A line for the terminal (above the progress bar) and for train.log."""
        if self.active:
            tqdm.write(line)
            self._log.write(line + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, name: str, image: Any, step: int) -> None:
        """An HWC uint8 figure: ``samples/step_NNNNNNN.png`` and TensorBoard."""
        if self.writer is not None:
            write_image(self.root / "samples" / f"step_{step:07d}.png", image)
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._log.close()


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (schedulers, ``kill``) ask the training loop to stop cleanly.

    The loop finishes the step it is in, writes a checkpoint and raises
    ``TrainingStopped``; a second Ctrl-C stops at once (the last checkpoint
    written stays). Under torchrun the ranks agree on stopping at logging
    intervals, so none waits forever in a collective another rank left.
    """

    def __init__(self, world: Distributed | None = None):
        self.world = world or Distributed()
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)

    def stop_now(self, log_point: bool) -> bool:
        """Whether the loop should checkpoint and stop after this step (collective on log points under DDP)."""
        if not self.world.enabled:
            return self.received is not None
        return log_point and any_across(self.received is not None, self.world)

    def next_batch(
        self,
        batches: Iterator[Any],
        done: int,
        checkpoint: Callable[[int], None],
        out: RunFolder,
        skipping: int = 0,
    ) -> Any:
        """``next(batches)``; if the loader fails after a stop was asked for, checkpoint ``done`` and stop.

        A signal sent to the whole process group reaches the DataLoader workers
        too. They ignore it (``ignore_stop_signals``), but a worker that died
        anyway must not cost the steps since the last checkpoint.
        """
        try:
            return next(batches)
        except RuntimeError as error:
            if self.received is None or self.world.enabled:  # under DDP the other ranks could not follow
                raise
            out.log(f"data loader failed after {self.received.name}: {error}")
            self.end_of_step(done, True, False, checkpoint, out, skipping)
            raise  # not reached: end_of_step raises TrainingStopped

    def end_of_step(
        self,
        done: int,
        log_point: bool,
        save_due: bool,
        checkpoint: Callable[[int], None],
        out: RunFolder,
        skipping: int = 0,
    ) -> None:
        """Call ``checkpoint(done)`` when ``save_due`` or a stop was asked for; then stop with ``TrainingStopped``.

        ``skipping``: the non-finite steps in a row just before this one. While a
        streak is under way no checkpoint is written: the weights may already
        be the ones that diverged, and the last checkpoint written is the last
        one worth resuming from.
        """
        stopping = self.stop_now(log_point)
        if (stopping or save_due) and skipping:
            out.log(f"[{done:>7}] no checkpoint: the last {skipping} steps were non-finite; the last one written stays")
        elif stopping or save_due:
            checkpoint(done)
        if stopping:
            signum = self.received or signal.SIGTERM  # another rank received it
            out.log(f"{signum.name} received: stopped after step {done}")
            raise TrainingStopped(signum.name, 128 + int(signum), done, out.checkpoints / "last.pt")


class TrainingSteps:
    """The steps one training call runs, with everything around them that is not training::

        with TrainingSteps(loader, start_step, end_step, train, "flow", world, out, checkpoint, guard) as steps:
            for step, batch in steps:
                ...  # forward, losses, backward, optimizer step
                if steps.log_point:
                    ...  # log

    It draws the batches, shows the progress bar, and after each step's body
    calls ``checkpoint(done)`` when one is due (every ``train.save_every``
    steps and at ``end_step``) or a stop signal came (``StopSignals``: then
    the run ends there). On leaving, it closes the progress bar and the run
    folder and waits for every rank: the next stage may read the checkpoint
    rank 0 just wrote.
    """

    def __init__(
        self,
        loader: Iterable[Any],
        start_step: int,
        end_step: int,
        train: TrainLoopConfig,
        desc: str,
        world: Distributed,
        out: RunFolder,
        checkpoint: Callable[[int], None],
        guard: NonFiniteGuard,
    ):
        self.loader, self.end_step, self.train, self.world = loader, end_step, train, world
        self.out, self.checkpoint, self.guard = out, checkpoint, guard
        self.progress = progress_bar(start_step, end_step, train.n_iter, desc, world)
        self.stop = StopSignals(world)
        self.done, self.log_point = start_step, False

    def __enter__(self) -> TrainingSteps:
        self.stop.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop.__exit__(*exc_info)
            self.progress.close()
            self.out.close()
            if _cpu_share is not None:
                _cpu_share.close()  # the cores go back to the trainings still running
        finally:
            barrier(self.world)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        batches = iter(self.loader)
        for step in self.progress:
            batch = self.stop.next_batch(batches, step, self.checkpoint, self.out, skipping=self.guard.in_a_row)
            self.done = step + 1
            self.log_point = self.every(self.train.log_every)
            if self.log_point and _cpu_share is not None:
                before = torch.get_num_threads()
                if _cpu_share.rebalance() != before:
                    self.out.log(
                        f"[{self.done:>7}] CPU threads {before} -> {torch.get_num_threads()} (trainings on these "
                        f"{available_cores()} cores: {_cpu_share.trainings()}; train.cpu_threads sets a fixed count)"
                    )
            yield step, batch
            save_due = self.every(self.train.save_every)
            self.stop.end_of_step(self.done, self.log_point, save_due, self.checkpoint, self.out, self.guard.in_a_row)

    def every(self, interval: int) -> bool:
        """Whether the step just run is one of every ``interval`` steps, or this call's last."""
        return self.done % interval == 0 or self.done == self.end_step

    def set_postfix(self, **values: float) -> None:
        """Show ``values`` after the progress bar."""
        self.progress.set_postfix({name: f"{value:.4f}" for name, value in values.items()})


def end_step(start_step: int, n_iter: int, max_steps: int | None) -> int:
    """Where this call stops: ``n_iter``, or ``max_steps`` after ``start_step`` if that comes first."""
    return n_iter if max_steps is None else min(n_iter, start_step + max_steps)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: SIGINT and SIGTERM are the main process's to handle.

    Schedulers (SLURM, Kubernetes) and Ctrl-C signal the whole process group;
    a worker that died of it would take the main process's clean stop (and
    its checkpoint) down with it. Workers still exit when the main process does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def prepare_out_dir(out_dir: str | Path, resuming: bool, writer: bool = True) -> Path:
    """Refuse to start a fresh run in a folder that already holds one; the writer creates it and tidies it.

    Every process checks (so that all stop together), but only the one that
    writes the run (``writer``, rank 0) touches the folder: another rank
    sweeping it would delete the writer's temporary files mid-write (a
    2-process test lost ``config.yaml`` so).
    """
    out_dir = Path(out_dir)
    if not resuming and (out_dir / "checkpoints" / "last.pt").exists():
        raise UserError(
            f"{out_dir} already holds a run; pass --resume {out_dir} to continue it, or choose another --output"
        )
    if not writer:
        return out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run folder {out_dir}: {error.strerror or error}") from error
    # A kill during a checkpoint write leaves a full-size temporary behind; nothing else would remove it.
    for folder in (out_dir, out_dir / "checkpoints"):
        sweep_temporaries(folder)
    return out_dir


def training_main(
    argv: list[str] | None, *, prog: str, doc: str, schema: type, kind: str, train: Callable[..., Any]
) -> None:
    """The command line every training entry point shares: config, overrides, --output, --resume, --device."""
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog, doc, epilog=fields_help(schema, argv))
    parser.add_argument("--config", help="YAML config (default: the checkpoint's own when resuming)")
    parser.add_output_option("run folder (default with --resume: the run's own)", required=False)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run: its folder, or one of its checkpoints")
    parser.add_argument("--device", help="auto, cpu or cuda (same as --train.device)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps of this call (smoke runs)")
    args, overrides = parser.parse_known_args(argv)
    if args.device:
        overrides += ["--train.device", args.device]
    if args.config is None and args.resume is None:
        raise UserError("give --config (or --resume RUN_DIR to reuse its config)")
    resume = resume_checkpoint(args.resume) if args.resume else None
    if args.output is None and resume is None:
        raise UserError("give --output RUN_DIR for the new run")
    output = Path(args.output) if args.output else run_folder_of(resume)
    saved = load_checkpoint(resume, kind) if resume else None
    config = load_config(schema, args.config if args.config else saved["config"], overrides)
    if saved is not None and saved.get("step", 0) >= config.train.n_iter:
        print(
            f"nothing to do: {resume} is at step {saved['step']} and train.n_iter is {config.train.n_iter}; "
            f"raise it to train further (e.g. --train.n_iter {2 * config.train.n_iter})"
        )
        return
    try:
        train(config, output, resume, args.max_steps)
    except TrainingStopped as stopped:  # a hint that works as printed: the run folder holds config and steps
        raise stopped.resumed_by(f"{prog} --resume {output}") from None


def training_command(
    *, prog: str, doc: str, schema: type, kind: str, train: Callable[..., Any]
) -> Callable[[list[str] | None], None]:
    """A training program's ``main``: ``training_main`` with its settings, as a command (``common.cli.command``)."""
    return command(functools.partial(training_main, prog=prog, doc=doc, schema=schema, kind=kind, train=train))
