"""Train the degradation flow alone on unpaired clean HR photos and real LR images.

    python -m degradation.train --config configs/deflow_light.yaml \\
        --data.clean_dir HR_DIR --data.real_dir REAL_LR_DIR --out RUN_DIR

HR crops become clean LR on the training device (MATLAB bicubic, then 8-bit
rounding, as a saved LR image would be); real LR crops come from other images.
The loss is the sum of both domains' bits/dim. ``--resume CKPT`` continues to
``train.n_iter`` (not beyond). Any config field can be overridden as
``--section.key value``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from common.checkpoint import FLOW_KIND, load_checkpoint, restore_rng_state, rng_state, save_training_checkpoint
from common.cli import run_cli
from common.config import config_from_dict, config_to_dict
from common.distributed import Distributed, all_gather_cat, barrier, init_distributed, wrap_ddp
from common.errors import UserError
from common.matlab_resize import clean_lr_from_hr
from common.training import (
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
from data_tools.datasets import ImageFolderCache, StepSampler, UnpairedCrops, dequant_noise_batch
from degradation.adversarial import (
    PatchDiscriminator,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    quantize_8bit,
)
from degradation.checkpoint import build_flow
from degradation.config import FlowConfig
from degradation.encoder import LOW_PASS_FACTOR
from degradation.flow import DegradationFlow, FlowObjective, count_parameters, domain_bits_per_dim, flow_optimizer
from degradation.moments import DetailMoments
from degradation.noise import estimate_from_training_sets
from degradation.samples import sample_figure


@torch.no_grad()
def initialize_actnorm(
    flow: DegradationFlow,
    batch: dict[str, torch.Tensor],
    scale: int,
    num_bins: int,
    world: Distributed,
    device: torch.device,
) -> None:
    """Data-initialise a new flow's ActNorm layers on the first global batch (all ranks' crops).

    Done before DDP wraps the flow, so every rank starts from the same
    statistics a single process with the whole batch would compute.
    """
    hr = all_gather_cat(batch["hr"].to(device), world)
    real_lr = all_gather_cat(batch["real_lr"].to(device), world)
    noise = all_gather_cat(batch["dequant_noise"].to(device), world)
    domain_bits_per_dim(flow, clean_lr_from_hr(hr, scale), real_lr, num_bins, dequant_noise_batch(noise))


def train(
    config: FlowConfig, out_dir: str | Path, resume: str | Path | None = None, max_steps: int | None = None
) -> dict[str, float]:
    """Train (or resume) the flow; returns the last monitor values. ``max_steps`` caps this call's steps.

    Under torchrun each process trains on its slice of the global batch
    ``world_size * train.batch_size`` (see ``common.distributed``).
    """
    if not config.data.clean_dir or not config.data.real_dir:
        raise UserError("set both --data.clean_dir (HR photos) and --data.real_dir (real LR images)")
    multiple = max(2**config.model.num_levels, LOW_PASS_FACTOR)  # DegradationFlow.size_multiple
    if config.data.crop_size % multiple:
        raise UserError(
            f"data.crop_size must be a multiple of {multiple} for {config.model.num_levels} levels, "
            f"got {config.data.crop_size}"
        )
    world, device = init_distributed(select_device(config.train.device))
    setup_device(device)
    torch.manual_seed(config.train.seed)
    flow = build_flow(config.model, seed=config.train.seed).to(device)
    optimizer = flow_optimizer(flow, config.train.lr, config.train.shift_lr_mult)
    schedule = lr_factor(
        config.train.schedule,
        config.train.n_iter,
        config.train.warmup_iter,
        config.train.milestones,
        config.train.gamma,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    guard = NonFiniteGuard(config.train.max_bad_steps)
    discriminator = disc_optimizer = None
    if config.train.adv_weight > 0:
        discriminator = PatchDiscriminator(config.train.adv_width, config.train.adv_high_pass_sigma).to(device)
        disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.train.adv_lr, betas=(0.5, 0.999))
    moments = None
    if config.train.stats_weight > 0:
        moments = DetailMoments(flat_only=config.train.stats_flat_only).to(device)
    # What a checkpoint keeps, saved and restored through this one dict.
    parts = {"model": flow, "optimizer": optimizer, "scheduler": scheduler, "guard": guard}
    if discriminator is not None:
        parts.update(discriminator=discriminator, disc_optimizer=disc_optimizer)
    if moments is not None:
        parts["detail_moments"] = moments
    start_step, rate_changes = 0, []
    if resume is not None:
        state = load_checkpoint(resume, FLOW_KIND, resume=True)
        saved_model = config_from_dict(FlowConfig, state["config"]).model
        if saved_model != config.model:
            raise UserError(
                f"{resume} was trained with model settings {saved_model}, the config asks for "
                f"{config.model}; drop --config to use the checkpoint's own"
            )
        critics = ("discriminator", "disc_optimizer", "detail_moments")
        rate_changes = load_state_dicts(parts, state, {"scheduler": "train.lr"}, optional=critics)
        restore_rng_state(state["rng"])
        start_step = state["step"]

    out = RunFolder(prepare_out_dir(out_dir, resuming=resume is not None), active=world.is_main)
    out.start(config, f"degradation flow, {'resumed at step ' + str(start_step) if resume else 'new run'}")
    if rate_changes:
        out.log(f"learning rate from the config, not the checkpoint: {'; '.join(rate_changes)}")
    out.log(
        f"flow: {count_parameters(flow) / 1e6:.2f}M parameters, L={config.model.num_levels} "
        f"K={config.model.num_steps}, device {device}{world.describe(config.train.batch_size)}"
    )
    scale, crop = config.data.scale, config.data.crop_size
    dataset = UnpairedCrops(
        ImageFolderCache(config.data.clean_dir, "clean HR folder", min_size=crop * scale, storage=config.data.storage),
        ImageFolderCache(config.data.real_dir, "real LR folder", min_size=crop, storage=config.data.storage),
        lr_crop_size=crop,
        scale=scale,
        seed=config.data.seed,
        content_candidates=config.data.content_candidates,
    )
    if config.model.image_noise and resume is None:
        # Every rank estimates from the same images, so all hold the same noise without a broadcast.
        try:
            estimate = estimate_from_training_sets(dataset.clean_hr.images, dataset.real_lr.images, scale)
        except ValueError as error:
            raise UserError(f"{error}; or train without it: --model.image_noise false") from error
        flow.image_noise.load_estimate(estimate)
        out.log(f"image noise {estimate.describe()}")
    loader = DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        sampler=StepSampler(config.train.batch_size, start_step, world.rank, world.world_size),
        num_workers=config.data.num_workers,
        worker_init_fn=ignore_stop_signals,
        pin_memory=device.type == "cuda",
        persistent_workers=config.data.num_workers > 0,
        # Its own generator: creating an iterator would otherwise draw from the global RNG
        # after a resume restored it.
        generator=torch.Generator().manual_seed(config.data.seed),
    )
    end_step = config.train.n_iter if max_steps is None else min(config.train.n_iter, start_step + max_steps)
    monitor: dict[str, float] = {}
    logged = ["nll_clean", "nll_real"] + (["adv_flow", "adv_disc", "disc_accuracy"] if discriminator else [])
    window = LogWindow(logged + (["detail_stats"] if moments is not None else []), device)
    disc_ddp = wrap_ddp(discriminator, world, device) if discriminator is not None else None
    flow.train()

    def checkpoint(step: int) -> None:
        if world.is_main:
            state = {"kind": FLOW_KIND, "step": step, "config": config_to_dict(config), "rng": rng_state()}
            save_training_checkpoint(out.checkpoints, {**state, **state_dicts(parts)}, config.train.keep_last)

    progress = progress_bar(start_step, end_step, config.train.n_iter, "flow", world)
    objective = None
    try:
        with StopSignals(world) as stop:
            batches = iter(loader)
            for step in progress:
                batch = stop.next_batch(batches, step, checkpoint, out, skipping=guard.in_a_row)
                if objective is None:  # first step of this call: finish setting up the model
                    if start_step == 0:
                        initialize_actnorm(flow, batch, scale, config.model.dequant_bins, world, device)
                    objective = wrap_ddp(
                        FlowObjective(flow, config.model.dequant_bins, config.train.content_penalty),
                        world,
                        device,
                        broadcast_buffers=False,
                    )
                    if config.train.compile:
                        objective = torch.compile(objective)
                hr = batch["hr"].to(device, non_blocking=True)
                real_lr = batch["real_lr"].to(device, non_blocking=True)
                dequant_noise = dequant_noise_batch(batch["dequant_noise"].to(device, non_blocking=True))
                clean_lr = clean_lr_from_hr(hr, scale)
                critics = discriminator is not None or moments is not None
                num_samples = min(config.train.adv_batch, clean_lr.shape[0]) if critics else 0
                if moments is not None:
                    moments.update(real_lr)
                with autocast(device, config.train.amp):
                    loss, nll_clean, nll_real, samples = objective(
                        clean_lr, real_lr, dequant_noise, num_samples, config.train.adv_temperature
                    )
                    if samples is not None:
                        samples = quantize_8bit(samples.float())
                        if step >= config.train.adv_start and discriminator is not None:
                            discriminator.requires_grad_(False)  # this term moves the flow, not the judge
                            adv_flow = generator_loss(discriminator(samples))
                            discriminator.requires_grad_(True)
                            loss = loss + config.train.adv_weight * adv_flow
                            window.add(adv_flow=adv_flow)
                        if step >= config.train.adv_start and moments is not None:
                            detail_stats = moments(samples)
                            loss = loss + config.train.stats_weight * detail_stats
                            window.add(detail_stats=detail_stats)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # always, also for a non-finite loss: under DDP every rank must join the all-reduce
                grad_norm = torch.nn.utils.clip_grad_norm_(flow.parameters(), config.train.grad_clip)
                step_ok = guard.ok(loss, grad_norm, world=world)
                if step_ok:
                    optimizer.step()
                scheduler.step()
                if samples is not None and discriminator is not None:
                    with autocast(device, config.train.amp):
                        judged = torch.cat([real_lr[:num_samples], samples.detach()])
                        real_logits, fake_logits = disc_ddp(judged).chunk(2)
                        adv_disc = discriminator_loss(real_logits, fake_logits)
                    disc_optimizer.zero_grad(set_to_none=True)
                    adv_disc.backward()
                    if step_ok:
                        disc_optimizer.step()
                    window.add(adv_disc=adv_disc, disc_accuracy=discriminator_accuracy(real_logits, fake_logits))
                window.add(nll_clean=nll_clean, nll_real=nll_real)
                window.step()
                done = step + 1
                log_point = done % config.train.log_every == 0 or done == end_step
                if log_point:
                    monitor = window.means(world)
                    monitor.update(flow.shift.summary(), lr=scheduler.get_last_lr()[0], skipped_steps=guard.total)
                    out.scalars({f"flow/{k}": v for k, v in monitor.items()}, done)
                    out.log(
                        f"[{done:>7}/{config.train.n_iter}] nll_clean={monitor['nll_clean']:.4f} "
                        f"nll_real={monitor['nll_real']:.4f} bits/dim  |mu_u|={monitor['mean_abs_mu_u']:.4f} "
                        f"sigma_u={monitor['mean_sigma_u']:.4f} a={monitor['mean_content_scale']:.3f} "
                        f"lr={monitor['lr']:.2e} {monitor['steps_per_s']:.2f} steps/s skipped={guard.total}"
                        + (
                            f" disc_acc={monitor['disc_accuracy']:.2f} adv_flow={monitor['adv_flow']:.3f}"
                            if discriminator is not None
                            else ""
                        )
                        + (f" detail_stats={monitor['detail_stats']:.4f}" if moments is not None else "")
                    )
                    progress.set_postfix(clean=f"{monitor['nll_clean']:.3f}", real=f"{monitor['nll_real']:.3f}")
                if world.is_main and (done % config.train.sample_every == 0 or done == config.train.n_iter):
                    out.image("flow/samples", sample_figure(flow, clean_lr, real_lr), done)
                # A checkpoint when one is due, or when a stop signal came (then the run ends here).
                save_due = done % config.train.save_every == 0 or done == end_step
                stop.end_of_step(done, log_point, save_due, checkpoint, out, skipping=guard.in_a_row)
    finally:
        progress.close()
        out.close()
        barrier(world)  # the next stage (or process) may read the checkpoint rank 0 just wrote
    return monitor


def main(argv: list[str] | None = None) -> None:
    training_main(argv, prog="python -m degradation.train", doc=__doc__, schema=FlowConfig, kind=FLOW_KIND, train=train)


if __name__ == "__main__":
    run_cli(main)
