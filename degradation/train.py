"""Train the degradation flow alone on unpaired clean HR photos and real LR images.

    python -m degradation.train --config configs/deflow_light.yaml \\
        --data.clean_dir HR_DIR --data.real_dir REAL_LR_DIR --output RUN_DIR

HR crops become clean LR on the training device (MATLAB bicubic, then 8-bit
rounding, as a saved LR image would be); real LR crops come from other images.
The loss is the sum of both domains' bits/dim. ``--resume CKPT`` continues to
``train.n_iter`` (not beyond). Any config field can be overridden as
``--section.key value``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from unpaired_sr.common.checkpoint import FLOW_KIND, load_checkpoint, save_training_checkpoint
from unpaired_sr.common.config import config_from_dict
from unpaired_sr.common.distributed import Distributed, all_gather_cat, wrap_ddp
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.common.training import (
    LogWindow,
    NonFiniteGuard,
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
from unpaired_sr.data_tools.datasets import ImageFolderCache, UnpairedCrops, dequant_noise_batch, step_loader
from unpaired_sr.degradation.adversarial import (
    PatchDiscriminator,
    discriminator_step,
    flow_adversarial_loss,
    quantize_8bit,
)
from unpaired_sr.degradation.aliasing import MAX_IMAGES, estimate_aliasing, hr_batches
from unpaired_sr.degradation.blur import (
    CLEAR_BLUR,
    CLEAR_BOOST,
    LOCAL_CONTRAST_SIGMA,
    clearly_blurred,
    estimate_blur,
    estimate_chroma_blur,
    estimate_local_contrast,
    estimate_sharpening,
)
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.compression import estimate_equivalent_jpeg, estimate_jpeg
from unpaired_sr.degradation.config import FlowConfig, FlowModelConfig, FlowTrainConfig
from unpaired_sr.degradation.flow import (
    DegradationFlow,
    FlowObjective,
    count_parameters,
    domain_bits_per_dim,
    flow_optimizer,
)
from unpaired_sr.degradation.moments import DetailMoments
from unpaired_sr.degradation.noise import (
    NoiseEstimate,
    estimate_coarse_noise,
    estimate_noise,
    estimation_sets,
    estimation_side,
    noisy_copies,
    spread_evenly,
    training_lr_sets,
)
from unpaired_sr.degradation.samples import sample_figure
from unpaired_sr.degradation.veil import CLEAR_VEIL, apply_veil, estimate_veil


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


def noise_estimate(model: FlowModelConfig, clean_lr: list[np.ndarray], real_lr: list[np.ndarray]) -> NoiseEstimate:
    """The image noise of ``real_lr`` beyond ``clean_lr`` (``estimate_noise``), read as ``model`` says."""
    return estimate_noise(
        clean_lr,
        real_lr,
        quiet_fraction=model.image_noise_quiet_fraction,
        against_clean=model.image_noise_against_clean,
        unclipped=model.image_noise_unclipped,
        real_floor=model.image_noise_real_floor if model.image_noise_against_clean else 0.0,
    )


def estimate_image_degradations(
    flow: DegradationFlow, model: FlowModelConfig, dataset: UnpairedCrops, scale: int
) -> Iterator[str]:
    """Load the blur, the compression and the noise estimated from the training sets into ``flow``; yields the
    log lines as each estimate is made (a large set takes a while)."""
    # A square of each image at most: the estimates need statistics, not whole photos.
    clean_side, real_side = (estimation_side(len(folder.images)) for folder in (dataset.clean_hr, dataset.real_lr))
    clean_images, real_images = estimation_sets(dataset.clean_hr.images, dataset.real_lr.images, scale)
    clean_lr, real_lr = training_lr_sets(clean_images, real_images, scale)
    yield (
        f"estimating the real images' degradations from {len(clean_lr)} clean and {len(real_lr)} real images "
        f"(at most {clean_side}x{clean_side} and {real_side}x{real_side} LR px of each)"
    )
    veil = estimate_veil(clean_lr, real_lr)
    veil_reason = f"the real images {'are' if veil.clear else 'are not'} veiled by {CLEAR_VEIL:g}+"
    veiled, veil_why = _auto_option("image_veil", model.image_veil, veil.clear, veil_reason)
    veiled = veiled and veil.veil > 0
    yield f"{veil.describe()}, {'applied to samples' if veiled else 'not applied'} {veil_why}"
    if veiled:
        flow.image_veil.load_estimate(veil.veil)
    # The estimates below read the real images against the clean ones as samples start from: veiled.
    veiled_lr = [_as_veiled(flow, image) for image in clean_lr] if veiled else clean_lr
    # The blur is measured (and logged) either way: a cheap look at how blurred the real images are.
    sigma, per_orientation = estimate_blur(veiled_lr, real_lr)
    blurred = clearly_blurred(per_orientation)
    blur_reason = (
        f"the real images {'are' if blurred else 'are not'} blurred by {CLEAR_BLUR}+ LR px at every orientation"
    )
    orientations = "/".join(f"{value:.2f}" for value in per_orientation)
    if np.isnan(per_orientation).all():
        yield "image blur not measured: too few strong edges in the images"
    else:
        apply_blur, why = _auto_option("image_blur", model.image_blur, blurred, blur_reason)
        applied = "applied to samples" if apply_blur else "not applied"
        yield f"image blur {sigma:.2f} LR px (Gaussian sigma; per edge orientation {orientations}), {applied} {why}"
        if apply_blur:
            flow.image_blur.load_estimate(sigma)
    jpeg = estimate_jpeg(real_lr)
    apply_compression, compression_why = _auto_option(
        "image_compression", model.image_compression, blurred, blur_reason
    )
    if not jpeg.qualities:
        yield jpeg.describe()
    elif apply_compression:
        flow.image_compression.load_estimate(jpeg)
        yield f"{jpeg.describe()}: samples are compressed in that proportion, at those qualities {compression_why}"
    else:
        yield f"{jpeg.describe()}: not applied {compression_why}"
    texture_estimate = None  # loaded last: the calibrations below were made and measured with the Gaussian noise
    if model.image_noise:
        try:
            estimate = noise_estimate(model, veiled_lr, real_lr)
        except ValueError as error:
            raise UserError(f"{error}; or train without it: --model.image_noise false") from error
        flow.image_noise.load_estimate(estimate)
        reading = (
            "" if model.image_noise_against_clean else ", the real set alone (model.image_noise_against_clean false)"
        )
        if model.image_noise_unclipped:
            reading += ", from patches not clipped at black or white (model.image_noise_unclipped)"
        if model.image_noise_quiet_fraction != FlowModelConfig.image_noise_quiet_fraction:
            share = f"{100 * model.image_noise_quiet_fraction:g}%"
            reading += f", from each bin's quietest {share} of patches (model.image_noise_quiet_fraction)"
        if model.image_noise_against_clean and model.image_noise_real_floor != FlowModelConfig.image_noise_real_floor:
            reading += f", real floor {model.image_noise_real_floor:g} (model.image_noise_real_floor)"
        if model.image_noise_texture == "patches":
            texture_estimate = estimate
        yield f"image noise {estimate.describe()}{reading}"
        if model.image_coarse_noise and flow.image_noise.is_estimated:
            coarse = estimate_coarse_noise(veiled_lr, real_lr, flow.image_noise)
            flow.image_coarse_noise.load_estimate(coarse)
            yield f"image coarse noise (2x2 px averaged) {coarse.describe()}"
    # Measured (and logged) either way, against the clean images with the image noise where there is one.
    add_noise = (
        partial(noisy_copies, flow.image_noise, coarse=flow.image_coarse_noise)
        if flow.image_noise.is_estimated
        else list
    )
    clean_hr = hr_batches(spread_evenly(clean_images, MAX_IMAGES), scale)
    aliasing = estimate_aliasing(clean_hr, real_lr, scale, add_noise)
    if np.isfinite(aliasing.excess).all():
        reason = f"the real images {'alias' if aliasing.clear else 'do not alias'} clearly along either axis"
        apply_aliasing, why = _auto_option("image_aliasing", model.image_aliasing, aliasing.clear, reason)
        apply_aliasing = apply_aliasing and aliasing.sigmas != (None, None)
        applied = "applied to samples" if apply_aliasing else "not applied"
        if apply_aliasing and model.image_aliasing_phase == "random":
            applied += ", each on a grid of its own phase (model.image_aliasing_phase random)"
        yield f"{aliasing.describe()}; {applied} {why}"
        if apply_aliasing:
            flow.image_downscale.load_estimate(aliasing.sigmas, random_phase=model.image_aliasing_phase == "random")
            clean_lr = [
                flow.downscale(hr, scale)[0].permute(1, 2, 0).cpu().numpy() for hr in clean_hr
            ]  # the sharpening and the chroma blur are read against the images as samples start from
            veiled_lr = [_as_veiled(flow, image) for image in clean_lr] if veiled else clean_lr
    else:
        yield aliasing.describe()
    amount, per_orientation = estimate_sharpening(veiled_lr, real_lr, add_noise)
    if np.isnan(per_orientation).all():
        yield "image sharpening not measured: too few strong edges in the images"
    else:
        orientations = "/".join(f"{value:.2f}" for value in per_orientation)
        applied = "applied to samples" if model.image_sharpening else "not applied (model.image_sharpening false)"
        yield f"image sharpening {amount:.2f} (unsharp amount, the least of {orientations}), {applied}"
        if model.image_sharpening:
            flow.image_blur.load_sharpening(amount)
    # Against the clean images as samples start from: blurred and sharpened as estimated above (and boosted,
    # once the boost below is loaded).
    prepared = _as_samples_start(flow, clean_lr)
    yield from _estimate_local_contrast(flow, model, prepared, real_lr, add_noise)
    if flow.image_blur.boost > 0:
        prepared = _as_samples_start(flow, clean_lr)
    if not jpeg.qualities:
        # No JPEG lattice: another codec, or a JPEG resized since, may still have taken the detail away.
        equivalent = estimate_equivalent_jpeg(prepared, real_lr, add_noise)
        apply_matched, matched_why = _auto_option(
            "image_matched_compression", model.image_matched_compression, blurred, blur_reason
        )
        if model.image_compression is False:  # no compression at all
            apply_matched, matched_why = False, "(model.image_compression false)"
        if not equivalent.qualities:
            yield equivalent.describe()
        elif apply_matched:
            flow.image_compression.load_estimate(equivalent.as_jpeg_estimate())
            yield f"{equivalent.describe()}: samples are compressed at those qualities {matched_why}"
        else:
            yield f"{equivalent.describe()}: not applied {matched_why}"
    chroma_sigma = estimate_chroma_blur(prepared, real_lr)
    if np.isnan(chroma_sigma):
        yield "image chroma blur not measured: too few colour edges in the images"
    else:
        # Off by default (it cost SR PSNR: README, fidelity), measured and logged either way. auto: on the
        # samples their JPEG leaves uncompressed, since a JPEG round trip subsamples the colour itself.
        compressed = flow.image_compression.is_estimated
        uncompressed_only = model.image_chroma_blur == "auto" and compressed
        if uncompressed_only:
            apply, share = True, flow.image_compression.probabilities[0]
            applied = f"applied to the samples left uncompressed ({share:.0%})"
            why = "(model.image_chroma_blur auto: the others' JPEG subsamples their colour)"
        else:
            reason = "the samples are not JPEG-compressed"
            apply, why = _auto_option("image_chroma_blur", model.image_chroma_blur, True, reason)
            applied = "applied to samples" if apply else "not applied"
        yield f"image chroma blur {chroma_sigma:.2f} LR px (Gaussian sigma on Cb and Cr), {applied} {why}"
        if apply:
            flow.image_blur.load_chroma_blur(chroma_sigma, uncompressed_only)
    if texture_estimate is not None:
        # For the samples only: the coarse noise, the aliasing, the sharpening and the matched codec above are
        # read against clean images with the Gaussian noise added, as they were designed. With the patches
        # added there instead, `actioncam`'s sharpening read 0.89, not 1.06, and its SR lost 0.18 dB (README,
        # fidelity, thirty-third round).
        flow.image_noise.load_texture(texture_estimate)
        yield (
            f"image noise texture: {len(texture_estimate.texture)} real quiet patches (model.image_noise_texture "
            "patches), for the samples; the estimates above were calibrated with the Gaussian noise"
        )


def _estimate_local_contrast(
    flow: DegradationFlow,
    model: FlowModelConfig,
    prepared: list[np.ndarray],
    real_lr: list[np.ndarray],
    add_noise: Callable[[list[np.ndarray]], list[np.ndarray]],
) -> Iterator[str]:
    """Load the local contrast boost into ``flow`` where it applies (``prepared``: the clean images as samples
    start from); yields its log line."""
    boost = estimate_local_contrast(prepared, real_lr, add_noise)
    if np.isnan(boost):
        yield "image local contrast not measured: too few isolated steps in the images"
        return
    clear = boost >= CLEAR_BOOST
    reason = f"the real images {'are' if clear else 'are not'} boosted by {CLEAR_BOOST}+"
    apply, why = _auto_option("image_local_contrast", model.image_local_contrast, clear, reason)
    applied = "applied to samples" if apply and boost > 0 else "not applied"
    yield (
        f"image local contrast {boost:.2f} (detail above a Gaussian of {LOCAL_CONTRAST_SIGMA:g} LR px boosted by "
        f"1+{boost:.2f}), {applied} {why}"
    )
    if apply:
        flow.image_blur.load_local_contrast(boost)


def _as_veiled(flow: DegradationFlow, clean_lr: np.ndarray) -> np.ndarray:
    """``clean_lr`` (H, W, 3 float array) under the flow's veil, rounded to 8 bits as ``prepare_clean`` rounds."""
    return np.round(apply_veil(clean_lr, flow.image_veil.veil) * 255) / 255


