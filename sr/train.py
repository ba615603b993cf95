"""Train the VDSR-style SR network on (LQ, HR) pairs from one source.

    python -m sr.train --config configs/sr_vdsr_fast.yaml --data.hr_dir HR_DIR \\
        --data.degradation flow --data.flow_ckpt FLOW_CKPT --output RUN_DIR

``--data.degradation`` says where the LQ images come from: ``pairs`` (with
``--data.lq_dir``), ``flow`` (with ``--data.flow_ckpt``, degraded on the fly,
``--data.temperature``), or a classical preset: ``bicubic``, ``noise_jpeg``,
``realesrgan``, ``camera``. L1 loss (plus LPIPS with ``--train.lpips_weight``),
Adam, EMA of the weights, validation PSNR on a paired set every
``train.val_every`` steps (``--data.val_lr_dir``, ``--data.val_hr_dir``), best
and last checkpoints, ``--resume CKPT`` to ``train.n_iter``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from unpaired_sr.common.checkpoint import SR_KIND, load_checkpoint, save_checkpoint, save_training_checkpoint
from unpaired_sr.common.config import config_from_dict
from unpaired_sr.common.distributed import wrap_ddp
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.training import (
    EMA,
    LogWindow,
    NonFiniteGuard,
    RunFolder,
    TrainingSteps,
    autocast,
    end_step,
    lr_scheduler,
    open_run,
    resume_parts,
    start_process,
    training_command,
    training_state,
)
from unpaired_sr.data_tools.datasets import HRCrops, ImageFolderCache, PairedCrops, step_loader
from unpaired_sr.data_tools.degrade_classical import PRESETS
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.sr.checkpoint import build_sr
from unpaired_sr.sr.config import PAIR_SOURCES, SRConfig
from unpaired_sr.sr.data import DegradedCrops, flow_degrade, noise_seed
from unpaired_sr.sr.model import VDSR, relu_activity
from unpaired_sr.sr.validation import ValidationSet

# A ReLU layer whose units are (nearly) never positive passes no gradient and does not recover.
DEAD_LAYER_FRACTION = 0.01


def check_activity(model: VDSR, lq: torch.Tensor, step: int, n_iter: int, out: RunFolder) -> None:
    """Log each ReLU layer's active fraction on the batch ``lq``; warn once per check about dead layers."""
    fractions = relu_activity(model, lq)
    out.scalars({f"sr_active/layer_{i + 1:02d}": value for i, value in enumerate(fractions)}, step)
    out.scalars({"sr/active_min": min(fractions)}, step)
    dead = [f"{i + 1} ({100 * value:.1f}%)" for i, value in enumerate(fractions) if value < DEAD_LAYER_FRACTION]
    if dead:
        out.log(
            f"[{step:>7}/{n_iter}] warning: ReLU layer(s) {', '.join(dead)} of {len(fractions)} are dead "
            "(active on < 1% of this batch): no gradient passes a dead layer, so the network has stopped "
            "learning there (README, the SR network)"
        )


def build_dataset(config: SRConfig) -> Dataset:
    data = config.data
    sources = (*PAIR_SOURCES, *PRESETS)
    if data.degradation not in sources:
        raise UserError(f"unknown data.degradation {data.degradation!r}; choose one of {', '.join(sources)}")
    if not data.hr_dir:
        raise UserError("set --data.hr_dir (HR photos)")
    hr = ImageFolderCache(data.hr_dir, "HR folder", min_size=data.crop_size * data.scale, storage=data.storage)
    if data.degradation == "pairs":
        if not data.lq_dir:
            raise UserError("data.degradation=pairs needs --data.lq_dir")
        lq = ImageFolderCache(data.lq_dir, "LQ folder", min_size=data.crop_size, storage=data.storage)
        return PairedCrops(lq, hr, data.crop_size, data.scale, seed=data.seed)
    if data.degradation == "flow":
        if not data.flow_ckpt:
            raise UserError("data.degradation=flow needs --data.flow_ckpt")
        return HRCrops(hr, data.crop_size, data.scale, seed=data.seed)
    return DegradedCrops(hr, data.crop_size, data.scale, data.degradation, seed=data.seed)


