"""Speed of every stage on this machine: one JSON line per case.

    python benchmarks/bench.py [--quick] [--device cuda] [--compile] [--profile]

Cases (the real code paths, minus data loading, on random images):

* ``flow_train``: the light and standard flows' training step (objective,
  backward, clipping, the non-finite check, Adam) at their configs' batch and
  crop: steps/s, images/s (clean + real crops), peak memory. ``--compile``
  adds the same step under ``torch.compile``; ``--profile`` (CUDA) adds the
  share of the step time the GPU is busy, from ``torch.profiler``.
* ``flow_layout`` (CPU): the light flow's step at batch 16 of 32x32 and 64x64
  in NCHW float32 (the step before channels-last), channels-last float32 (the
  CPU default) and, where the CPU has bf16 instructions, channels-last bf16
  (``train.amp``): steps/s and ratios to NCHW float32, interleaved rounds.
* ``flow_data`` (CPU): the light flow's data loader alone (0 and 2 workers),
  and the training step on its batches: which of the two sets the pace.
* ``shared_cpu`` (CPU): two light-flow trainings at once, each one's speed as
  a fraction of its solo speed, with the automatic CPU share
  (``common.cpu_share``) and with all cores per process (as before it).
* ``synthesize``: ``degradation.synthesize.degrade_image`` (light flow) at
  three image sizes: megapixels/s and seconds per megapixel.
* ``sr_train``: both VDSR forms, batch 16 of 32x32 LR crops at x4, fp32 and
  (CUDA) bf16 autocast with channels_last, as ``sr.train`` runs them.
* ``sr_infer``: ``sr.infer.upscale_image`` at three sizes, fp32 and (CUDA)
  bf16: output megapixels/s, seconds per output megapixel, the useful
  convolution TFLOP/s (``VDSR.flops_per_lr_pixel`` per LR pixel; tile overlap
  not counted) and its fraction of the device's assumed dense peak (below).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unpaired_sr.common.config import load_config  # noqa: E402
from unpaired_sr.common.cpu_share import CpuShare, available_cores  # noqa: E402
from unpaired_sr.common.distributed import Distributed  # noqa: E402
from unpaired_sr.common.matlab_resize import clean_lr_from_hr  # noqa: E402
from unpaired_sr.common.training import (  # noqa: E402
    NonFiniteGuard,
    amp_supported,
    autocast,
    cpu_has_bf16,
    setup_device,
)
from unpaired_sr.degradation.checkpoint import build_flow  # noqa: E402
from unpaired_sr.degradation.config import FlowConfig  # noqa: E402
from unpaired_sr.degradation.flow import (
    FlowObjective,  # noqa: E402
    flow_optimizer,  # noqa: E402
)
from unpaired_sr.degradation.sampling import degrade_image  # noqa: E402
from unpaired_sr.sr.model import VDSR  # noqa: E402
from unpaired_sr.sr.upscale import default_tile_size, upscale_image  # noqa: E402

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets: (bf16 tensor core, TF32 tensor core).
# cuDNN runs fp32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32).
GPU_PEAKS = {"H100 PCIe": (756.0, 378.0), "H100": (989.4, 494.7), "H200": (989.4, 494.7), "A100": (312.0, 156.0)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def assumed_peak(device: torch.device, dtype: str) -> float | None:
    """The dense peak TFLOP/s assumed for ``device`` and ``dtype`` (None where unknown, e.g. CPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32) in GPU_PEAKS.items():  # "H100 PCIe" is checked before "H100"
        if key in name:
            return bf16 if dtype == "bf16" else tf32
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    # ru_maxrss is in KiB on Linux: the whole process's peak, not this case's alone.
    return {"peak_process_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def timed(step: Callable[[], None], device: torch.device, steps: int, warmup: int = 1) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def gpu_busy_share(step: Callable[[], None], device: torch.device, steps: int) -> float:
    """Kernel time / wall time over ``steps`` calls, from torch.profiler (CUDA only)."""
    from torch.profiler import ProfilerActivity, profile

    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    # Every kernel is some op's self time; the attribute was renamed from cuda to device in torch 2.4+.
    busy_us = sum(
        getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
        for event in prof.key_averages()
    )
    return busy_us / 1e6 / wall


def flow_train_case(
    config_path: str,
    device: torch.device,
    steps: int,
    compile_model: bool,
    profile: bool,
    batch: int | None = None,
    crop: int | None = None,
    channels_last: bool | None = None,
    amp: bool | None = None,
) -> dict:
    """The flow's training step; ``None`` arguments take the config's values (and the trainer's CPU layout)."""
    config = load_config(FlowConfig, config_path)
    batch, crop, scale = batch or config.train.batch_size, crop or config.data.crop_size, config.data.scale
    if channels_last is None:
        channels_last = config.train.channels_last and device.type == "cpu"  # as degradation.train does
    amp = config.train.amp if amp is None else amp
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    flow = build_flow(config.model).to(device, memory_format=layout).train()
    optimizer = flow_optimizer(flow, 1e-5, config.train.shift_lr_mult)
    guard = NonFiniteGuard(max_in_a_row=10**9)
    hr = torch.rand(batch, 3, crop * scale, crop * scale, device=device).contiguous(memory_format=layout)
    real_lr = torch.rand(batch, 3, crop, crop, device=device).contiguous(memory_format=layout)
    dequant_noise = (torch.rand(2 * batch, 3, crop, crop, device=device) - 0.5).contiguous(memory_format=layout)
    objective = FlowObjective(flow, config.model.dequant_bins, config.train.content_penalty)
    with torch.no_grad():
        objective(clean_lr_from_hr(hr, scale), real_lr, dequant_noise)  # ActNorm data init, as training does first
    if compile_model:
        objective = torch.compile(objective)

    def step() -> None:
        with autocast(device, amp):
            loss, *_ = objective(clean_lr_from_hr(hr, scale), real_lr, dequant_noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(flow.parameters(), config.train.grad_clip)
        if guard.ok(loss, grad_norm):
            optimizer.step()

    reset_peak_memory(device)
    seconds = timed(step, device, steps, warmup=3 if compile_model else 1)
    result = {
        "case": "flow_train",
        "config": Path(config_path).stem,
        "device": device_name(device),
        "compiled": compile_model,
        "batch": batch,
        "lr_crop": crop,
        "channels_last": channels_last,
        "dtype": "bf16" if amp and amp_supported(device) else "fp32",
        "steps_per_s": 1 / seconds,
        "images_per_s": 2 * batch / seconds,
        "ms_per_step": 1e3 * seconds,
        **peak_memory_mb(device),
    }
    if profile and device.type == "cuda":
        # A few steps: the profiler's bookkeeping of the flow's many small kernels is slow (on an H200 a run
        # profiling 50 steps per case did not get past the second flow case in 150 s; unprofiled, all four flow
        # cases, synthesis and SR inference took 46 s together).
        result["gpu_busy_share"] = gpu_busy_share(step, device, min(steps, 5))
    return result


def flow_layout_case(steps: int, rounds: int, batch: int = 16) -> list[dict]:
    """The light flow's CPU training step in the trainer's layouts and precisions, as ratios to NCHW float32.

    NCHW float32 is the step as it ran before channels-last became the CPU
    default (``train.channels_last``); bf16 (``train.amp``) is timed where the
    CPU has bf16 instructions. The variants take turns for ``rounds`` rounds,
    so a drift of the shared machine hits them alike; medians of the rounds.
    """
    variants = {"nchw_fp32": (False, False), "channels_last_fp32": (True, False)}
    if cpu_has_bf16():
        variants["channels_last_bf16"] = (True, True)
    cpu = torch.device("cpu")
    results = []
    for crop in (32, 64):
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (channels_last, amp) in variants.items():
                result = flow_train_case(
                    "configs/deflow_light.yaml", cpu, steps, False, False, batch, crop, channels_last, amp
                )
                rates[name].append(result["steps_per_s"])
        medians = {name: float(np.median(values)) for name, values in rates.items()}
        results.append(
            {
                "case": "flow_layout",
                "config": "deflow_light",
                "device": device_name(cpu),
                "batch": batch,
                "lr_crop": crop,
                "steps_per_s": medians,
                "ratio_to_nchw_fp32": {name: rate / medians["nchw_fp32"] for name, rate in medians.items()},
            }
        )
    return results


def flow_data_case(steps: int) -> dict:
    """Where the light flow's training time goes: the data loader alone, the model step alone, both together.

    The data: four bundled photos as clean HR and four others, downscaled, as
    real LR (a small set, decoded into memory as training does), batch 16 of
    32x32 crops. ``data_batches_per_s`` per worker count is the loader with no
    model; ``train_steps_per_s`` is the step on those batches (2 workers, the
    config's default): the slower of the two sets the pace.
    """
    import tempfile

    import skimage.data

    from unpaired_sr.common.image_io import write_image
    from unpaired_sr.common.matlab_resize import downscale
    from unpaired_sr.data_tools.datasets import ImageFolderCache, UnpairedCrops, dequant_noise_batch, step_loader

    config = load_config(FlowConfig, "configs/deflow_light.yaml")
    batch, crop, scale = config.train.batch_size, config.data.crop_size, config.data.scale
    device, world = torch.device("cpu"), Distributed()
    with tempfile.TemporaryDirectory(prefix="bench_flow_data_") as folder:
        clean, real = Path(folder) / "clean", Path(folder) / "real"
        clean.mkdir()
        real.mkdir()
        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            write_image(clean / f"{name}.png", getattr(skimage.data, name)())
        for name in ("brick", "gravel", "camera", "coins"):
            image = getattr(skimage.data, name)()
            image = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
            write_image(real / f"{name}.png", np.clip(downscale(image.astype(np.float32) / 255, scale), 0, 1))
        dataset = UnpairedCrops(
            ImageFolderCache(str(clean), "clean", storage="memory"),
            ImageFolderCache(str(real), "real", storage="memory"),
            lr_crop_size=crop,
            scale=scale,
        )
        result: dict = {"case": "flow_data", "device": device_name(device), "batch": batch, "lr_crop": crop}
        for workers in (0, 2):
            batches = iter(step_loader(dataset, batch, 0, world, device, workers, seed=0))
            next(batches)  # workers started
            start = time.perf_counter()
            for _ in range(steps):
                next(batches)
            result[f"data_batches_per_s_{workers}_workers"] = steps / (time.perf_counter() - start)
        flow = build_flow(config.model).train()
        optimizer = flow_optimizer(flow, 1e-5, config.train.shift_lr_mult)
        objective = FlowObjective(flow, config.model.dequant_bins, config.train.content_penalty)
        batches = iter(step_loader(dataset, batch, 0, world, device, 2, seed=0))

        def step(first: bool = False) -> None:
            data = next(batches)
            clean_lr = clean_lr_from_hr(data["hr"], scale)
            noise = dequant_noise_batch(data["dequant_noise"])
            if first:
                with torch.no_grad():
                    objective(clean_lr, data["real_lr"], noise)  # ActNorm data init
            loss, *_ = objective(clean_lr, data["real_lr"], noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), config.train.grad_clip)
            optimizer.step()

        step(first=True)
        result["train_steps_per_s"] = 1 / timed(step, device, steps, warmup=1)
    return result


def shared_cpu_case(steps: int, batch: int | None = None) -> dict:
    """Two light-flow trainings on the CPU at once vs one alone (``common.cpu_share``).

    Each arm runs the ``flow_train`` case in its own process(es): alone, two at
    once with the automatic share, and two at once on all cores each (what
    every process did before the share). Reported: steps/s of each process and
    its fraction of the solo speed with the same setting.
    """

    def run(processes: int, threads: str) -> list[float]:
        command = [sys.executable, __file__, "--cpu-child", threads, "--cpu-peers", str(processes)]
        command += ["--child-steps", str(steps)] + (["--child-batch", str(batch)] if batch else [])
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        return [json.loads(child.communicate()[0].strip().splitlines()[-1])["steps_per_s"] for child in children]

    result: dict = {"case": "shared_cpu", "device": device_name(torch.device("cpu")), "cores": available_cores()}
    for threads in ("auto", "all"):
        solo = run(1, threads)[0]
        pair = run(2, threads)
        result[threads] = {
            "solo_steps_per_s": solo,
            "pair_steps_per_s": pair,
            "pair_fraction": [v / solo for v in pair],
        }
    return result


def cpu_child(threads: str, peers: int, steps: int, batch: int | None = None) -> None:
    """One process of ``shared_cpu_case``: its share of the cores (or all of them), then the light flow's steps."""
    share = None
    if threads == "auto":
        share = CpuShare()
        deadline = time.monotonic() + 30
        while share.trainings() < peers and time.monotonic() < deadline:  # the peers register at their start
            time.sleep(0.05)
        share.rebalance()
    else:
        torch.set_num_threads(available_cores())
    result = flow_train_case("configs/deflow_light.yaml", torch.device("cpu"), steps, False, False, batch)
    if share is not None:
        share.close()
    print(json.dumps({**result, "threads": torch.get_num_threads()}), flush=True)


def synthesize_cases(device: torch.device, sizes: tuple[int, ...], repeats: int) -> list[dict]:
    """``degrade_image`` with the layout ``load_flow`` gives (channels-last on the CPU) and, on the CPU, NCHW too."""
    config = load_config(FlowConfig, "configs/deflow_light.yaml")
    layouts = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
    if device.type != "cpu":
        layouts = {"nchw": torch.contiguous_format}
    flows = {}
    for name, layout in layouts.items():
        torch.manual_seed(0)
        flow = build_flow(config.model).to(device, memory_format=layout).eval()
        flow.requires_grad_(False)
        # The flow's own pass (encode, shift, decode): what synthesis costs with the shift, and an untrained
        # flow has no image-noise estimate to sample without it (which costs one filter per image).
        flow.sample_latent_shift = True
        flows[name] = flow
    results = []
    for size in sizes:
        clean_lr = torch.rand(3, size, size)
        megapixels = size * size / 1e6
        seconds = {
            name: timed(lambda: degrade_image(flow, clean_lr, 0.8, seed=0), device, repeats, warmup=1)  # noqa: B023
            for name, flow in flows.items()
        }
        first = next(iter(flows))
        result = {
            "case": "synthesize",
            "config": "deflow_light",
            "device": device_name(device),
            "layout": first,
            "lr_size": size,
            "megapixels": megapixels,
            "mp_per_s": megapixels / seconds[first],
            "seconds_per_mp": seconds[first] / megapixels,
        }
        if "channels_last" in seconds:
            result["nchw_seconds_per_mp"] = seconds["nchw"] / megapixels
            result["speedup_over_nchw"] = seconds["nchw"] / seconds["channels_last"]
        results.append(result)
    return results


def sr_train_case(
    form: str, device: torch.device, bf16: bool, steps: int, compile_model: bool, batch: int, lr_crop: int
) -> dict:
    torch.manual_seed(0)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = VDSR(4, form).to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    guard = NonFiniteGuard(max_in_a_row=10**9)
    lq = torch.rand(batch, 3, lr_crop, lr_crop, device=device).contiguous(memory_format=memory_format)
    hr = torch.rand(batch, 3, 4 * lr_crop, 4 * lr_crop, device=device)
    forward = torch.compile(model) if compile_model else model

    def step() -> None:
        with autocast(device, bf16):
            sr = forward(lq).float()
        loss = F.l1_loss(sr, hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        if guard.ok(loss, grad_norm):
            optimizer.step()

    reset_peak_memory(device)
    seconds = timed(step, device, steps, warmup=3 if compile_model else 1)
    # A training step's convolutions cost 3x their forward: the forward, and the
    # backward's gradients with respect to the inputs and to the weights.
    tflops = 3 * model.flops_per_lr_pixel() * batch * lr_crop**2 / seconds / 1e12
    dtype = "bf16" if bf16 else "fp32"
    peak = assumed_peak(device, dtype)
    return {
        "case": "sr_train",
        "form": form,
        "device": device_name(device),
        "dtype": dtype,
        "compiled": compile_model,
        "batch": batch,
        "lr_crop": lr_crop,
        "steps_per_s": 1 / seconds,
        "ms_per_step": 1e3 * seconds,
        "tflops": tflops,
        "assumed_peak_tflops": peak,
        "fraction_of_peak": tflops / peak if peak else None,
        **peak_memory_mb(device),
    }


def sr_infer_case(
    form: str, device: torch.device, size: int, bf16: bool, repeats: int, tile: int | None, batch: int
) -> dict:
    model = VDSR(4, form).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    lr = torch.rand(3, size, size)
    with torch.no_grad(), autocast(device, bf16):
        seconds = timed(lambda: upscale_image(model, lr, tile, batch), device, repeats, warmup=1)
    megapixels = (size * 4) ** 2 / 1e6
    tflops = model.flops_per_lr_pixel() * size * size / seconds / 1e12
    dtype = "bf16" if bf16 else "fp32"
    peak = assumed_peak(device, dtype)
    return {
        "case": "sr_infer",
        "form": form,
        "device": device_name(device),
        "dtype": dtype,
        "lr_size": size,
        "tile": tile or default_tile_size(model),
        "output_mp": megapixels,
        "mp_per_s": megapixels / seconds,
        "seconds_per_output_mp": seconds / megapixels,
        "tflops": tflops,
        "assumed_peak_tflops": peak,
        "fraction_of_peak": tflops / peak if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="few repeats, small sizes: a smoke run (CI-friendly)")
    parser.add_argument("--compile", action="store_true", help="also time the training steps under torch.compile")
    parser.add_argument("--profile", action="store_true", help="CUDA: the GPU-busy share of the flow's step")
    parser.add_argument(
        "--cases",
        default="flow_train,flow_layout,flow_data,shared_cpu,synthesize,sr_train,sr_infer",
        help="comma-separated subset",
    )
    parser.add_argument("--tile", type=int, help="SR inference LR tile (default: sr.infer's per-form default)")
    parser.add_argument(
        "--sr-batch",
        type=int,
        help="SR training batch (default: 16 on CPU, as the configs; 64 on CUDA, sized for a GPU; 4 with --quick)",
    )
    parser.add_argument(
        "--sr-crop", type=int, help="SR training LR crop (default: 32 on CPU, 64 on CUDA, 16 with --quick)"
    )
    parser.add_argument("--cpu-child", choices=("auto", "all"), help=argparse.SUPPRESS)  # one shared_cpu process
    parser.add_argument("--cpu-peers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-steps", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--child-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_child:
        cpu_child(args.cpu_child, args.cpu_peers, args.child_steps, args.child_batch)
        return
    device = torch.device(args.device)
    setup_device(device)
    cases = set(args.cases.split(","))
    cuda = device.type == "cuda"
    steps = 1 if args.quick else (50 if cuda else 20)
    repeats = 1 if args.quick else 3
    if args.quick:
        sizes = (32, 64, 96)
    else:
        sizes = (256, 512, 1024) if cuda else (64, 128, 256)
    tile = args.tile
    # A smoke run checks that every case runs, not its speed: the multi-step CPU cases
    # take small batches there (the flow's layouts and the shared CPU: 4 of 16; SR: 4 of 16x16).
    smoke_batch = 4 if args.quick else None
    dtypes = (False, True) if cuda else (False,)  # bf16 autocast is CUDA-only in this toolkit
    compiled = (False, True) if args.compile else (False,)

    def emit(result: dict) -> None:
        print(json.dumps(result), flush=True)

    if "flow_train" in cases:
        configs = (
            ("configs/deflow_light.yaml",)
            if args.quick
            else ("configs/deflow_light.yaml", "configs/deflow_standard.yaml")
        )
        # On a GPU the configs' batch (16 or 8 small crops) leaves most of the chip idle: also 8x that.
        batch_factors = (1, 8) if cuda else (1,)
        for config_path in configs:
            config_batch = load_config(FlowConfig, config_path).train.batch_size
            for factor in batch_factors:
                for compile_model in compiled:
                    emit(
                        flow_train_case(config_path, device, steps, compile_model, args.profile, factor * config_batch)
                    )
    if "flow_layout" in cases and not cuda:
        for result in flow_layout_case(
            steps=2 if args.quick else 10, rounds=1 if args.quick else 3, batch=smoke_batch or 16
        ):
            emit(result)
    if "flow_data" in cases and not cuda:
        emit(flow_data_case(steps=3 if args.quick else 30))
    if "shared_cpu" in cases and not cuda:  # a CPU matter: on a GPU machine the trainings share the GPU
        emit(shared_cpu_case(steps=3 if args.quick else 30, batch=smoke_batch))
    if "synthesize" in cases:
        for result in synthesize_cases(device, sizes, repeats):
            emit(result)
    for form in ("post_upsample", "pre_upsample"):
        if "sr_train" in cases:
            for bf16 in dtypes:
                for compile_model in compiled:
                    emit(
                        sr_train_case(
                            form,
                            device,
                            bf16,
                            1 if args.quick and form == "pre_upsample" else (steps // 5 if cuda else steps),
                            compile_model,
                            args.sr_batch or smoke_batch or (64 if cuda else 16),
                            args.sr_crop or (16 if args.quick else 64 if cuda else 32),
                        )
                    )
        if "sr_infer" in cases:
            for size in sizes:
                for bf16 in dtypes:
                    emit(sr_infer_case(form, device, size, bf16, repeats, tile, batch=8 if cuda else 4))


if __name__ == "__main__":
    main()
