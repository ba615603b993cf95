"""Running a function over many files on all cores, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(requested: int, num_items: int) -> int:
    """``requested`` processes, or all cores when 0, never more than there are items."""
    available = os.cpu_count() or 1
    return max(1, min(requested or available, num_items))


def _one_thread_per_worker() -> None:
    # Runs before any task is unpickled, so before the worker imports torch or cv2.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"


def map_with_progress(
    function: Callable[[Item], Result], items: Sequence[Item], num_workers: int = 0, desc: str = ""
) -> list[Result]:
    """``[function(item) for item in items]`` on ``num_workers`` processes (0: all cores).

    Results keep the order of ``items``. An exception in a worker (a bad file,
    say) stops the whole map and is raised here, in the caller.
    """
    processes = worker_count(num_workers, len(items))
    # The bar is closed (and its line cleared) before an error propagates, so the
    # error message starts on a line of its own.
    if processes == 1:
        with tqdm(items, desc=desc, unit="img", leave=False) as bar:
            return [function(item) for item in bar]
    # Spawned, not forked: a fork of a process whose OpenMP pool is already
    # running (torch after its first operation, a test runner) can deadlock in
    # the child's first parallel region. One thread per worker, since the
    # workers already use every core between them.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_one_thread_per_worker) as pool:
        iterator: Iterable[Result] = pool.imap(function, items, chunksize=1)
        with tqdm(iterator, total=len(items), desc=desc, unit="img", leave=False) as bar:
            return list(bar)
