"""Train the VDSR-style SR network on (LQ, HR) pairs from one source.

    python -m sr.train --config configs/sr_vdsr_fast.yaml --data.hr_dir HR_DIR \\
        --data.degradation flow --data.flow_ckpt FLOW_CKPT --out RUN_DIR

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
from torch.utils.data import DataLoader, Dataset

from common.checkpoint import (
    SR_KIND,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    save_training_checkpoint,
)
from common.cli import run_cli
from common.config import config_from_dict, config_to_dict
from common.distributed import barrier, init_distributed, wrap_ddp
from common.errors import UserError
from common.training import (
    EMA,
    LogWindow,
    NonFiniteGuard,
    RunFolder,
    StopSignals,
    autocast,
    ignore_stop_signals,
    load_state_dicts,
    lr_factor,
    prepare_out_dir,
    progress_bar,
    select_device,
    setup_device,
    state_dicts,
    training_main,
)
from data_tools.datasets import HRCrops, ImageFolderCache, PairedCrops, StepSampler
from data_tools.degrade_classical import PRESETS
from degradation.checkpoint import load_flow
from sr.checkpoint import build_sr
from sr.config import PAIR_SOURCES, SRConfig
from sr.data import DegradedCrops, flow_degrade, noise_seed
from sr.model import VDSR, relu_activity
from sr.validation import ValidationSet

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
    """Train (or resume) the SR network; returns the last monitor values (and ``best_psnr``).

    Under torchrun each process trains on its slice of the global batch
    ``world_size * train.batch_size`` (see ``common.distributed``).
    """
    world, device = init_distributed(select_device(config.train.device))
    setup_device(device)
    torch.manual_seed(config.train.seed)
    dataset = build_dataset(config)
    flow = None
    if config.data.degradation == "flow":
        flow, _ = load_flow(config.data.flow_ckpt, device)
        flow.requires_grad_(False)
    memory_format = torch.channels_last if config.train.channels_last and device.type == "cuda" else None
    model = build_sr(config.model, config.data.scale).to(device, memory_format=memory_format)
    ema = EMA(model, config.train.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    schedule = lr_factor(
        config.train.schedule,
        config.train.n_iter,
        config.train.warmup_iter,
        config.train.milestones,
        config.train.gamma,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    guard = NonFiniteGuard(config.train.max_bad_steps)
    lpips_loss = None
    if config.train.lpips_weight > 0:
        from sr.lpips_metric import load_lpips

        lpips_loss = load_lpips(device=device)
    # What a checkpoint keeps, saved and restored through this one dict.
    parts = {"model": model, "ema": ema.module, "optimizer": optimizer, "scheduler": scheduler, "guard": guard}
    start_step, best_psnr, rate_changes = 0, -float("inf"), []
    if resume is not None:
        state = load_checkpoint(resume, SR_KIND, resume=True)
        saved = config_from_dict(SRConfig, state["config"])
        if saved.model != config.model or saved.data.scale != config.data.scale:
            raise UserError(
                f"{resume} was trained with model {saved.model} at x{saved.data.scale}; the config asks "
                f"for {config.model} at x{config.data.scale}"
            )
        rate_changes = load_state_dicts(parts, state, {"scheduler": "train.lr"})
        restore_rng_state(state["rng"])
        start_step, best_psnr, ema.updates = state["step"], state["best_psnr"], state["ema_updates"]
    train_model = wrap_ddp(model, world, device)
    if config.train.compile:
        train_model = torch.compile(train_model)

    out = RunFolder(prepare_out_dir(out_dir, resuming=resume is not None), active=world.is_main)
    out.start(
        config, f"SR ({config.data.degradation}), {'resumed at step ' + str(start_step) if resume else 'new run'}"
    )
    if rate_changes:
        out.log(f"learning rate from the config, not the checkpoint: {'; '.join(rate_changes)}")
    parameters = sum(p.numel() for p in model.parameters())
    out.log(
        f"SR: VDSR {config.model.form} x{config.data.scale}, {parameters / 1e6:.2f}M parameters, pairs from "
        f"{config.data.degradation}, device {device}{world.describe(config.train.batch_size)}"
    )
    validation = None
    if world.is_main:
        validation = ValidationSet.from_dirs(config.data.val_lr_dir, config.data.val_hr_dir, config.data.scale)
        if validation is not None and validation.lpips_note:
            out.log(validation.lpips_note)
    batch_size = config.train.batch_size
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=StepSampler(batch_size, start_step, world.rank, world.world_size),
        num_workers=config.data.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
        persistent_workers=config.data.num_workers > 0,
        generator=torch.Generator().manual_seed(config.data.seed),
    )
    end_step = config.train.n_iter if max_steps is None else min(config.train.n_iter, start_step + max_steps)
    monitor: dict[str, float] = {"best_psnr": best_psnr}
    window = LogWindow(["l1"], device)
    model.train()

    def checkpoint(step: int, path: Path | None = None) -> None:
        if not world.is_main:
            return
        state = {"kind": SR_KIND, "step": step, "config": config_to_dict(config), "rng": rng_state()}
        state.update(state_dicts(parts), ema_updates=ema.updates, best_psnr=best_psnr)
        if path is None:
            save_training_checkpoint(out.checkpoints, state, config.train.keep_last)
        else:
            save_checkpoint(path, state)

    progress = progress_bar(start_step, end_step, config.train.n_iter, "SR", world)
    try:
        with StopSignals(world) as stop:
            batches = iter(loader)
            for step in progress:
                batch = stop.next_batch(batches, step, checkpoint, out, skipping=guard.in_a_row)
                hr = batch["hr"].to(device, non_blocking=True)
                if flow is not None:
                    first = (step * world.world_size + world.rank) * batch_size  # this rank's first global sample
                    seeds = [noise_seed(config.data.seed, first + i) for i in range(hr.shape[0])]
                    with torch.no_grad():
                        lq = flow_degrade(flow, hr, config.data.scale, config.data.temperature, seeds)
                else:
                    lq = batch["lq"].to(device, non_blocking=True)
                if memory_format is not None:
                    lq = lq.contiguous(memory_format=memory_format)
                with autocast(device, config.train.amp):
                    sr = train_model(lq).float()
                loss = F.l1_loss(sr, hr)
                if lpips_loss is not None:
                    loss = loss + config.train.lpips_weight * lpips_loss(sr * 2 - 1, hr * 2 - 1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # always, also for a non-finite loss: under DDP every rank must join the all-reduce
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                if guard.ok(loss, grad_norm, world=world):
                    optimizer.step()
                    ema.update(model)
                scheduler.step()
                window.add(l1=loss)
                window.step()
                done = step + 1
                log_point = done % config.train.log_every == 0 or done == end_step
                if log_point:
                    monitor.update(window.means(world), lr=scheduler.get_last_lr()[0], skipped_steps=guard.total)
                    # Validation scores are logged once, at their own step, not repeated at every log point.
                    logged = {k: v for k, v in monitor.items() if k not in ("best_psnr", "val_psnr", "val_lpips")}
                    out.scalars({f"sr/{k}": v for k, v in logged.items()}, done)
                    out.log(
                        f"[{done:>7}/{config.train.n_iter}] loss={monitor['l1']:.5f} lr={monitor['lr']:.2e} "
                        f"{monitor['steps_per_s']:.2f} steps/s skipped={guard.total}"
                    )
                    progress.set_postfix(loss=f"{monitor['l1']:.4f}")
                validation_point = done % config.train.val_every == 0 or done == end_step
                if validation_point and world.is_main:
                    check_activity(model, lq, done, config.train.n_iter, out)
                if validation is not None and validation_point:
                    scores = validation.scores(ema.module)
                    value = scores["psnr"]
                    monitor["val_psnr"] = value
                    out.scalars({f"sr/val_{name}": score for name, score in scores.items()}, done)
                    if "lpips" in scores:
                        monitor["val_lpips"] = scores["lpips"]
                    if value > best_psnr:
                        best_psnr = value
                        monitor["best_psnr"] = best_psnr
                        checkpoint(done, out.checkpoints / "best.pt")
                    out.log(
                        f"[{done:>7}/{config.train.n_iter}] validation PSNR {value:.3f} dB (best {best_psnr:.3f})"
                        + (f", LPIPS {scores['lpips']:.4f}" if "lpips" in scores else "")
                    )
                # A checkpoint when one is due, or when a stop signal came (then the run ends here).
                save_due = done % config.train.save_every == 0 or done == end_step
                stop.end_of_step(done, log_point, save_due, checkpoint, out, skipping=guard.in_a_row)
    finally:
        progress.close()
        out.close()
        barrier(world)  # the next stage (or process) may read the checkpoint rank 0 just wrote
    return monitor


def main(argv: list[str] | None = None) -> None:
    training_main(argv, prog="python -m sr.train", doc=__doc__, schema=SRConfig, kind=SR_KIND, train=train)


if __name__ == "__main__":
    run_cli(main)
