"""The degradation flow's config: one dataclass per YAML section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from unpaired_sr.common.config import CropDataConfig, TrainLoopConfig


@dataclass
class FlowDataConfig(CropDataConfig):
    RANGES: ClassVar[dict[str, str]] = {
        "content_candidates": ">= 1",
    }

    clean_dir: str = ""  # clean HR photos; bicubic-downscaled on the fly to clean LR
    real_dir: str = ""  # real LR images (unpaired)
    # >1: of this many clean crops, the one closest to the real crop in brightness and coarse texture is used
    content_candidates: int = 1


@dataclass
class FlowModelConfig:
    RANGES: ClassVar[dict[str, str]] = {
        "num_levels": ">= 1",
        "num_steps": ">= 1",
        "hidden_channels": ">= 1",
        "cond_channels": ">= 1",
        "cond_blocks": ">= 0",
        "scale_bound": "> 0",
        "dequant_bins": ">= 1",
        "cond_noise": ">= 0",
        "keep_low_pass_sigma": ">= 0",
        "image_noise_quiet_fraction": "(0, 1]",
        "image_noise_real_floor": "[0, 1]",
    }

    num_levels: int = 2
    num_steps: int = 8
    hidden_channels: int = 80
    cond_channels: int = 32
    cond_blocks: int = 2
    scale_bound: float = 1.0
    dequant_bins: int = 64  # uniform dequantization of width 1 / dequant_bins
    conditional_shift: bool = False  # let the shift depend on local content (an ablation: see README)
    cond_noise: float = 0.0  # std of noise on the conditioning image in training (DeFlow: 0.03)
    keep_low_pass_sigma: float = 0.0  # samples keep the clean image's content below this scale (LR px; 0: off)
    sees_image: bool = True  # couplings see the image (Glow); false: the condition only (affine given it)
    clean_only_flow: bool = False  # the flow learns from clean images only; real ones train the domain shift
    # Noise estimated in the image from both sets' quietest patches (degradation/noise.py) replaces the
    # latent shift's fresh noise in samples; false: the latent noise, as before (README: fidelity)
    image_noise: bool = True
    # Colour noise correlated beyond the fine estimate's 8x8 patches (the blotches of a night shot or of noise
    # reduction), measured on both sets averaged over 2x2 pixels, the clean one carrying the fine noise; sampled at
    # half resolution and upsampled (degradation/noise.py; needs image_noise). Off by default: on lowlight the
    # samples came closer to the real ones (Frechet 30% lower) but SR trained on them lost 0.31 dB PSNR-Y (README:
    # fidelity). On in configs/deflow_faithful.yaml, for synthesis.
    image_coarse_noise: bool = False
    # The image noise is the real set's quiet patches minus the clean set's (the content both share); false: the
    # real set's alone. With four or five photos a side the two sets' flattest content differs, and the difference
    # follows the photo split (degradation/noise.py, README: fidelity)
    image_noise_against_clean: bool = True
    # The image noise is read from patches not clipped at black or white (a black sky, crushed shadows: the
    # quietest dark patches, whose noise clipping took), and the end bins are capped at their one neighbour. An
    # option: the darkest bin came within 2x of the true noise on 10 of 14 development benchmarks (4 as shipped),
    # but where the flat dark patches left are less flat than the clean set's it reads high: SR against the
    # shipped code on the same machine -0.151 dB on `grain` (darkest bin 4.3 levels, true 2.0) and -0.082 on the
    # held-out `drone` (5.7, true 2.7), -0.020 to +0.080 on five others (README: fidelity, thirty-fifth and
    # thirty-sixth rounds)
    image_noise_unclipped: bool = False
    # The share of each brightness bin's patches, the quietest, the image noise is read from (both sets; at least 8;
    # the texture option draws from the same patches).
    # Fewer, flatter patches hold less of the real set's content: at 0.01 the level came closer to the true one on
    # two photo splits of nine development sources (mean |log ratio| 0.32 -> 0.19 and 0.31 -> 0.27) and not on the
    # third (0.60 -> 0.60), and SR moved by -0.04 to +0.11 dB over seven sources at the benchmarks' split, the
    # Frechet distance up on four; on the split where it reads low it read lower still and SR lost 0.39 dB
    # (`lowlight`). An option for sets whose estimate reads above the grain they show (README: fidelity,
    # forty-first round)
    image_noise_quiet_fraction: float = 0.05
    # No brightness bin's image noise (along any colour axis) falls below this share of the std the real set's
    # quiet patches hold by themselves (0: no floor; with image_noise_against_clean only). The clean set's quiet
    # patches hold other scenes, and where they are the busier, subtracting them leaves the real set's noise at
    # nothing: on a second photo split of nine development sources the middle bin read 0.6-1.5 levels on seven
    # (true 2.9-6.1). At 0.7 the level came closer there (mean |log ratio| 0.59 -> 0.25), moved by at most 0.1
    # level on 35 of 36 sources at the benchmarks' own split, and SR moved by -0.05 to +0.17 dB over ten runs,
    # +0.05 on average on three held-out sources (README: fidelity, forty-second round)
    image_noise_real_floor: float = 0.7
    # The image noise's texture. gaussian: white noise filtered to the estimated spectrum. patches: the real set's own
    # quiet patches (those the estimate read), overlapped at random, each brightness bin's scaled to unit variance so
    # that the estimate still sets the level: whatever the noise holds beyond a spectrum (specks, dots, stripes, a
    # codec's leftovers) comes with it. For the samples only: the calibrations read the Gaussian noise either way. An
    # option: SR +0.013 dB on average over 12 development runs, but -0.062 dB on camera's second photo split, and
    # -0.08 dB on the held-out hdrphone (README: fidelity, thirty-third and thirty-fourth rounds)
    image_noise_texture: Literal["gaussian", "patches"] = "gaussian"
    # A veil of stray light (haze, flare) read off both sets' darkest pixels, their dark channel (degradation/veil.py;
    # always logged): samples veil the clean image by it before every other estimate is read or applied. auto: where
    # it reads 0.03 or more (unveiled sets read at most 0.012 on the benchmarks' photo splits)
    image_veil: bool | Literal["auto"] = "auto"
    # Blur estimated at the edges of both sets (degradation/blur.py; always logged): true: samples blur the
    # clean image by it before the flow degrades it. auto: only where the real images are clearly blurred (by
    # 0.3 LR px or more at every edge orientation): with the compression, SR gained 0.2 dB on such a source and
    # lost 0.07-0.11 dB on three mildly blurred ones (README: the SR section)
    image_blur: bool | Literal["auto"] = "auto"
    # In-camera sharpening estimated at the same edges, against clean images with the image noise (degradation/
    # blur.py; always logged): samples sharpen the clean image by it (an unsharp mask, radius 1 LR px). An SR
    # network that never saw sharpened inputs sharpens them again (README: fidelity)
    image_sharpening: bool = True
    # A local tone mapper's detail boost above a local mean (a Gaussian of 4 LR px), read off the overshoot beside
    # isolated steps, against clean images as samples start from, with the image noise (degradation/blur.py;
    # always logged): samples boost the clean image by it. auto: where it reads 0.25 or more (sets without a boost
    # read at most 0.02 on the benchmarks, a small set of high-contrast scenes 0.23)
    image_local_contrast: bool | Literal["auto"] = "auto"
    # Aliasing read off the real images' finest detail against the clean ones', per axis (degradation/aliasing.py;
    # always logged): samples start from the HR image point-sampled after a light Gaussian along each axis that
    # aliases, instead of its bicubic downscale. auto: where the real images hold clearly more power near the LR
    # grid's limit (1.58x) along either axis (a sensor that skips pixels or lines): two unpaired sets of other
    # photos differ by up to 1.48x
    image_aliasing: bool | Literal["auto"] = "auto"
    # Where the samples alias, where their LR grid sits on the HR one. bicubic: at bicubic's pixel centres. random:
    # each sample's grid shifted by its own phase, uniform within half an LR pixel along each axis that aliases: a
    # sensor's or a resize's grid against the HR scene cannot be read from unpaired images (degradation/aliasing.py).
    # SR +0.15 dB on average on the four aliasing development sources (-0.003 to +0.261), LPIPS up by 0.004-0.040
    # (README: fidelity, thirty-ninth round)
    image_aliasing_phase: Literal["bicubic", "random"] = "random"
    # How much softer the real images' colour is than the clean ones', estimated at colour edges against the clean
    # images as samples start from (degradation/blur.py; always logged). auto: each sample its JPEG draw leaves
    # uncompressed blurs its Cb and Cr by it, luma untouched (a JPEG round trip subsamples the colour itself);
    # true: every sample. Off by default: the samples come closer to the real ones by nearly every fidelity
    # statistic, but SR trained on them lost 0.03-0.14 dB PSNR-Y on the four benchmarks measured (README: fidelity).
    # For synthesis (configs/deflow_faithful.yaml).
    image_chroma_blur: bool | Literal["auto"] = False
    # JPEG read off the real images' 8x8 quantization lattice (degradation/compression.py; always logged): true:
    # samples' content is compressed at the qualities found, in the proportion found, and the image noise goes on
    # after it (the noise was measured on the compressed real images). auto: only together with the image blur's
    # auto, where the real images are clearly blurred (the rule until the twenty-seventh round, when the noise went
    # on before the compression and a second JPEG thinned it). false: no compression, the matched one included
    image_compression: bool | Literal["auto"] = True
    # Where no real image shows a JPEG lattice (WebP, AVIF, JPEG 2000, a JPEG resized since), the loss of detail
    # matched as JPEG (degradation/compression.py; always logged): true: samples' content is compressed at the
    # qualities matched, the noise after it. auto: only where the real images are clearly blurred (as the image
    # blur's auto): on the three sources measured, SR on such samples lost 0.03-0.27 dB PSNR-Y, on `gallery`
    # falling below plain bicubic upsampling, in either order of noise and compression (README: fidelity)
    image_matched_compression: bool | Literal["auto"] = "auto"
    # Samples move the clean image's latents by the learned domain shift (what the flow does to content: blur,
    # compression) before the image noise is added; false: the clean image plus the image noise (README: fidelity)
    sample_latent_shift: bool = True


@dataclass
class FlowTrainConfig(TrainLoopConfig):
    RANGES: ClassVar[dict[str, str]] = {
        "content_penalty": ">= 0",
        "shift_lr_mult": "> 0",
        "sample_every": ">= 1",
        "adv_weight": ">= 0",
        "adv_batch": ">= 1",
        "adv_start": ">= 0",
        "adv_temperature": ">= 0",
        "adv_high_pass_sigma": "> 0",
        "adv_width": ">= 1",
        "adv_lr": "> 0",
        "stats_weight": ">= 0",
    }

    n_iter: int = 30000
    warmup_iter: int = 200
    content_penalty: float = 0.01  # pulls the domain shift's content scale a towards 1
    shift_lr_mult: float = 10.0  # the domain shift's few global statistics learn this much faster
    sample_every: int = 2000
    # NHWC weights and activations on the CPU, oneDNN's faster layout for these small convolutions (README: speed);
    # not yet measured for the flow on CUDA, so off there.
    channels_last: bool = True
    # The samples' discriminator (degradation/adversarial.py); adv_weight 0 turns it off.
    adv_weight: float = 0.0  # weight of its loss on the flow, beside the two domains' bits/dim
    adv_batch: int = 8  # clean crops degraded per step for the critics (the first ones of the batch)
    adv_start: int = 500  # steps of likelihood alone first: early samples are not worth judging (both critics)
    adv_temperature: float = 1.0  # the temperature its samples are drawn at
    adv_high_pass_sigma: float = 4.0  # it sees the detail above a Gaussian low-pass of this sigma (LR px)
    adv_width: int = 32
    adv_lr: float = 2.0e-4
    # Detail statistics per content region (degradation/moments.py) on the same samples; 0 turns it off.
    stats_weight: float = 0.0
    stats_flat_only: bool = False  # score flat regions only, where detail is noise in any scene


@dataclass
class FlowConfig:
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    model: FlowModelConfig = field(default_factory=FlowModelConfig)
    train: FlowTrainConfig = field(default_factory=FlowTrainConfig)
