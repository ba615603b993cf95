"""Peak memory of ``sr.infer`` against the size of the image: does it stay bounded?

    python benchmarks/infer_memory.py --sizes 500,1000,2000 [--config configs/sr_vdsr_fast.yaml]

For each LR size N, writes an N x N LR image (a real photo, tiled), runs
``python -m sr.infer`` on it in a fresh process with a freshly initialised
network of the config's architecture (memory does not depend on the
weights), and prints the process's peak resident memory (ru_maxrss), the
output's size and the time. The figures go in the README's "What happens
when" section.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import real_photo  # noqa: E402
from unpaired_sr.common.checkpoint import SR_KIND, save_checkpoint  # noqa: E402
from unpaired_sr.common.config import config_to_dict, load_config  # noqa: E402
from unpaired_sr.common.image_io import write_image  # noqa: E402
from unpaired_sr.sr.checkpoint import build_sr  # noqa: E402
from unpaired_sr.sr.config import SRConfig  # noqa: E402

MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
)


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """Run ``command`` in a fresh process; (its peak RSS in MB, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,1000,2000", help="LR sizes N (N x N), comma-separated")
    parser.add_argument("--config", default="configs/sr_vdsr_fast.yaml")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = load_config(SRConfig, args.config, [])
    model = build_sr(config.model, config.data.scale)
    work = Path(tempfile.mkdtemp(prefix="infer_memory_"))
    ckpt = work / "sr.pt"
    save_checkpoint(ckpt, {"kind": SR_KIND, "step": 0, "config": config_to_dict(config), "model": model.state_dict()})
    tile = (real_photo("astronaut", 256) * 255).round().astype(np.uint8)
    print(f"{'LR size':>9} {'SR megapixels':>14} {'peak RSS (MB)':>14} {'seconds':>8}")
    for size in (int(text) for text in args.sizes.split(",")):
        folder = work / f"lr_{size}"
        folder.mkdir()
        reps = -(-size // 256)
        write_image(folder / "image.png", np.tile(tile, (reps, reps, 1))[:size, :size])
        command = [sys.executable, "-m", "sr.infer", "--ckpt", str(ckpt), "--input", str(folder)]
        command += ["--output", str(work / f"sr_{size}"), "--device", args.device]
        rss, seconds = peak_rss_mb(command)
        megapixels = (size * config.data.scale) ** 2 / 1e6
        print(f"{size:>9} {megapixels:>14.1f} {rss:>14.0f} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
