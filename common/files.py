"""Writing files and folders so that a crash never leaves half of one behind."""

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from unpaired_sr.common.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the block ends without error.

    It is written to a temporary file in the same folder, fsynced and renamed
    over ``path``; on an error (or a kill) the temporary is removed (or swept
    by ``sweep_temporaries``) and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename."""
    with atomic_file(path) as handle:
        handle.write(data)


def sweep_temporaries(folder: str | Path, name: str = "*") -> list[Path]:
    """Remove what an earlier, killed writer left in ``folder``: ``.{name}.*.tmp`` files and
    ``.{name}.partial-*`` folders. Returns what was removed.

    Only for folders that one process writes at a time (a run folder, a tool's
    output): a live writer's temporaries would go too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in [*folder.glob(f".{name}.*.tmp"), *folder.glob(f".{name}.partial-*")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after it must not undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that ``finally`` blocks and cleanups run (exit status 143)."""


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` instead of killing the process outright.

    Python's default for SIGTERM ends the process without unwinding, so
    nothing removes what the tool had staged; schedulers and ``kill`` send it.
    """
    if threading.current_thread() is not threading.main_thread():  # handlers only work there
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def staged_output_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it becomes ``out_dir`` only on success.

    A tool that fails half-way (bad input, Ctrl-C, a crash) leaves ``out_dir``
    untouched: either absent, or as it was. ``out_dir`` must not hold files
    unless ``overwrite`` is set, in which case it is replaced as a whole.
    SIGTERM inside the block removes the staging folder and exits with 143.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"output folder {out_dir} is not empty (pass --overwrite to replace it)")
    sweep_temporaries(out_dir.parent, out_dir.name)  # a killed earlier attempt at the same output
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    except OSError as error:
        raise UserError(f"cannot write into {out_dir.parent}: {error.strerror or error}") from error
    try:
        with terminate_as_exception():
            yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
