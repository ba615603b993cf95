"""DeFlow-lite: a multi-scale conditional normalizing flow between LR images and latents.

Level ``l`` (of ``num_levels``) is: squeeze, then ``num_steps`` x (ActNorm,
invertible 1x1 conv, conditional affine coupling), then a split whose learned
conditional prior standardises half of the channels (all of them at the last
level). Each level thus emits one latent of shape ``(C_l, H / 2^(l+1), W / 2^(l+1))``
that is N(0, I) for clean images; ``prior.DomainShift`` says how real ones differ.

    flow = DegradationFlow(num_levels=2, num_steps=8)
    latents, logdet = flow.encode(lr)               # lr in [0, 1], (B, 3, H, W)
    lr_again = flow.decode(latents, flow.condition(lr))
    synth_lr = flow.degrade(clean_lr, temperature=0.8)
    synth_lr = flow.degrade(flow.downscale(hr, scale=4))  # from HR: decimated where the real images alias
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.degradation.aliasing import ImageDownscale
from unpaired_sr.degradation.blur import ImageBlur
from unpaired_sr.degradation.compression import ImageCompression
from unpaired_sr.degradation.encoder import LOW_PASS_FACTOR, ConditionEncoder
from unpaired_sr.degradation.layers import (
    ActNorm,
    ConditionalAffineCoupling,
    ConditionalGaussianize,
    InvertibleConv1x1,
    Squeeze,
)
from unpaired_sr.degradation.noise import COARSE, PATCH, ImageNoise, coarse_image_noise, coarse_white_shape
from unpaired_sr.degradation.prior import DomainShift
from unpaired_sr.degradation.veil import ImageVeil


def bits_per_dim(log_likelihood: torch.Tensor, num_dims: int, num_bins: int) -> torch.Tensor:
    """Bits per dimension of a discrete image from the log-density of its dequantized version.

    With uniform dequantization over bins of width ``1 / num_bins`` on [0, 1],
    ``log P(image) >= log p(x) - num_dims * log(num_bins)``; bits/dim is
    ``-log P / (num_dims * log 2)``.
    """
    return -(log_likelihood - num_dims * math.log(num_bins)) / (num_dims * math.log(2))


def dequantize(image: torch.Tensor, num_bins: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Add uniform noise of one bin's width: ``noise / num_bins`` with ``noise ~ U(-0.5, 0.5)`` (drawn if not given)."""
    if noise is None:
        noise = torch.rand_like(image) - 0.5
    return image + noise.to(image.dtype) / num_bins


