"""Sharing the CPU between trainings: each takes its part of the cores, not all of them.

PyTorch runs each CPU operator on all cores by default. Two trainings on the
same cores then oversubscribe them, and every parallel region waits for a
thread the kernel has descheduled. Measured on this project's 2-core machine
(light flow, batch 16 of 32x32 crops, ``benchmarks/bench.py --cases shared_cpu``):
alone, 2 threads run 4.0 steps/s and 1 thread 2.5; two trainings at once with
2 threads each run 0.6 steps/s each, with 1 thread each 2.4 each.

So a training on the CPU registers itself (a file named by its process id in
``~/.cache/unpaired-sr/cpu_jobs``) and uses ``cores // trainings alive``
threads, at least one, counted again at every log point: a training that
starts later makes the earlier ones step down within one log interval, and
one that ends gives its cores back. ``train.cpu_threads`` (> 0) fixes the
count instead, and ``OMP_NUM_THREADS`` (set by hand, or by torchrun) stays an
upper bound. Only trainings of this toolkit are counted; other programs on
the machine are not.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from unpaired_sr.common.registry import cache_dir


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; all of them where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class CpuShare:
    """This process's share of the cores while it trains on the CPU (module docstring)."""

    def __init__(self, fixed_threads: int = 0, folder: Path | None = None):
        self.fixed_threads = fixed_threads
        self.folder = folder or cache_dir() / "cpu_jobs"
        self.entry: Path | None = None
        if fixed_threads <= 0:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.entry = self.folder / str(os.getpid())
                self.entry.touch()
            except OSError:  # a read-only cache: train alone-sized, as before
                self.entry = None

    def trainings(self) -> int:
        """Trainings registered and alive, this one included; entries of ended processes are removed."""
        if self.entry is None:
            return 1
        alive = 0
        for entry in self.folder.iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)):
                alive += 1
            else:
                entry.unlink(missing_ok=True)
        return max(alive, 1)

    def threads(self) -> int:
        if self.fixed_threads > 0:
            return self.fixed_threads
        share = max(1, available_cores() // self.trainings())
        # OMP_NUM_THREADS, where set (by the user, or by torchrun for several processes), stays an upper bound.
        limit = os.environ.get("OMP_NUM_THREADS", "")
        return min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share

    def rebalance(self) -> int:
        """Set torch's intra-op threads to this process's share now; returns it."""
        threads = self.threads()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads

    def close(self) -> None:
        if self.entry is not None:
            self.entry.unlink(missing_ok=True)
            self.entry = None
