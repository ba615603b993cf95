"""The joint phase: the SR loss flows back into the degradation flow, CycleSR-style.

Each step: HR crops -> clean LR -> flow-synthesized LQ (the sampled noise is
reparameterized, so the LQ is differentiable in the flow's parameters) -> SR
-> L1 against HR. The L1 updates the SR network and, scaled by
``train.cycle_sr_weight``, the flow; the flow keeps its likelihood objective on
both domains (``train.nll_weight``), so its degradations stay faithful to the
real domain. Two optimizers with their own learning rates and clipping.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_training_checkpoint
from common.config import config_to_dict
from common.errors import UserError
from common.training import EMA, NonFiniteGuard, RunFolder, lr_factor, prepare_out_dir, select_device
from data_tools.datasets import ImageFolderCache, StepSampler, UnpairedCrops
from data_tools.image_io import write_image
from data_tools.matlab_resize import clean_lr_from_hr
from degradation.checkpoint import build_flow, load_flow
from degradation.flow import domain_bits_per_dim
from degradation.train import flow_optimizer, sample_figure
from joint.config import PipelineConfig, flow_stage_config, sr_stage_config
from sr.checkpoint import build_sr, load_sr
from sr.data import flow_degrade, noise_seed
from sr.train import ValidationSet

JOINT_KIND = "joint"


def train_joint(config: PipelineConfig, out_dir: str | Path, flow_ckpt: str | Path | None = None,
                sr_ckpt: str | Path | None = None, resume: str | Path | None = None,
                max_steps: int | None = None) -> dict[str, float]:  # fmt: skip
    """Run (or resume) the joint phase from a trained flow and SR network; returns the last monitor values."""
    train = config.train
    device = select_device(train.device)
    torch.manual_seed(train.seed)
    if resume is None and (flow_ckpt is None or sr_ckpt is None):
        raise UserError("the joint phase starts from a trained flow and SR network: give both checkpoints")
    if resume is None:
        flow, _ = load_flow(flow_ckpt, device)
        sr, _ = load_sr(sr_ckpt, device)  # its EMA weights: the better starting point
    else:
        flow = build_flow(config.flow).to(device)
        sr = build_sr(config.sr, config.data.scale).to(device)
    flow.train()
    sr.train()
    flow_parameters, sr_parameters = list(flow.parameters()), list(sr.parameters())
    ema = EMA(sr, train.ema_decay)
    flow_opt = flow_optimizer(flow, train.flow_lr, train.shift_lr_mult)
    sr_opt = torch.optim.Adam(sr_parameters, lr=train.lr)
    schedule = lr_factor(train.schedule, train.n_iter, train.warmup_iter, train.milestones, train.gamma)
    flow_sched = torch.optim.lr_scheduler.LambdaLR(flow_opt, schedule)
    sr_sched = torch.optim.lr_scheduler.LambdaLR(sr_opt, schedule)
    guard = NonFiniteGuard(train.max_bad_steps)
    start_step = 0
    if resume is not None:
        state = load_checkpoint(resume, JOINT_KIND)
        flow.load_state_dict(state["flow"])
        sr.load_state_dict(state["sr"])
        ema.load_state_dict({"module": state["sr_ema"], "updates": state["ema_updates"]})
        for module, key in ((flow_opt, "flow_optimizer"), (sr_opt, "sr_optimizer"), (flow_sched, "flow_scheduler"),
                            (sr_sched, "sr_scheduler"), (guard, "guard")):  # fmt: skip
            module.load_state_dict(state[key])
        restore_rng_state(state["rng"])
        start_step = state["step"]

    out = RunFolder(prepare_out_dir(out_dir, resuming=resume is not None))
    out.start(config, f"joint phase, {'resumed at step ' + str(start_step) if resume else 'new run'}")
    out.log(f"joint: cycle_sr_weight={train.cycle_sr_weight} nll_weight={train.nll_weight} device {device}")
    data = config.data
    dataset = UnpairedCrops(
        ImageFolderCache(data.clean_dir, "clean HR folder", min_size=data.crop_size * data.scale),
        ImageFolderCache(data.real_dir, "real LR folder", min_size=data.crop_size),
        lr_crop_size=data.crop_size, scale=data.scale, seed=data.seed,
    )  # fmt: skip
    loader = DataLoader(
        dataset, batch_size=train.batch_size, sampler=StepSampler(train.batch_size, start_step),
        num_workers=data.num_workers, pin_memory=device.type == "cuda", persistent_workers=data.num_workers > 0,
        generator=torch.Generator().manual_seed(data.seed),
    )  # fmt: skip
    validation = ValidationSet.from_dirs(data.val_lr_dir, data.val_hr_dir, data.scale)
    end_step = train.n_iter if max_steps is None else min(train.n_iter, start_step + max_steps)
    batches = iter(loader)
    sums = {"nll_clean": 0.0, "nll_real": 0.0, "l1": 0.0, "residual_std": 0.0}
    monitor: dict[str, float] = {}
    window_steps, window_start = 0, time.perf_counter()

    def checkpoint(step: int) -> None:
        save_training_checkpoint(out.checkpoints, {
            "kind": JOINT_KIND, "step": step, "config": config_to_dict(config),
            "flow_config": config_to_dict(flow_stage_config(config)),
            "sr_config": config_to_dict(sr_stage_config(config, "")),
            "flow": flow.state_dict(), "sr": sr.state_dict(), "sr_ema": ema.module.state_dict(),
            "ema_updates": ema.updates, "flow_optimizer": flow_opt.state_dict(),
            "sr_optimizer": sr_opt.state_dict(), "flow_scheduler": flow_sched.state_dict(),
            "sr_scheduler": sr_sched.state_dict(), "guard": guard.state_dict(), "rng": rng_state(),
        }, train.keep_last)  # fmt: skip

    progress = tqdm(range(start_step, end_step), initial=start_step, total=train.n_iter, desc="joint", unit="step",
                    dynamic_ncols=True)  # fmt: skip
    step = start_step
    try:
        for step in progress:
            batch = next(batches)
            hr = batch["hr"].to(device, non_blocking=True)
            real_lr = batch["real_lr"].to(device, non_blocking=True)
            clean_lr = clean_lr_from_hr(hr, data.scale)
            nll_clean, nll_real = domain_bits_per_dim(flow, clean_lr, real_lr, config.flow.dequant_bins)
            seeds = [noise_seed(data.seed, step * train.batch_size + i) for i in range(hr.shape[0])]
            synth_lr = flow_degrade(flow, hr, data.scale, train.temperature, seeds)
            l1 = F.l1_loss(sr(synth_lr), hr)
            flow_loss = (
                train.nll_weight * (nll_clean + nll_real)
                + train.content_penalty * flow.shift.content_penalty()
                + train.cycle_sr_weight * l1
            )
            flow_opt.zero_grad(set_to_none=True)
            sr_opt.zero_grad(set_to_none=True)
            if guard.ok(flow_loss, l1):
                # One L1, two optimizers: the SR network learns from it fully, the flow only
                # through cycle_sr_weight (and not at all when it is 0).
                l1.backward(inputs=sr_parameters, retain_graph=True)
                flow_loss.backward(inputs=flow_parameters)
                sr_norm = torch.nn.utils.clip_grad_norm_(sr_parameters, train.grad_clip)
                flow_norm = torch.nn.utils.clip_grad_norm_(flow_parameters, train.grad_clip)
                if guard.ok(sr_norm, flow_norm):
                    sr_opt.step()
                    flow_opt.step()
                    ema.update(sr)
            flow_sched.step()
            sr_sched.step()
            with torch.no_grad():
                sums["nll_clean"] += nll_clean.detach()
                sums["nll_real"] += nll_real.detach()
                sums["l1"] += l1.detach()
                # How strong the synthesized degradation is: a flow that learned to make
                # degradations trivially easy for the SR network shows it here first.
                sums["residual_std"] += (synth_lr - clean_lr).std()
            window_steps += 1
            done = step + 1
            if done % train.log_every == 0 or done == end_step:
                monitor = {name: float(total) / window_steps for name, total in sums.items()}
                monitor.update(flow.shift.summary())
                monitor.update(
                    steps_per_s=window_steps / (time.perf_counter() - window_start), skipped_steps=guard.total
                )
                out.scalars({f"joint/{k}": v for k, v in monitor.items()}, done)
                out.log(f"[{done:>7}/{train.n_iter}] l1={monitor['l1']:.5f} nll_clean={monitor['nll_clean']:.4f} "
                        f"nll_real={monitor['nll_real']:.4f} residual_std={monitor['residual_std'] * 255:.2f}/255 "
                        f"{monitor['steps_per_s']:.2f} steps/s skipped={guard.total}")  # fmt: skip
                progress.set_postfix(l1=f"{monitor['l1']:.4f}", real=f"{monitor['nll_real']:.3f}")
                sums = {name: 0.0 for name in sums}
                window_steps, window_start = 0, time.perf_counter()
            if validation is not None and (done % train.val_every == 0 or done == end_step):
                monitor["val_psnr"] = validation.psnr(ema.module)
                out.scalars({"joint/val_psnr": monitor["val_psnr"]}, done)
                out.log(f"[{done:>7}/{train.n_iter}] validation PSNR {monitor['val_psnr']:.3f} dB")
            if done % train.sample_every == 0 or done == train.n_iter:
                figure = sample_figure(flow, clean_lr, real_lr)
                write_image(out.root / "samples" / f"step_{done:07d}.png", figure)
            if done % train.save_every == 0 or done == end_step:
                checkpoint(done)
    except KeyboardInterrupt:
        out.log(f"interrupted at step {step}; writing a checkpoint")
        checkpoint(step)
        raise
    finally:
        progress.close()
        out.close()
    return monitor