def _as_samples_start(flow: DegradationFlow, clean_lr: list[np.ndarray]) -> list[np.ndarray]:
    """``clean_lr`` (H, W, 3 float arrays) as the flow's samples start from them (``prepare_clean``)."""
    device = flow.image_blur.chroma_sigma_lr_px.device
    prepared = [
        flow.prepare_clean(
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
        )
        for image in clean_lr
    ]
    return [image[0].permute(1, 2, 0).cpu().numpy() for image in prepared]


def _auto_option(name: str, setting: bool | str, auto: bool, reason: str) -> tuple[bool, str]:
    """Whether the option ``model.name`` applies (``auto`` decides for "auto"), and why, for the log."""
    if setting != "auto":
        return bool(setting), f"(model.{name} {str(setting).lower()})"
    return auto, f"(model.{name} auto: {reason})"


def critic_terms(
    samples: torch.Tensor,
    discriminator: PatchDiscriminator | None,
    moments: DetailMoments | None,
    train: FlowTrainConfig,
    window: LogWindow,
) -> torch.Tensor:
    """The losses by which the critics pull the flow's 8-bit ``samples`` towards the real set."""
    loss = torch.zeros((), device=samples.device)
    if discriminator is not None:
        adv_flow = flow_adversarial_loss(discriminator, samples)
        loss = loss + train.adv_weight * adv_flow
        window.add(adv_flow=adv_flow)
    if moments is not None:
        detail_stats = moments(samples)
        loss = loss + train.stats_weight * detail_stats
        window.add(detail_stats=detail_stats)
    return loss