def train(
    config: SRConfig, out_dir: str | Path, resume: str | Path | None = None, max_steps: int | None = None
) -> dict[str, float]:
    """Train (or resume) the SR network; returns the last monitor values (and ``best_psnr``)."""
    train, data = config.train, config.data
    world, device = start_process(train)
    dataset = build_dataset(config)
    flow = None
    if data.degradation == "flow":
        flow, flow_config = load_flow(data.flow_ckpt, device)
        if flow_config.data.scale != data.scale:
            # Its estimates (blur, aliasing, noise) are in the LR pixels of the scale it learned.
            raise UserError(
                f"the flow {data.flow_ckpt} learned the real images at x{flow_config.data.scale}, and SR is asked "
                f"for x{data.scale}: train a flow at x{data.scale} (--data.scale {data.scale}) or SR at "
                f"x{flow_config.data.scale} (--data.scale {flow_config.data.scale})"
            )
        flow.requires_grad_(False)
    memory_format = torch.channels_last if train.channels_last and device.type == "cuda" else None
    model = build_sr(config.model, data.scale).to(device, memory_format=memory_format)
    ema = EMA(model, train.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr)
    scheduler = lr_scheduler(optimizer, train)
    guard = NonFiniteGuard(train.max_bad_steps)
    lpips_loss = None
    if train.lpips_weight > 0:
        from unpaired_sr.sr.lpips_metric import load_lpips

        lpips_loss = load_lpips(device=device)
    # What a checkpoint keeps, saved and restored through this one dict.
    parts = {"model": model, "ema": ema.module, "optimizer": optimizer, "scheduler": scheduler, "guard": guard}
    start_step, best_psnr, rate_changes = 0, -float("inf"), []
    if resume is not None:
        state = load_checkpoint(resume, SR_KIND, resume=True)
        saved = config_from_dict(SRConfig, state["config"])
        if saved.model != config.model or saved.data.scale != data.scale:
            raise UserError(
                f"{resume} was trained with model {saved.model} at x{saved.data.scale}; the config asks "
                f"for {config.model} at x{data.scale}"
            )
        start_step, rate_changes = resume_parts(state, parts, {"scheduler": "train.lr"})
        best_psnr, ema.updates = state["best_psnr"], state["ema_updates"]
    train_model = wrap_ddp(model, world, device)
    if train.compile:
        train_model = torch.compile(train_model)

    out = open_run(out_dir, config, f"SR ({data.degradation})", world, resume, start_step, rate_changes)
    parameters = sum(p.numel() for p in model.parameters())
    out.log(
        f"SR: VDSR {config.model.form} x{data.scale}, {parameters / 1e6:.2f}M parameters, pairs from "
        f"{data.degradation}, device {device}{world.describe(train.batch_size)}"
    )
    validation = None
    if world.is_main:
        validation = ValidationSet.from_dirs(data.val_lr_dir, data.val_hr_dir, data.scale)
        if validation is not None and validation.lpips_note:
            out.log(validation.lpips_note)
    loader = step_loader(dataset, train.batch_size, start_step, world, device, data.num_workers, data.seed)
    monitor: dict[str, float] = {"best_psnr": best_psnr}
    window = LogWindow(["l1"], device)
    model.train()

    def checkpoint(step: int, path: Path | None = None) -> None:
        if not world.is_main:
            return
        state = training_state(SR_KIND, step, config, parts)
        state.update(ema_updates=ema.updates, best_psnr=best_psnr)
        if path is None:
            save_training_checkpoint(out.checkpoints, state, train.keep_last)
        else:
            save_checkpoint(path, state)

    end = end_step(start_step, train.n_iter, max_steps)
    with TrainingSteps(loader, start_step, end, train, "SR", world, out, checkpoint, guard) as steps:
        for step, batch in steps:
            hr = batch["hr"].to(device, non_blocking=True)
            if flow is not None:
                first = loader.sampler.first_sample(step)
                seeds = [noise_seed(data.seed, first + i) for i in range(hr.shape[0])]
                with torch.no_grad():
                    lq = flow_degrade(flow, hr, data.scale, data.temperature, seeds)
            else:
                lq = batch["lq"].to(device, non_blocking=True)
            if memory_format is not None:
                lq = lq.contiguous(memory_format=memory_format)
            with autocast(device, train.amp):
                sr = train_model(lq).float()
            loss = F.l1_loss(sr, hr)
            if lpips_loss is not None:
                loss = loss + train.lpips_weight * lpips_loss(sr * 2 - 1, hr * 2 - 1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # always, also for a non-finite loss: under DDP every rank must join the all-reduce
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            if guard.ok(loss, grad_norm, world=world):
                optimizer.step()
                ema.update(model)
            scheduler.step()
            window.add(l1=loss)
            window.step()
            done = steps.done
            if steps.log_point:
                monitor.update(window.means(world), lr=scheduler.get_last_lr()[0], skipped_steps=guard.total)
                # Validation scores are logged once, at their own step, not repeated at every log point.
                logged = {k: v for k, v in monitor.items() if k not in ("best_psnr", "val_psnr", "val_lpips")}
                out.scalars({f"sr/{k}": v for k, v in logged.items()}, done)
                out.log(
                    f"[{done:>7}/{train.n_iter}] loss={monitor['l1']:.5f} lr={monitor['lr']:.2e} "
                    f"{monitor['steps_per_s']:.2f} steps/s skipped={guard.total}"
                )
                steps.set_postfix(loss=monitor["l1"])
            if steps.every(train.val_every) and world.is_main:
                check_activity(model, lq, done, train.n_iter, out)
            if validation is not None and steps.every(train.val_every):
                scores, figure = validation.assess(ema.module, figure_rows=3)
                monitor.update({f"val_{name}": score for name, score in scores.items()})
                out.scalars({f"sr/val_{name}": score for name, score in scores.items()}, done)
                out.image("sr/validation", figure, done)
                if scores["psnr"] > best_psnr:
                    best_psnr = monitor["best_psnr"] = scores["psnr"]
                    checkpoint(done, out.checkpoints / "best.pt")
                out.log(
                    f"[{done:>7}/{train.n_iter}] validation PSNR {scores['psnr']:.3f} dB (best {best_psnr:.3f})"
                    + (f", LPIPS {scores['lpips']:.4f}" if "lpips" in scores else "")
                )
    return monitor


main = training_command(prog="python -m sr.train", doc=__doc__, schema=SRConfig, kind=SR_KIND, train=train)

if __name__ == "__main__":
    main()
