"""SR speed: training steps/s and inference megapixels/s for both VDSR forms on this machine.

    python benchmarks/sr_speed.py [--device cuda] [--quick]

Prints one JSON line per case. Training: batch 16 of 32x32 LR crops (x4), L1,
Adam, the real training step minus data loading. Inference: ``sr.infer``'s
tiled upscaling of random LR images at three sizes (output megapixels per
second), fp32, and bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sr.infer import upscale_image  # noqa: E402
from sr.model import VDSR  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_speed(form: str, device: torch.device, steps: int) -> dict:
    model = VDSR(4, form).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    lq, hr = torch.rand(16, 3, 32, 32, device=device), torch.rand(16, 3, 128, 128, device=device)

    def step() -> None:
        loss = F.l1_loss(model(lq), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return {"case": "sr_train", "form": form, "device": str(device), "batch": 16, "lr_crop": 32,
            "steps_per_s": steps / (time.perf_counter() - start)}  # fmt: skip


def inference_speed(form: str, device: torch.device, size: int, bf16: bool, repeats: int) -> dict:
    model = VDSR(4, form).to(device).eval()
    lr = torch.rand(3, size, size)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        upscale_image(model, lr)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            upscale_image(model, lr)
        synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    megapixels = (size * 4) ** 2 / 1e6
    return {"case": "sr_infer", "form": form, "device": str(device), "dtype": "bf16" if bf16 else "fp32",
            "lr_size": size, "output_mp": megapixels, "seconds": seconds, "mp_per_s": megapixels / seconds,
            "seconds_per_output_mp": seconds / megapixels}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = (64, 128) if args.quick else (64, 128, 256)
    for form in ("post_upsample", "pre_upsample"):
        print(json.dumps(training_speed(form, device, steps=3 if args.quick else 20)))
        for size in sizes:
            for bf16 in (False, True) if device.type == "cuda" else (False,):
                print(json.dumps(inference_speed(form, device, size, bf16, repeats=1 if args.quick else 3)))


if __name__ == "__main__":
    main()