def describe_step(done: int, n_iter: int, monitor: dict[str, float]) -> str:
    """The log line of a flow log point."""
    line = (
        f"[{done:>7}/{n_iter}] nll_clean={monitor['nll_clean']:.4f} nll_real={monitor['nll_real']:.4f} bits/dim  "
        f"|mu_u|={monitor['mean_abs_mu_u']:.4f} sigma_u={monitor['mean_sigma_u']:.4f} "
        f"a={monitor['mean_content_scale']:.3f} lr={monitor['lr']:.2e} {monitor['steps_per_s']:.2f} steps/s "
        f"skipped={monitor['skipped_steps']:.0f}"
    )
    if "disc_accuracy" in monitor:
        line += f" disc_acc={monitor['disc_accuracy']:.2f} adv_flow={monitor['adv_flow']:.3f}"
    if "detail_stats" in monitor:
        line += f" detail_stats={monitor['detail_stats']:.4f}"
    return line


def train(
    config: FlowConfig, out_dir: str | Path, resume: str | Path | None = None, max_steps: int | None = None
) -> dict[str, float]:
    """Train (or resume) the flow; returns the last monitor values. ``max_steps`` caps this call's steps."""
    train, scale, crop = config.train, config.data.scale, config.data.crop_size
    if not config.data.clean_dir or not config.data.real_dir:
        raise UserError("set both --data.clean_dir (HR photos) and --data.real_dir (real LR images)")
    if not config.model.sample_latent_shift and not config.model.image_noise:
        raise UserError(
            "model.sample_latent_shift false needs model.image_noise true: the samples would have no degradation"
        )
    world, device = start_process(train)
    cpu_layout = train.channels_last and device.type == "cpu"
    memory_format = torch.channels_last if cpu_layout else torch.contiguous_format
    flow = build_flow(config.model, seed=train.seed).to(device, memory_format=memory_format)
    if crop % flow.size_multiple:
        raise UserError(
            f"data.crop_size must be a multiple of {flow.size_multiple} for {config.model.num_levels} levels, "
            f"got {crop}"
        )
    optimizer = flow_optimizer(flow, train.lr, train.shift_lr_mult)
    scheduler = lr_scheduler(optimizer, train)
    guard = NonFiniteGuard(train.max_bad_steps)
    discriminator = disc_optimizer = disc_ddp = moments = None
    if train.adv_weight > 0:
        discriminator = PatchDiscriminator(train.adv_width, train.adv_high_pass_sigma).to(device)
        disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=train.adv_lr, betas=(0.5, 0.999))
    if train.stats_weight > 0:
        moments = DetailMoments(flat_only=train.stats_flat_only).to(device)
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
        start_step, rate_changes = resume_parts(state, parts, {"scheduler": "train.lr"}, optional=critics)
    if discriminator is not None:
        disc_ddp = wrap_ddp(discriminator, world, device)

    out = open_run(out_dir, config, "degradation flow", world, resume, start_step, rate_changes)
    out.log(
        f"flow: {count_parameters(flow) / 1e6:.2f}M parameters, L={config.model.num_levels} "
        f"K={config.model.num_steps}, device {device}{world.describe(train.batch_size)}"
    )
    storage = config.data.storage
    dataset = UnpairedCrops(
        ImageFolderCache(config.data.clean_dir, "clean HR folder", min_size=crop * scale, storage=storage),
        ImageFolderCache(config.data.real_dir, "real LR folder", min_size=crop, storage=storage),
        lr_crop_size=crop,
        scale=scale,
        seed=config.data.seed,
        content_candidates=config.data.content_candidates,
    )
    if resume is None:
        # Every rank estimates from the same images, so all hold the same estimates without a broadcast.
        for line in estimate_image_degradations(flow, config.model, dataset, scale):
            out.log(line)
    loader = step_loader(
        dataset, train.batch_size, start_step, world, device, config.data.num_workers, config.data.seed
    )
    logged = ["nll_clean", "nll_real"] + (["adv_flow", "adv_disc", "disc_accuracy"] if discriminator else [])
    window = LogWindow(logged + (["detail_stats"] if moments is not None else []), device)
    num_samples = min(train.adv_batch, train.batch_size) if discriminator or moments else 0
    monitor: dict[str, float] = {}
    objective = None
    flow.train()

    def checkpoint(step: int) -> None:
        if world.is_main:
            save_training_checkpoint(out.checkpoints, training_state(FLOW_KIND, step, config, parts), train.keep_last)

    end = end_step(start_step, train.n_iter, max_steps)
    with TrainingSteps(loader, start_step, end, train, "flow", world, out, checkpoint, guard) as steps:
        for step, batch in steps:
            if objective is None:  # first step of this call: finish setting up the model
                if start_step == 0:
                    initialize_actnorm(flow, batch, scale, config.model.dequant_bins, world, device)
                objective = FlowObjective(flow, config.model.dequant_bins, train.content_penalty)
                objective = wrap_ddp(objective, world, device, broadcast_buffers=False)
                if train.compile:
                    objective = torch.compile(objective)
            hr = batch["hr"].to(device, non_blocking=True, memory_format=memory_format)
            real_lr = batch["real_lr"].to(device, non_blocking=True, memory_format=memory_format)
            dequant_noise = dequant_noise_batch(batch["dequant_noise"].to(device, non_blocking=True))
            dequant_noise = dequant_noise.contiguous(memory_format=memory_format)
            clean_lr = clean_lr_from_hr(hr, scale)
            if moments is not None:
                moments.update(real_lr)
            with autocast(device, train.amp):
                loss, nll_clean, nll_real, samples = objective(
                    clean_lr, real_lr, dequant_noise, num_samples, train.adv_temperature
                )
                if samples is not None:
                    samples = quantize_8bit(samples.float())
                    if step >= train.adv_start:
                        loss = loss + critic_terms(samples, discriminator, moments, train, window)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # always, also for a non-finite loss: under DDP every rank must join the all-reduce
            grad_norm = torch.nn.utils.clip_grad_norm_(flow.parameters(), train.grad_clip)
            step_ok = guard.ok(loss, grad_norm, world=world)
            if step_ok:
                optimizer.step()
            scheduler.step()
            if samples is not None and discriminator is not None:
                window.add(
                    **discriminator_step(disc_ddp, disc_optimizer, real_lr[:num_samples], samples, train.amp, step_ok)
                )
            window.add(nll_clean=nll_clean, nll_real=nll_real)
            window.step()
            if steps.log_point:
                monitor = window.means(world)
                monitor.update(flow.shift.summary(), lr=scheduler.get_last_lr()[0], skipped_steps=guard.total)
                out.scalars({f"flow/{k}": v for k, v in monitor.items()}, steps.done)
                out.log(describe_step(steps.done, train.n_iter, monitor))
                steps.set_postfix(clean=monitor["nll_clean"], real=monitor["nll_real"])
            if world.is_main and (steps.done % train.sample_every == 0 or steps.done == train.n_iter):
                out.image("flow/samples", sample_figure(flow, flow.downscale(hr, scale), real_lr), steps.done)
    return monitor


main = training_command(prog="python -m degradation.train", doc=__doc__, schema=FlowConfig, kind=FLOW_KIND, train=train)

if __name__ == "__main__":
    main()
