"""Training-data throughput and memory in both storage modes (in RAM, memory-mapped).

    python benchmarks/data_storage.py --clean /tmp/demo/train_hr --real /tmp/demo/train_real_lr

Loads the two folders as the flow's training does, then draws ``--samples``
unpaired crops (single process, no DataLoader workers) and prints samples/s,
the load time (the first memory-mapped load includes decoding into the store)
and how many bytes the decoded images take.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unpaired_sr.data_tools.datasets import ImageFolderCache, UnpairedCrops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", required=True, help="clean HR folder")
    parser.add_argument("--real", required=True, help="real LR folder")
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4000)
    args = parser.parse_args()
    print(f"{'storage':>8} {'load s':>7} {'decoded MB':>11} {'samples/s':>10}")
    for storage in ("memory", "memmap", "memmap"):  # the second memmap load finds the store ready
        start = time.perf_counter()
        clean = ImageFolderCache(args.clean, "clean", min_size=args.crop_size * args.scale, storage=storage)
        real = ImageFolderCache(args.real, "real", min_size=args.crop_size, storage=storage)
        load = time.perf_counter() - start
        crops = UnpairedCrops(clean, real, args.crop_size, args.scale)
        start = time.perf_counter()
        for index in range(args.samples):
            crops[index]
        rate = args.samples / (time.perf_counter() - start)
        megabytes = sum(image.nbytes for cache in (clean, real) for image in cache.images) / 1e6
        print(f"{storage:>8} {load:>7.2f} {megabytes:>11.1f} {rate:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
