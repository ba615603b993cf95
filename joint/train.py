"""The joint phase: the SR loss flows back into the degradation flow, CycleSR-style.

Each step: HR crops -> clean LR -> flow-synthesized LQ (the sampled noise is
reparameterized, so the LQ is differentiable in the flow's parameters) -> SR
-> L1 against HR. The L1 updates the SR network and, scaled by
``train.cycle_sr_weight``, the flow; the flow keeps its likelihood objective on
both domains (``train.nll_weight``) and, with ``train.adv_weight``, a patch
discriminator's verdict on its samples against real LR crops (CycleSR's GAN
term), so that its degradations stay in the real domain. Two optimizers with
their own learning rates and clipping, and the discriminator's own.

At each validation point (a paired ``val_lr_dir``/``val_hr_dir``) the run logs,
besides SR PSNR, how the flow's degradations compare with the real ones on
those pairs (``paired_fidelity``): a flow that learns to make them easy for
the SR network shows it there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.common.checkpoint import JOINT_KIND, load_checkpoint, save_training_checkpoint
from unpaired_sr.common.config import config_to_dict
from unpaired_sr.common.distributed import wrap_ddp
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.common.training import (
    EMA,
    LogWindow,
    NonFiniteGuard,
    TrainingSteps,
    autocast,
    end_step,
    lr_scheduler,
    open_run,
    resume_parts,
    start_process,
    training_state,
)
from unpaired_sr.data_tools.datasets import ImageFolderCache, UnpairedCrops, dequant_noise_batch, step_loader
from unpaired_sr.degradation.adversarial import PatchDiscriminator, discriminator_step, flow_adversarial_loss
from unpaired_sr.degradation.checkpoint import build_flow, load_flow
from unpaired_sr.degradation.flow import DegradationFlow, domain_bits_per_dim, flow_optimizer
from unpaired_sr.degradation.oracle_fidelity import paired_fidelity
from unpaired_sr.degradation.samples import sample_figure
from unpaired_sr.joint.config import PipelineConfig, flow_stage_config, sr_stage_config
from unpaired_sr.sr.checkpoint import build_sr, load_sr
from unpaired_sr.sr.data import flow_degrade, noise_seed
from unpaired_sr.sr.validation import ValidationSet


class ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``weight`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.weight, None


class JointObjective(nn.Module):
    """One joint step's losses as one module, so one backward serves both networks (and DDP can wrap it).

    ``forward(hr, real_lr, dequant_noise, seeds) -> (total, terms, synth_lr, clean_lr)``.
    ``total = l1 + nll_weight * (nll_clean + nll_real) + content_penalty * penalty``
    where the synthesized LQ reaches the SR network through ``ScaleGradient``:
    the SR network gets the full L1 gradient, the flow ``cycle_sr_weight``
    times it (none at 0), on top of its likelihood gradient. The
    discriminator's term is added outside, on ``synth_lr``: kept out of this
    module, its parameters (which this backward must not train) stay out of DDP.
    """

    def __init__(self, flow: DegradationFlow, sr: nn.Module, config: PipelineConfig):
        super().__init__()
        self.flow, self.sr = flow, sr
        self.scale, self.num_bins, self.train_config = config.data.scale, config.flow.dequant_bins, config.train

    def forward(
        self,
        hr: torch.Tensor,
        real_lr: torch.Tensor,
        dequant_noise: torch.Tensor,
        seeds: list[int],
        memory_format: torch.memory_format | None = None,
    ):
        train = self.train_config
        clean_lr = clean_lr_from_hr(hr, self.scale)
        nll_clean, nll_real = domain_bits_per_dim(self.flow, clean_lr, real_lr, self.num_bins, dequant_noise)
        synth_lr = flow_degrade(self.flow, hr, self.scale, train.temperature, seeds)
        sr_input = (
            synth_lr.detach() if train.cycle_sr_weight == 0 else ScaleGradient.apply(synth_lr, train.cycle_sr_weight)
        )
        if memory_format is not None:
            sr_input = sr_input.contiguous(memory_format=memory_format)
        l1 = F.l1_loss(self.sr(sr_input).float(), hr)
        total = (
            l1 + train.nll_weight * (nll_clean + nll_real) + train.content_penalty * self.flow.shift.content_penalty()
        )
        return total, {"l1": l1, "nll_clean": nll_clean, "nll_real": nll_real}, synth_lr, clean_lr


def train_joint(
    config: PipelineConfig,
    out_dir: str | Path,
    flow_ckpt: str | Path | None = None,
    sr_ckpt: str | Path | None = None,
    resume: str | Path | None = None,
    max_steps: int | None = None,
) -> dict[str, float]:
    """Run (or resume) the joint phase from a trained flow and SR network; returns the last monitor values."""
    train, data = config.train, config.data
    world, device = start_process(train)
    if resume is None and (flow_ckpt is None or sr_ckpt is None):
        raise UserError("the joint phase starts from a trained flow and SR network: give both checkpoints")
    if resume is None:
        flow, flow_config = load_flow(flow_ckpt, device)
        # The flow is the checkpoint's: its model settings (how it samples, too) are what this run
        # saves with it and rebuilds on resume, whatever the config's flow section says.
        config = dataclasses.replace(config, flow=flow_config.model)
        sr, sr_config = load_sr(sr_ckpt, device)  # its EMA weights: the better starting point
        for what, path, scale in (
            ("flow", flow_ckpt, flow_config.data.scale),
            ("SR network", sr_ckpt, sr_config.data.scale),
        ):
            if scale != data.scale:
                raise UserError(
                    f"the {what} {path} was trained at x{scale}; the joint phase is asked for x{data.scale}"
                )
    else:
        flow = build_flow(config.flow).to(device)
        sr = build_sr(config.sr, data.scale).to(device)
    memory_format = torch.channels_last if train.channels_last and device.type == "cuda" else None
    sr.to(memory_format=memory_format)
    flow.train()
    sr.train()
    flow_parameters, sr_parameters = list(flow.parameters()), list(sr.parameters())
    ema = EMA(sr, train.ema_decay)
    flow_opt = flow_optimizer(flow, train.flow_lr, train.shift_lr_mult)
    sr_opt = torch.optim.Adam(sr_parameters, lr=train.lr)
    flow_sched, sr_sched = lr_scheduler(flow_opt, train), lr_scheduler(sr_opt, train)
    guard = NonFiniteGuard(train.max_bad_steps)
    # What a checkpoint keeps, saved and restored through this one dict.
    parts = {
        "flow": {"model": flow, "optimizer": flow_opt, "scheduler": flow_sched},
        "sr": {"model": sr, "ema": ema.module, "optimizer": sr_opt, "scheduler": sr_sched},
        "guard": guard,
    }
    discriminator = disc_opt = disc_ddp = None
    if train.adv_weight > 0:
        discriminator = PatchDiscriminator(train.adv_width, train.adv_high_pass_sigma).to(device)
        disc_opt = torch.optim.Adam(discriminator.parameters(), lr=train.adv_lr, betas=(0.5, 0.999))
        disc_ddp = wrap_ddp(discriminator, world, device)  # its own step: real against detached samples
        parts["discriminator"] = {"model": discriminator, "optimizer": disc_opt}
    start_step, rate_changes = 0, []
    if resume is not None:
        state = load_checkpoint(resume, JOINT_KIND, resume=True)
        rate_names = {"flow.scheduler": "train.flow_lr", "sr.scheduler": "train.lr"}
        start_step, rate_changes = resume_parts(state, parts, rate_names, optional=("discriminator",))
        ema.updates = state["sr"]["ema_updates"]
    # A flow loaded from a checkpoint is initialised already (ActNorm): DDP may wrap it at once.
    # Without its likelihood and without an SR loss that reaches its samples, the flow gets no
    # gradient at all: tell DDP so.
    sr_loss_reaches_flow = train.cycle_sr_weight > 0 and flow.sample_latent_shift
    objective = wrap_ddp(
        JointObjective(flow, sr, config),
        world,
        device,
        find_unused_parameters=train.nll_weight == 0 and not sr_loss_reaches_flow,
    )
    if train.compile:
        objective = torch.compile(objective)

    out = open_run(out_dir, config, "joint phase", world, resume, start_step, rate_changes)
    out.log(
        f"joint: cycle_sr_weight={train.cycle_sr_weight} nll_weight={train.nll_weight} "
        f"adv_weight={train.adv_weight} device {device}"
        f"{world.describe(train.batch_size)}"
    )
    if train.cycle_sr_weight > 0 and not flow.sample_latent_shift:
        out.log(
            "note: this flow samples without its latent shift (model.sample_latent_shift false): its samples are "
            "the clean image plus the image noise, which the SR loss fed back (train.cycle_sr_weight) cannot move; "
            "the joint phase trains the SR network (README: the joint phase)"
        )
    elif train.cycle_sr_weight > 0 and not flow.image_noise.is_estimated:
        out.log(
            "note: this flow has no image-noise estimate (trained before 2026-11-30, or with --model.image_noise "
            "false): its noise is the latent shift's, which the SR loss fed back (train.cycle_sr_weight) can shrink; "
            "watch residual_std (README: the joint phase)"
        )
    dataset = UnpairedCrops(
        ImageFolderCache(data.clean_dir, "clean HR folder", min_size=data.crop_size * data.scale, storage=data.storage),
        ImageFolderCache(data.real_dir, "real LR folder", min_size=data.crop_size, storage=data.storage),
        lr_crop_size=data.crop_size,
        scale=data.scale,
        seed=data.seed,
    )
    loader = step_loader(dataset, train.batch_size, start_step, world, device, data.num_workers, data.seed)
    validation = None
    if world.is_main:  # the joint phase logs PSNR only: no LPIPS model to load
        validation = ValidationSet.from_dirs(data.val_lr_dir, data.val_hr_dir, data.scale, with_lpips=False)
    logged = ["nll_clean", "nll_real", "l1", "residual_std"]
    window = LogWindow(logged + (["adv_flow", "adv_disc", "disc_accuracy"] if discriminator else []), device)
    monitor: dict[str, float] = {}

    def checkpoint(step: int) -> None:
        if not world.is_main:
            return
        state = training_state(JOINT_KIND, step, config, parts)
        state["flow"]["config"] = config_to_dict(flow_stage_config(config))
        state["sr"].update(config=config_to_dict(sr_stage_config(config, "")), ema_updates=ema.updates)
        save_training_checkpoint(out.checkpoints, state, train.keep_last)

    end = end_step(start_step, train.n_iter, max_steps)
    with TrainingSteps(loader, start_step, end, train, "joint", world, out, checkpoint, guard) as steps:
        for step, batch in steps:
            hr = batch["hr"].to(device, non_blocking=True)
            real_lr = batch["real_lr"].to(device, non_blocking=True)
            dequant_noise = dequant_noise_batch(batch["dequant_noise"].to(device, non_blocking=True))
            first = loader.sampler.first_sample(step)
            seeds = [noise_seed(data.seed, first + i) for i in range(hr.shape[0])]
            with autocast(device, train.amp):
                total, terms, synth_lr, clean_lr = objective(hr, real_lr, dequant_noise, seeds, memory_format)
                if discriminator is not None:  # CycleSR's GAN term: the samples must pass for real LR
                    terms["adv_flow"] = flow_adversarial_loss(discriminator, synth_lr.float())
                    total = total + train.adv_weight * terms["adv_flow"]
            flow_opt.zero_grad(set_to_none=True)
            sr_opt.zero_grad(set_to_none=True)
            total.backward()  # always, also when non-finite: under DDP every rank must join the all-reduce
            sr_norm = torch.nn.utils.clip_grad_norm_(sr_parameters, train.grad_clip)
            flow_norm = torch.nn.utils.clip_grad_norm_(flow_parameters, train.grad_clip)
            step_ok = guard.ok(total, sr_norm, flow_norm, world=world)
            if step_ok:
                sr_opt.step()
                flow_opt.step()
                ema.update(sr)
            flow_sched.step()
            sr_sched.step()
            if discriminator is not None:
                window.add(**discriminator_step(disc_ddp, disc_opt, real_lr, synth_lr, train.amp, step_ok))
            # How strong the synthesized degradation is (residual_std): a flow that learned to
            # make degradations trivially easy for the SR network shows it here first.
            with torch.no_grad():
                residual_std = (synth_lr - clean_lr).std()
            window.add(residual_std=residual_std, **terms)
            window.step()
            done = steps.done
            if steps.log_point:
                monitor = window.means(world)
                monitor.update(flow.shift.summary(), skipped_steps=guard.total)
                out.scalars({f"joint/{k}": v for k, v in monitor.items()}, done)
                out.log(describe_step(done, train.n_iter, monitor))
                steps.set_postfix(l1=monitor["l1"], real=monitor["nll_real"])
            if validation is not None and steps.every(train.val_every):
                monitor.update(validate(flow, ema.module, validation, train.temperature, data.seed))
                out.scalars({f"joint/{key}": monitor[key] for key in VALIDATION_KEYS}, done)
                out.log(
                    f"[{done:>7}/{train.n_iter}] validation PSNR {monitor['val_psnr']:.3f} dB; the flow on the "
                    f"validation pairs: residual std {monitor['val_synth_residual_std'] * 255:.2f}/255 "
                    f"(real {monitor['val_real_residual_std'] * 255:.2f}), Frechet 8x8 {monitor['val_frechet_8x8']:.0f}"
                )
            if world.is_main and (done % train.sample_every == 0 or done == train.n_iter):
                out.image("joint/samples", sample_figure(flow, clean_lr, real_lr), done)
    return monitor


VALIDATION_KEYS = ("val_psnr", "val_synth_residual_std", "val_real_residual_std", "val_frechet_8x8")


def validate(
    flow: DegradationFlow, sr: nn.Module, validation: ValidationSet, temperature: float, seed: int
) -> dict[str, float]:
    """SR PSNR on the validation pairs, and the flow's degradations against theirs (the flow back in training mode)."""
    flow.eval()
    fidelity = paired_fidelity(flow, validation.pairs, validation.scale, temperature, seed)
    flow.train()
    return {"val_psnr": validation.psnr(sr), **{f"val_{key}": value for key, value in fidelity.items()}}


def describe_step(done: int, n_iter: int, monitor: dict[str, float]) -> str:
    """The log line of a joint log point."""
    line = (
        f"[{done:>7}/{n_iter}] l1={monitor['l1']:.5f} nll_clean={monitor['nll_clean']:.4f} "
        f"nll_real={monitor['nll_real']:.4f} residual_std={monitor['residual_std'] * 255:.2f}/255 "
        f"{monitor['steps_per_s']:.2f} steps/s skipped={monitor['skipped_steps']:.0f}"
    )
    if "disc_accuracy" in monitor:
        line += f" disc_acc={monitor['disc_accuracy']:.2f} adv_flow={monitor['adv_flow']:.3f}"
    return line