class DegradationFlow(nn.Module):
    """The conditional flow and the learned domain shift.

    Args:
        num_levels: L, the number of squeeze/split levels.
        num_steps: K, flow steps per level.
        hidden_channels: width of the coupling and prior subnets.
        cond_channels: width of the conditioning features.
        cond_blocks: residual blocks of the conditioning encoder.
        scale_bound: coupling log-scales are soft-clamped to (-bound, bound).
        conditional_shift: let the domain shift depend on local content (signal-dependent noise).
        cond_noise: std of the noise added to the conditioning image in training (0: none).
        keep_low_pass_sigma: ``degrade`` keeps the clean image's content below this scale (Gaussian
            sigma in LR pixels; 0: off). Noise, blur and compression leave a scene's colours and
            brightness alone, but a latent mean shift also learns how two *unpaired* photo sets
            differ in content (one bluer, one darker) and would paint that onto every sample.
        sees_image: the couplings and split priors see the image's own (other-half) channels, as
            in Glow. False: they see the condition only, so that given its low-pass content the
            flow is affine in the image and both domains are Gaussians whose difference the
            domain shift must carry: a flow that sees the image learns to normalise the real
            noise itself (it can tell noise from the image it sits on), and what the shift then
            adds is squashed wherever clean images are smooth.
        clean_only_flow: the flow and its condition learn from clean images only; real images
            train the domain shift alone. Trained on both, the flow can learn to map real images to
            near-standard latents itself (from their noise, or from a condition that reveals the
            domain), and the shift is left with little to carry.
        sample_latent_shift: ``degrade`` moves the clean image's latents by the domain shift.
            False: with an image-noise estimate, samples are the clean image plus that noise;
            the flow is then a model of the two domains that the samples do not use.
        in_channels: image channels (3).
        seed: seeds the random parts of the initialisation (1x1 rotations, M).
    """

    def __init__(
        self,
        num_levels: int = 2,
        num_steps: int = 8,
        hidden_channels: int = 64,
        cond_channels: int = 32,
        cond_blocks: int = 2,
        scale_bound: float = 1.0,
        in_channels: int = 3,
        conditional_shift: bool = False,
        cond_noise: float = 0.0,
        keep_low_pass_sigma: float = 0.0,
        sees_image: bool = True,
        clean_only_flow: bool = False,
        sample_latent_shift: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if num_levels < 1 or num_steps < 1:
            raise ValueError(f"need at least one level and one step, got L={num_levels}, K={num_steps}")
        generator = torch.Generator().manual_seed(seed)
        self.num_levels, self.in_channels = num_levels, in_channels
        self.keep_low_pass_sigma, self.clean_only_flow = keep_low_pass_sigma, clean_only_flow
        self.sample_latent_shift = sample_latent_shift
        self.encoder = ConditionEncoder(num_levels, cond_channels, cond_blocks, in_channels, noise_std=cond_noise)
        self.levels = nn.ModuleList()
        level_channels = []
        channels = in_channels
        for level in range(num_levels):
            channels *= 4
            layers: list[nn.Module] = [Squeeze()]
            for _ in range(num_steps):
                layers += [
                    ActNorm(channels),
                    InvertibleConv1x1(channels, generator),
                    ConditionalAffineCoupling(channels, cond_channels, hidden_channels, scale_bound, sees_image),
                ]
            kept = 0 if level == num_levels - 1 else channels // 2
            layers.append(ConditionalGaussianize(channels, kept, cond_channels, hidden_channels, sees_image))
            self.levels.append(nn.ModuleList(layers))
            level_channels.append(channels - kept)
            channels = kept
        self.level_channels = level_channels
        self.shift = DomainShift(level_channels, cond_channels if conditional_shift else 0, seed=seed)
        # Estimated from the training images, not learned (degradation/noise.py, degradation/blur.py,
        # degradation/aliasing.py); zero (no noise, no blur, bicubic) until then.
        self.image_downscale = ImageDownscale()
        self.image_noise = ImageNoise()
        self.image_coarse_noise = ImageNoise()  # the same at half resolution, upsampled: larger blotches
        self.image_blur = ImageBlur()
        self.image_veil = ImageVeil()  # stray light over the whole frame (degradation/veil.py)
        # JPEG read off the real images (degradation/compression.py): applied to whole samples, between
        # degrade_parts()' content and its noise (tiles would each get their own block grid), by synthesize().
        self.image_compression = ImageCompression()

    def downscale(self, hr: torch.Tensor, scale: int, seeds: list[int] | None = None) -> torch.Tensor:
        """HR (B, 3, H, W), H and W multiples of ``scale`` -> the LR that samples start from, 8-bit: the bicubic
        clean LR, or, where the real images alias (``image_downscale``), the HR point-sampled after a light blur
        (on a grid shifted by each sample's own phase, drawn from ``seeds``, where the phase is random)."""
        return self.image_downscale(hr, scale, seeds)

    def prepare_clean(self, clean_lr: torch.Tensor, seeds: list[int] | None = None) -> torch.Tensor:
        """Clean LR as this flow models it: veiled, blurred or sharpened as estimated, clipped and rounded to 8
        bits, as a saved image would be (unchanged without an estimate).

        ``seeds``: those the caller will compress the samples with (``image_compression``); a chroma blur meant
        only for samples left uncompressed then goes to those alone. None: the caller does not compress.
        """
        if self.image_blur.is_identity and self.image_veil.is_identity:
            return clean_lr
        chroma_mask = None
        if seeds is not None and self.image_blur.chroma_where_uncompressed:
            chroma_mask = torch.tensor([quality == 0 for quality in self.image_compression.draw(seeds)])
        with torch.no_grad():
            prepared = self.image_blur(self.image_veil(clean_lr), chroma_mask)
            return torch.round(prepared.clamp(0, 1) * 255) / 255

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this."""
        return max(2**self.num_levels, LOW_PASS_FACTOR)

    def check_size(self, image: torch.Tensor) -> None:
        multiple = self.size_multiple
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(image.shape)}")
        if image.shape[2] % multiple or image.shape[3] % multiple:
            raise ValueError(f"image size {tuple(image.shape[2:])} must be a multiple of {multiple} for this flow")

    def condition(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Conditioning features for each level, from the image's low-pass version."""
        self.check_size(image)
        return self.encoder(image)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(C_l, H_l, W_l)`` of each level's latent for an image of ``height`` x ``width``."""
        return [(c, height // 2 ** (i + 1), width // 2 ** (i + 1)) for i, c in enumerate(self.level_channels)]

    def encode(self, image: torch.Tensor, cond: list[torch.Tensor] | None = None):
        """Image in [0, 1] -> (list of level latents, logdet of shape (B,))."""
        self.check_size(image)
        cond = self.condition(image) if cond is None else cond
        x = image - 0.5
        logdet = image.new_zeros(image.shape[0])
        latents = []
        for layers, level_cond in zip(self.levels, cond):
            for layer in layers:
                x, layer_logdet = layer(x, level_cond)
                logdet = logdet + layer_logdet
            kept = layers[-1].num_kept
            latents.append(x[:, kept:])
            x = x[:, :kept]
        return latents, logdet

    def decode(self, latents: list[torch.Tensor], cond: list[torch.Tensor]) -> torch.Tensor:
        """Level latents -> image (not clamped; [0, 1] for in-distribution latents)."""
        if len(latents) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} latents, got {len(latents)}")
        x = latents[-1][:, :0]
        for layers, level_cond, eps in zip(reversed(self.levels), reversed(cond), reversed(latents)):
            x = torch.cat([x, eps], dim=1)
            for layer in reversed(layers):
                x, _ = layer.inverse(x, level_cond)
        return x + 0.5

    def log_likelihood(self, image: torch.Tensor, real: bool) -> torch.Tensor:
        """log p(image) per sample under the clean or the real domain, shape (B,)."""
        cond = self.condition(image)
        latents, logdet = self.encode(image, cond)
        return self.shift.log_prob(latents, real=real, cond=cond) + logdet

    def noise_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """Shapes of the noise ``degrade`` uses: each level's latent, then the white field of the image noise
        (and that of the coarse image noise, where one is estimated)."""
        margin = PATCH - 1  # the image noise is a valid convolution of a slightly larger white field
        shapes = [*self.latent_shapes(height, width), (self.in_channels, height + margin, width + margin)]
        if self.image_coarse_noise.is_estimated:
            shapes.append(coarse_white_shape(1, height, width)[1:])
        return shapes

    def sample_noise(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """Standard normal noise of ``noise_shapes`` (drawn on ``generator``'s device, then moved)."""
        return [
            torch.randn((batch, *shape), generator=generator).to(device) for shape in self.noise_shapes(height, width)
        ]

    def crop_noise(self, noise: list[torch.Tensor], top: int, left: int, height: int, width: int) -> list[torch.Tensor]:
        """The part of a whole image's noise that a ``height`` x ``width`` tile at (top, left) uses.

        A tile degraded with it gets the same image noise as that region of the
        whole image, and the same latent noise. ``top`` and ``left`` must be
        multiples of ``size_multiple``.
        """
        tiles = []
        for level, level_noise in enumerate(noise[: self.num_levels]):
            factor = 2 ** (level + 1)
            tiles.append(
                level_noise[:, :, top // factor : (top + height) // factor, left // factor : (left + width) // factor]
            )
        white = noise[self.num_levels]
        tiles.append(white[:, :, top : top + height + PATCH - 1, left : left + width + PATCH - 1])
        if len(noise) > self.num_levels + 1:  # the coarse field, at half resolution
            _, _, half_h, half_w = coarse_white_shape(1, height, width)
            half_top, half_left = top // COARSE, left // COARSE
            tiles.append(noise[-1][:, :, half_top : half_top + half_h, half_left : half_left + half_w])
        return tiles

    def degrade(
        self,
        clean_lr: torch.Tensor,
        temperature: float = 1.0,
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        seeds: list[int] | None = None,
    ) -> torch.Tensor:
        """Clean LR (B, 3, H, W) in [0, 1] -> a synthesized real-looking LR (not clamped), uncompressed: the sum of
        ``degrade_parts`` (``noise``: ``sample_noise``'s, drawn on ``generator`` when None). A sample compressed
        as the real images are takes the two parts apart instead: ``synthesize`` compresses the content, then adds
        the noise."""
        if noise is None:
            noise = self.sample_noise(
                clean_lr.shape[0], *clean_lr.shape[2:], generator=generator, device=clean_lr.device
            )
        content, image_noise = self.degrade_parts(clean_lr, noise, temperature, seeds)
        return content + image_noise

    def degrade_parts(
        self,
        clean_lr: torch.Tensor,
        noise: list[torch.Tensor],
        temperature: float = 1.0,
        seeds: list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean LR (B, 3, H, W) in [0, 1] -> a synthesized real-looking LR in two parts (neither clamped): what
        the degradation does to the content, and the image noise that goes on top.

        Encode the clean image, move its latents to the real domain
        (``mu + a * eps + temperature * M noise``), decode with the clean
        image's condition, and put back the clean image's low-pass content (see
        ``keep_low_pass_sigma``). With an image-noise estimate (the default for
        a flow trained by this version), the latents move without fresh noise
        (the flow keeps what it does to the content: blur, compression, casts)
        and the noise is the estimated image noise at ``temperature``; without
        ``sample_latent_shift`` the latents are left alone and the content is
        the clean image. The second part is that noise (and the coarse colour
        noise, where one is estimated); zero for a flow without an image-noise
        estimate, whose latent noise is in the first. Differentiable with
        respect to the flow's parameters. The clean image is first blurred by
        the estimated blur (``prepare_clean``; ``seeds``: those the caller
        compresses the samples with, if it does).
        """
        clean_lr = self.prepare_clean(clean_lr, seeds)
        image_noise = self.image_noise.is_estimated
        if not self.sample_latent_shift and not image_noise:
            raise RuntimeError("this flow samples without its latent shift but has no image-noise estimate")
        if self.sample_latent_shift:
            cond = self.condition(clean_lr)
            latents, _ = self.encode(clean_lr, cond)
            latent_temperature = 0.0 if image_noise else temperature
            moved = self.shift.transfer(latents, noise[: self.num_levels], latent_temperature, cond)
            content = self.decode(moved, cond)
            if self.keep_low_pass_sigma > 0:
                content = content - gaussian_blur(content - clean_lr, self.keep_low_pass_sigma)
        else:
            content = clean_lr
        added = torch.zeros_like(content)
        if image_noise:
            added = added + temperature * self.image_noise(clean_lr, noise[self.num_levels])
        if self.image_coarse_noise.is_estimated:
            coarse = coarse_image_noise(self.image_coarse_noise, clean_lr, noise[self.num_levels + 1])
            added = added + temperature * coarse
        return content, added

    def synthesize(self, content: torch.Tensor, image_noise: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """``degrade_parts``' two parts -> the sample in [0, 1], 8-bit: the content compressed as the real images
        are (``image_compression``, a quality drawn per seed), then the noise.

        The noise goes on after the compression because it was measured after
        it: the estimate is read off the real images as saved, so it is the
        noise their codec left, and a second round trip would thin it again
        (on ``camera`` JPEG took 45-67% off the chroma noise's std). The
        content still loses its detail and takes on the codec's blocks.
        Rounding passes gradients straight through.
        """
        if self.image_compression.is_estimated:
            content = self.image_compression(content.clamp(0, 1), seeds)
        sample = (content + image_noise).clamp(0, 1)
        return sample + (torch.round(sample * 255) / 255 - sample).detach()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def domain_bits_per_dim(
    flow: DegradationFlow,
    clean_lr: torch.Tensor,
    real_lr: torch.Tensor,
    num_bins: int,
    dequant_noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean bits/dim of a clean and a real LR batch (same crop size), dequantized, in one pass.

    ``dequant_noise`` (U(-0.5, 0.5), shaped like ``cat([clean_lr, real_lr])``)
    lets the data loader draw it per sample, so results do not depend on how
    the batch is split across processes; without it, it is drawn here.
    """
    if clean_lr.shape[1:] != real_lr.shape[1:]:
        raise ValueError(f"clean and real crops differ in size: {tuple(clean_lr.shape)} vs {tuple(real_lr.shape)}")
    images = dequantize(torch.cat([clean_lr, real_lr]), num_bins, dequant_noise)
    cond = flow.condition(images)
    latents, logdet = flow.encode(images, cond)
    n = clean_lr.shape[0]
    log_p_clean = flow.shift.log_prob([z[:n] for z in latents], real=False) + logdet[:n]
    real_latents, real_cond, real_logdet = [z[n:] for z in latents], [c[n:] for c in cond], logdet[n:]
    if flow.clean_only_flow:  # real images train the domain shift alone
        real_latents = [z.detach() for z in real_latents]
        real_cond, real_logdet = [c.detach() for c in real_cond], real_logdet.detach()
    log_p_real = flow.shift.log_prob(real_latents, real=True, cond=real_cond) + real_logdet
    num_dims = clean_lr[0].numel()
    return bits_per_dim(log_p_clean, num_dims, num_bins).mean(), bits_per_dim(log_p_real, num_dims, num_bins).mean()


class FlowObjective(nn.Module):
    """The flow's training loss as one module, so DistributedDataParallel can wrap (and torch.compile trace) it.

    ``forward(clean_lr, real_lr, dequant_noise, num_samples, temperature) ->
    (loss, nll_clean, nll_real, samples)``: the two domains' bits/dim plus the
    content penalty on the domain shift, and ``degrade`` of the first
    ``num_samples`` clean crops (None if 0) for the discriminator, made in the
    same forward so that DDP sees every use of the flow's parameters.
    """

    def __init__(self, flow: DegradationFlow, num_bins: int, content_penalty: float):
        super().__init__()
        self.flow, self.num_bins, self.content_penalty = flow, num_bins, content_penalty

    def forward(
        self,
        clean_lr: torch.Tensor,
        real_lr: torch.Tensor,
        dequant_noise: torch.Tensor | None = None,
        num_samples: int = 0,
        temperature: float = 1.0,
    ):
        nll_clean, nll_real = domain_bits_per_dim(self.flow, clean_lr, real_lr, self.num_bins, dequant_noise)
        loss = nll_clean + nll_real + self.content_penalty * self.flow.shift.content_penalty()
        samples = self.flow.degrade(clean_lr[:num_samples], temperature) if num_samples > 0 else None
        return loss, nll_clean, nll_real, samples


def flow_optimizer(flow: DegradationFlow, lr: float, shift_lr_mult: float) -> torch.optim.Adam:
    """Adam for the flow, with the domain shift learning ``shift_lr_mult`` times faster.

    The shift is a handful of global statistics; at the flow's rate it would lag
    behind, and the flow would absorb the domain gap into one compromise density.
    """
    shift_ids = {id(p) for p in flow.shift.parameters()}
    return torch.optim.Adam(
        [
            {"params": [p for p in flow.parameters() if id(p) not in shift_ids]},
            {"params": list(flow.shift.parameters()), "lr": lr * shift_lr_mult},
        ],
        lr=lr,
    )
