"""Classical, hand-designed degradations: the baselines a learned degradation must beat.

Presets (HR float RGB in [0, 1] -> LR of exactly ``HR size / scale``):

* ``bicubic``: MATLAB bicubic downscaling only (the textbook assumption).
* ``noise_jpeg``: bicubic, then white Gaussian noise (sigma 1-20 / 255), then
  JPEG (quality 40-95).
* ``realesrgan``: the second-order pipeline of Real-ESRGAN (Wang et al. 2021):
  two rounds of blur (kernel size 7-21; sigma 0.2-3, then 0.2-1.5; isotropic,
  anisotropic or generalized Gaussian), random resize (0.15-1.5, then 0.3-1.2),
  Gaussian or Poisson noise (sigma 1-30 then 1-25; Poisson scale 0.05-3 then
  0.05-2.5; 40% gray), JPEG (30-95), and a final resize to the LR size in
  random order with the last JPEG. The sinc and plateau kernels are left out.
* ``camera``: a fixed camera-like pipeline: optical blur, bicubic downscaling,
  signal-dependent (Poisson-Gaussian) noise that is spatially correlated (as
  after demosaicing) and correlated across channels, then JPEG at quality
  60-80 with 4:2:0 chroma. It is the hidden "real" degradation of the demo
  benchmark, not a training baseline.
* ``grain``, ``blur_jpeg``, ``lowlight``: three more hidden "real" sources of
  other character, for benchmarks (see ``benchmarks/flow_fidelity.py``): fine
  white sensor grain everywhere with mild blur and light JPEG; strong
  anisotropic blur and heavy JPEG with almost no noise; strong low-light
  shot noise with blotchy (spatially low-pass) chroma noise.
* ``handheld``: a held-out source for the next design round (fixed before it
  started): camera shake (linear motion blur), read noise, in-camera
  sharpening that boosts that noise and draws halos, then JPEG.
* ``stream``: held out for the image compression's round (fixed before it):
  a compressed video frame scaled for display.
* ``phone``: held out for the round after ``stream`` (fixed, 2026-11-30,
  before that round's design started): a phone's processed photo, whose
  noise reduction smears fine texture and leaves low-frequency colour
  blotches, then sharpening and high-quality JPEG.
* ``webcam``, ``film``: held out for the ninth and tenth rounds: a defocused
  webcam lens with noise on a Bayer mosaic, demosaiced; a scanned colour
  negative with clumped dye grain.
* ``cctv``: held out for the thirteenth round (fixed, 2026-12-01, before its
  design was measured): a security camera's frame, its wide-angle lens soft
  toward the corners, its noise half removed by a cheap denoiser (small
  blotches), then hard JPEG (quality 30-55).
* ``dashcam``: held out for the eighteenth round (fixed, 2026-12-05, before
  any flow saw it): a sensor read out by skipping pixels (little blur before
  the decimation, so detail aliases and edges are jagged), a few hot pixels
  lit in one channel, white signal-dependent noise, JPEG 60-85.
* ``camcorder``: held out for the nineteenth round (fixed, 2026-12-05, before
  its design was written): one field of an interlaced camcorder frame, so
  lines are skipped and vertical detail aliases while the analog signal's
  bandwidth softens it horizontally; colour at a quarter of the horizontal
  resolution (4:1:1); noise smeared along the scan lines; JPEG 75-92.
* ``thumbnail``: held out for the nineteenth round's second design (fixed,
  2026-12-05, before that design was written): an app's thumbnail of a
  camera JPEG, made with OpenCV's cubic resize, which does not low-pass
  before it shrinks (detail aliases), then saved as JPEG 70-90.
* ``actioncam``: held out for the twentieth round (fixed, 2026-12-05, before
  its design was written): an action camera's video frame, its sensor
  binning pixel pairs and then skipping every other one (half an anti-alias
  filter: detail still aliases), strong in-camera sharpening of the luma,
  signal-dependent noise, JPEG 55-80.
* ``messenger``: held out for the shipped design of the twenty-second round
  (fixed, 2026-12-05, before any flow saw it): a photo shared through a
  messaging app, shrunk by pixel averaging and re-encoded as lossy WebP
  25-55, the first source here compressed by another codec than JPEG.
* ``gallery``: held out (fixed, 2026-12-05, before any flow saw it) for a
  compression design in case ``messenger``'s results called for one; they
  did not, so it judged the shipped defaults too: a cloud gallery's
  preview, shrunk with Lanczos and stored as AVIF 30-60 (AV1 intra).
* ``archive``: held out for the twenty-third round's compression design
  (fixed, 2026-12-05, before that design was written): a digital library's
  JPEG 2000 derivative of a scanned print (scanner blur and faint noise, a
  bilinear shrink, then the wavelet codec at 28-34 dB), compressed without
  blocks.
* ``ultrawide``: held out (fixed, 2026-12-05, before any flow saw it) to
  judge the shipped defaults on a lens fault no estimate models: a budget
  phone's ultra-wide camera, whose lateral chromatic aberration sets red,
  green and blue apart toward the corners (colour fringes that in-camera
  sharpening turns into halos), with mild blur, noise and JPEG 80-92.
* ``compact``: held out (fixed, 2026-12-05, before the twenty-fifth round's
  design was written): a compact camera at high ISO, its noise made in raw
  linear light (so it is strongest in the shadows, where the black level
  clips it) and set against itself across the channels by the camera's
  colour matrix, then the sRGB curve and JPEG 80-92.
* ``nightcam``: held out (fixed, 2026-12-05, before the twenty-sixth round's
  design was written): a security camera's colour night mode at high gain,
  whose sensor reads its rows out with offsets of their own (horizontal
  banding: noise correlated along a whole row and not at all across rows),
  under a soft lens, with strong signal-dependent noise and JPEG 65-85.
* ``digizoom``: held out (fixed, 2026-12-06, before the twenty-seventh round's
  design was written): a phone's digital zoom, whose sensor sees the scene at
  1.3-1.8x less than the output's resolution; its noise is made there and
  then enlarged with the picture (bilinear), so the grain is soft and
  correlated over 1-2 output pixels, before sharpening and JPEG 75-90.
* ``gif``: held out (fixed, 2026-12-06, before the twenty-eighth round's
  design was written): a frame of an animated GIF made from a phone's video,
  its colours reduced to an adaptive palette of 48-128 with Floyd-Steinberg
  error diffusion: an error in every pixel that follows the palette, not
  the brightness, dithered into a fine pattern over smooth gradients.
* ``telephoto``: held out (fixed, 2026-12-06, before the twenty-ninth round's
  design was written): a long lens through heat shimmer, the scene displaced
  by a smooth random field of 1-2.5 HR px (edges wobble, textures shift
  against their neighbours), softened by 0.9-1.5 HR px, with noise and JPEG
  70-88.
* ``vhs``: held out (fixed, 2026-12-06, before the thirtieth round's design
  was written): a frame captured from a VHS tape, luma softened along the
  lines and colour far more, each line shifted by the deck's wandering time
  base, streaky noise correlated along the lines, edge enhancement along
  them, JPEG 85-95.
* ``newsprint``: held out (fixed, 2026-12-06, before the thirty-first round's
  design was written): a scanned halftone print, its cyan, magenta and
  yellow inks laid down as dots on screens rotated to 15, 75 and 0 degrees
  (a period of 4-7 HR px, so the dot pattern beats with the LR grid as
  moire), the dots spread by the paper, the scanner's soft optics, faint
  scanner noise, JPEG 80-92.
* ``photoscan``: held out (fixed, 2026-12-06, before the thirty-second
  round's design was written): an old photo print on a flatbed scanner, its
  paper's fine grain (a multiplicative texture of 1-3%), dust on the glass
  (sparse dark specks of 2-8 HR px) and hairline scratches in the print
  (thin pale curves), the scanner's optics, faint sensor noise, JPEG 85-95.
* ``machinevision``: held out (fixed, 2026-12-06, before the thirty-third
  round's design was written): an industrial camera's frame saved as PNG,
  its sensor's fixed patterns (each pixel's gain, each column's offset:
  faint vertical stripes) under shot and read noise, no codec.
* ``hdrphone``: held out (fixed, 2026-12-06, before the thirty-fourth
  round's design was written): a phone's HDR photo, whose local tone
  mapping boosts detail at a few pixels' scale (halos at large edges) and
  boosts it most in the shadows, so the sensor's noise is lifted there,
  then JPEG 82-94.
* ``toycam``: held out (fixed, 2026-12-06, before the thirty-fifth round's
  design was written): a cheap plastic lens, whose point spread has a sharp
  core and a wide skirt (veiling glare: 12-30% of the light spread over
  3-6 LR px, so bright regions wash out their dark surroundings and local
  contrast drops without a blur at the pixel scale), a sensor that averages
  pixels, shot and read noise partly shared by the channels, JPEG 75-90.
* ``drone``: held out (fixed, 2026-12-07, before the thirty-sixth round's
  design was written): a drone's video frame, its rolling shutter read while
  the airframe vibrates (every row shifted sideways along a sine: a wobble
  of whole rows, "jello"), a short motion blur, a sensor that averages
  pixels, shot and read noise partly shared by the channels, and the video
  codec's blocks (JPEG 60-80).
* ``substream``: held out (fixed, 2026-12-07, before the thirty-ninth round's
  design was written): a security recorder's sub-stream, the camera's full
  frame (its noise made at that size, high-quality coding) shrunk by
  nearest-neighbour, one HR pixel per LR pixel with no filter, so detail and
  noise alias, then coded hard (JPEG 40-65).
* ``album``: held out (fixed, 2026-12-07, before the fortieth round's design
  was written): a shared family album whose photos come from two phones,
  half from each, image by image: a new phone's night shots (strong
  signal-dependent noise partly shared by the channels, mild JPEG) and an
  old phone's pictures re-shared through a chat app (a soft lens, faint
  noise, its own JPEG, then a hard one). One set, two sources of unlike
  character.
* ``shading``: held out (fixed, 2026-12-07, before the forty-first round's
  design was measured): a phone camera module whose lens lights the corners
  less, the sensor's noise recorded on that dimmer picture and then lifted
  with it by the lens shading correction: even brightness, noise 1.5-2x
  stronger in the corners than in the centre, JPEG 75-90.
* ``portrait``: held out (fixed, 2026-12-07, before the forty-first round's
  second design was final): a phone's portrait mode, whose
  synthetic bokeh (a disk of 1.0-2.5 LR px) blurs the 30-60% of each frame
  it takes for background and leaves the rest sharp, over faint noise, a
  mild sharpening and JPEG 80-94.
* ``autofocus``: held out (fixed, 2026-12-07, before the forty-third round's
  design was measured): a compact camera whose autofocus misses on some
  frames: about 40% of them, drawn frame by frame, are defocused as a whole
  (a disk of 1.0-2.2 LR px), the rest are in focus; signal-dependent noise
  partly shared by the channels, JPEG 78-92. A set of sharp and soft images
  mixed, where ``portrait`` mixes sharp and soft regions within each image.
* ``autoiso``: held out (fixed, 2026-12-07, before the forty-fourth round's
  design): a phone whose auto-ISO sets the sensor's gain frame by frame,
  drawn over 1-16x (log-uniform): some frames nearly clean, others very
  noisy, in one set; shot and read noise partly shared by the channels,
  JPEG 80-92. The noise level differs from image to image, not only with
  the brightness.
* ``awb``: held out (fixed, 2026-12-07, before the forty-fifth round's
  design): a phone whose auto white balance misjudges the light frame by
  frame: red and blue off by a gain drawn per frame (about 5% either way,
  at most 12%), applied in linear light after the sensor's noise, so each
  frame carries a colour cast of its own (up to 7 levels at mid-grey) and
  the set as a whole almost none; mild blur, JPEG 82-94.
* ``haze``: held out (fixed, 2026-12-07, before the forty-sixth round's
  design): a camera looking through haze (or a misted window): each frame
  blended with a bluish-grey veil of scattered light, 10-30% of it,
  varying smoothly over the frame as the distance does, so contrast drops
  and blacks lift without any blur at the pixel scale; a lens of 0.6-1.0
  HR px, pixel averaging, noise partly shared by the channels, JPEG 75-90.
* ``dewarp``: held out (fixed, 2026-12-07, before the forty-seventh round's
  design): a phone's wide camera whose lens bends straight lines outward
  (barrel distortion) and whose processor straightens them again: the
  sensor records the periphery squeezed (its pixels cover more of the
  scene there), its noise is added on that grid, and the correction
  stretches the corners back by 1.15-1.4x with bilinear interpolation, so
  corners come out softer than the centre, with grain spread over
  neighbouring pixels; JPEG 80-92.
* ``logvideo``: held out (fixed, 2026-12-07, before the forty-eighth round's
  design): a frame of a phone's log-profile video saved without grading:
  the sensor's linear light mapped by a logarithmic curve between a lifted
  black (5-10%) and a white below full scale (92-97%), so shadows open up,
  highlights roll off and the whole frame looks flat, with colours muted
  by 10-25%; a lens of 0.5-0.8 HR px, pixel averaging, noise made in
  linear light (lifted with the shadows), a video codec's blocks as JPEG
  70-88.
* ``fringe``: held out (fixed, 2026-12-08, before the forty-ninth round's
  design): a fast lens wide open with axial chromatic aberration: green in
  focus (0.4-0.7 HR px), red a little out of it (0.9-1.5), blue well out
  of it (1.6-3.0), so every high-contrast edge grows a soft blue-purple
  fringe while the luma stays nearly sharp; pixel averaging, shot and read
  noise partly shared by the channels, JPEG 80-92.
* ``burstmerge``: held out (fixed, 2026-12-08, before the forty-ninth
  round's design): a phone that merges a burst of 4-8 frames where the
  scene held still and falls back to a single frame where something moved
  (ghost removal): 20-45% of each frame, in smooth blobs, carries the noise
  of one frame, the rest that noise averaged down by the burst; a lens of
  0.4-0.7 HR px, pixels averaged, a mild sharpening of the luma, JPEG
  82-94. The noise level changes across the frame with neither brightness
  nor the position in the frame.
* ``stabilized``: held out (fixed, 2026-12-08, before the fiftieth round's
  design): a phone's video frame with electronic image stabilization: the
  sensor, turned by 0.5-2 degrees against the scene by the hand that holds
  it and shifted by a fraction of a pixel, records the scene on a tilted
  grid with its noise, and the stabilizer turns the frame back by bilinear
  interpolation, so each output pixel blends up to four sensor pixels by
  weights that drift across the frame: bands of softer detail and finer
  grain beside bands as the sensor left them; a lens of 0.4-0.7 HR px,
  a video codec's blocks as JPEG 70-88.

Every call takes a ``numpy.random.Generator``; the command seeds one per image
from ``--seed`` and the file name, so outputs do not depend on worker order.

Command:
``python -m data_tools.degrade_classical --input HR --output LR --scale 4 --preset realesrgan --seed 0``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import LUMA_WEIGHTS, list_images, read_image, write_image
from unpaired_sr.common.matlab_resize import downscale, mod_crop
from unpaired_sr.common.seeds import seed_keys
from unpaired_sr.data_tools.parallel import map_with_progress

# ----------------------------------------------------------------------------- pieces


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float, beta: float = 1.0) -> np.ndarray:
    """A normalised (generalized, possibly anisotropic and rotated) Gaussian blur kernel.

    ``beta`` = 1 gives a Gaussian; other values the generalized Gaussian
    ``exp(-0.5 * (d^T S^-1 d) ** beta)`` with heavier (beta < 1) or lighter tails.
    """
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    inverse = np.linalg.inv(covariance)
    radius = size // 2
    grid = np.stack(np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1)), axis=-1)
    mahalanobis = np.einsum("...i,ij,...j->...", grid, inverse, grid)
    kernel = np.exp(-0.5 * mahalanobis**beta)
    return kernel / kernel.sum()


def random_blur_kernel(rng: np.random.Generator, sigma_range: tuple[float, float]) -> np.ndarray:
    """Real-ESRGAN's kernel choice without sinc/plateau: iso 50%, aniso 28%, generalized 22%."""
    size = int(rng.choice(np.arange(7, 22, 2)))
    kind = rng.choice(["iso", "aniso", "generalized_iso", "generalized_aniso"], p=[0.5, 0.28, 0.18, 0.04])
    sigma_x = rng.uniform(*sigma_range)
    sigma_y = rng.uniform(*sigma_range) if "aniso" in kind else sigma_x
    angle = rng.uniform(-math.pi, math.pi) if "aniso" in kind else 0.0
    beta = rng.uniform(0.5, 4.0) if "generalized" in kind else 1.0
    return gaussian_kernel(size, sigma_x, sigma_y, angle, beta)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(image, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def jpeg(image: np.ndarray, quality: int, subsampling_420: bool = True) -> np.ndarray:
    """Round-trip through 8-bit JPEG at ``quality`` (OpenCV's default 4:2:0 chroma)."""
    bgr = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if not subsampling_420:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr), params)
    assert ok, "OpenCV failed to encode a JPEG"
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0


def webp(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through lossy 8-bit WebP at ``quality`` (VP8: 4x4 transforms, 4:2:0 chroma, a loop filter)."""
    bgr = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1]
    ok, encoded = cv2.imencode(".webp", np.ascontiguousarray(bgr), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    assert ok, "OpenCV failed to encode a WebP image"
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0


def jpeg2000(image: np.ndarray, psnr: float) -> np.ndarray:
    """Round-trip through lossy 8-bit JPEG 2000 with Pillow (OpenJPEG: the irreversible 9/7 wavelet over the whole
    image, no block grid, colour at full resolution), at the rate that reaches ``psnr`` dB. A target fidelity
    rather than a compression ratio, since on small tiles the codestream's headers would take a fixed ratio's
    whole budget."""
    import io

    from PIL import Image, features

    if not features.check("jpg_2000"):
        raise UserError("this Pillow has no JPEG 2000 support (OpenJPEG); the archive preset needs it")
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(
        buffer, format="JPEG2000", quality_mode="dB", quality_layers=[float(psnr)], irreversible=True
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0


def avif(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through lossy 8-bit AVIF at ``quality`` with Pillow (AV1 intra: variable blocks, deblocking, CDEF)."""
    import io

    from PIL import Image, features

    if not features.check("avif"):
        raise UserError("this Pillow has no AVIF support; the gallery preset needs Pillow >= 11.3")
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(
        buffer, format="AVIF", quality=int(quality)
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma: float, gray: bool) -> np.ndarray:
    shape = image.shape[:2] + ((1,) if gray else (3,))
    return image + rng.normal(0.0, sigma, shape).astype(np.float32)


def poisson_noise(image: np.ndarray, rng: np.random.Generator, scale: float, gray: bool) -> np.ndarray:
    """Shot noise of an 8-bit sensor, scaled by ``scale`` (Real-ESRGAN's formulation)."""
    source = image.mean(axis=2, keepdims=True) if gray else image
    counts = np.clip(source, 0, 1) * 255.0
    noise = (rng.poisson(counts) - counts) / 255.0
    return image + (scale * noise).astype(np.float32)


def random_noise(image, rng, gaussian_sigma: tuple[float, float], poisson_scale: tuple[float, float]):
    """Gaussian or Poisson noise with equal chance, gray (same in all channels) 40% of the time."""
    gray = rng.uniform() < 0.4
    if rng.uniform() < 0.5:
        return gaussian_noise(image, rng, rng.uniform(*gaussian_sigma) / 255.0, gray)
    return poisson_noise(image, rng, rng.uniform(*poisson_scale), gray)


_CV2_MODES = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def random_resize(image: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int]) -> np.ndarray:
    mode = _CV2_MODES[rng.integers(len(_CV2_MODES))]
    height, width = out_hw
    return cv2.resize(image, (max(width, 1), max(height, 1)), interpolation=mode)


# ----------------------------------------------------------------------------- presets


def degrade_bicubic(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(downscale(hr, scale), 0, 1).astype(np.float32)


def degrade_noise_jpeg(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    lr = downscale(hr, scale).astype(np.float32)
    lr = gaussian_noise(lr, rng, rng.uniform(1, 20) / 255.0, gray=False)
    return jpeg(lr, int(rng.integers(40, 96)))


def degrade_realesrgan(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = hr.astype(np.float32)
    # First order.
    image = blur(image, random_blur_kernel(rng, (0.2, 3.0)))
    direction = rng.choice(["up", "down", "keep"], p=[0.2, 0.7, 0.1])
    factor = {"up": rng.uniform(1, 1.5), "down": rng.uniform(0.15, 1), "keep": 1.0}[direction]
    image = random_resize(image, rng, (int(hr.shape[0] * factor), int(hr.shape[1] * factor)))
    image = np.clip(random_noise(image, rng, (1, 30), (0.05, 3.0)), 0, 1)
    image = jpeg(image, int(rng.integers(30, 96)))
    # Second order.
    if rng.uniform() < 0.8:
        image = blur(image, random_blur_kernel(rng, (0.2, 1.5)))
    direction = rng.choice(["up", "down", "keep"], p=[0.3, 0.4, 0.3])
    factor = {"up": rng.uniform(1, 1.2), "down": rng.uniform(0.3, 1), "keep": 1.0}[direction]
    image = random_resize(image, rng, (int(height * factor), int(width * factor)))
    image = np.clip(random_noise(image, rng, (1, 25), (0.05, 2.5)), 0, 1)
    # Final resize and JPEG, in random order.
    if rng.uniform() < 0.5:
        image = random_resize(image, rng, (height, width))
        image = jpeg(image, int(rng.integers(30, 96)))
    else:
        image = jpeg(image, int(rng.integers(30, 96)))
        image = random_resize(image, rng, (height, width))
    return np.clip(image, 0, 1).astype(np.float32)


# Cross-channel mixing of sensor noise: neighbouring colour filters leak into
# each other and demosaicing interpolates across channels.
_CAMERA_NOISE_MIX = np.array([[0.80, 0.45, 0.15], [0.35, 0.85, 0.35], [0.15, 0.45, 0.80]], dtype=np.float32)
_CAMERA_NOISE_SPREAD = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16.0


def degrade_camera(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, downscale, correlated Poisson-Gaussian noise, JPEG: a small camera's output."""
    image = blur(hr.astype(np.float32), gaussian_kernel(9, *(2 * [rng.uniform(0.6, 1.0)]), 0.0))
    image = np.clip(downscale(image, scale), 0, 1).astype(np.float32)
    # Noise variance a * signal + b in a gamma-expanded (roughly linear) domain.
    linear = image**2.2
    shot, read = rng.uniform(0.004, 0.008), rng.uniform(0.0001, 0.0003)
    white = rng.standard_normal(image.shape).astype(np.float32)
    white = cv2.filter2D(white, -1, _CAMERA_NOISE_SPREAD, borderType=cv2.BORDER_REFLECT_101) / 0.375
    correlated = white @ _CAMERA_NOISE_MIX.T / np.linalg.norm(_CAMERA_NOISE_MIX, axis=1)
    linear = linear + correlated * np.sqrt(shot * linear + read)
    image = np.clip(linear, 0, 1) ** (1 / 2.2)
    return jpeg(image, int(rng.integers(60, 81)))


def _luma_chroma_noise(shape, rng, chroma_sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance noise: white luma (H, W, 1) and chroma (H, W, 2) low-passed by ``chroma_sigma_px``."""
    luma = rng.standard_normal((*shape[:2], 1)).astype(np.float32)
    chroma = rng.standard_normal((*shape[:2], 2)).astype(np.float32)
    if chroma_sigma_px > 0:
        chroma = cv2.GaussianBlur(chroma, (0, 0), chroma_sigma_px, borderType=cv2.BORDER_REFLECT_101)
        chroma /= chroma.reshape(-1, 2).std(axis=0) + 1e-8
    return luma, chroma


# Luma / two colour-difference directions back to RGB (orthonormal: unit noise stays unit).
_LUMA_CHROMA_TO_RGB = np.array(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(2), 1 / math.sqrt(6)],
        [1 / math.sqrt(3), 0.0, -2 / math.sqrt(6)],
        [1 / math.sqrt(3), -1 / math.sqrt(2), 1 / math.sqrt(6)],
    ],
    dtype=np.float32,
)


def degrade_grain(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Fine, spatially white, luma-dominated sensor grain present everywhere, mild blur, high-quality JPEG."""
    image = blur(hr.astype(np.float32), gaussian_kernel(7, *(2 * [rng.uniform(0.3, 0.6)]), 0.0))
    image = np.clip(downscale(image, scale), 0, 1).astype(np.float32)
    luma, chroma = _luma_chroma_noise(image.shape, rng, 0.0)
    noise = np.concatenate([luma, 0.35 * chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    sigma = rng.uniform(3.0, 5.0) / 255 * np.sqrt(0.3 + image)  # grows gently with brightness
    return jpeg(image + sigma * noise, int(rng.integers(85, 96)))


def degrade_blur_jpeg(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Strong (possibly anisotropic) blur and heavy JPEG, little noise: an old web video frame."""
    sigma_x, sigma_y = rng.uniform(1.2, 2.4), rng.uniform(1.2, 2.4)
    image = blur(hr.astype(np.float32), gaussian_kernel(15, sigma_x, sigma_y, rng.uniform(-math.pi, math.pi)))
    image = np.clip(downscale(image, scale), 0, 1).astype(np.float32)
    image = gaussian_noise(image, rng, rng.uniform(0.5, 1.5) / 255, gray=True)
    return jpeg(image, int(rng.integers(20, 41)))


def degrade_lowlight(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone at night: shot and read noise (worst in the dark after gamma), blotchy chroma noise, JPEG."""
    image = np.clip(downscale(hr.astype(np.float32), scale), 0, 1).astype(np.float32)
    linear = np.maximum(image, 1e-3) ** 2.2
    gain, read = rng.uniform(0.002, 0.004), rng.uniform(0.00005, 0.0001)
    # The sensor's noise std carried through the gamma curve (its local slope), capped at 20 levels.
    sigma = np.minimum(np.sqrt(gain * linear + read) * linear ** (1 / 2.2 - 1) / 2.2, 20 / 255)
    luma, chroma = _luma_chroma_noise(image.shape, rng, rng.uniform(1.5, 2.5))
    noise = np.concatenate([luma, 0.9 * chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    return jpeg(image + sigma * noise, int(rng.integers(70, 86)))


def motion_kernel(length: float, angle: float, size: int) -> np.ndarray:
    """A normalised straight-line motion blur of ``length`` px at ``angle`` (radians), antialiased."""
    kernel = np.zeros((size * 4, size * 4), np.float32)
    centre, half = size * 2, length * 2
    start = (centre - half * math.cos(angle), centre - half * math.sin(angle))
    end = (centre + half * math.cos(angle), centre + half * math.sin(angle))
    points = [tuple(round(v * 16) for v in point) for point in (start, end)]
    cv2.line(kernel, *points, 1.0, thickness=4, lineType=cv2.LINE_AA, shift=4)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def degrade_handheld(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Camera shake, read noise, in-camera sharpening (halos, boosted noise), JPEG: a handheld snapshot."""
    kernel = motion_kernel(rng.uniform(6.0, 12.0), rng.uniform(0, math.pi), 17)
    image = np.clip(downscale(blur(hr.astype(np.float32), kernel), scale), 0, 1).astype(np.float32)
    luma, chroma = _luma_chroma_noise(image.shape, rng, 0.0)
    noise = np.concatenate([luma, 0.5 * chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    image = image + rng.uniform(2.0, 4.0) / 255 * noise
    smooth = cv2.GaussianBlur(image, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    image = image + rng.uniform(0.5, 0.9) * (image - smooth)
    return jpeg(image, int(rng.integers(70, 91)))


def degrade_stream(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A frame of a compressed video stream, scaled for display.

    Sensor noise and strong block compression at twice the LR size (JPEG at
    quality 25-45 stands in for an intra-frame codec), then the player's
    bilinear 2x downscale and a mild sharpening: the blocks' edges and ringing
    survive, softened, but no 8x8 quantization lattice does at the LR size.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = cv2.resize(hr.astype(np.float32), (2 * width, 2 * height), interpolation=cv2.INTER_AREA)
    luma, chroma = _luma_chroma_noise(image.shape, rng, 0.0)
    noise = np.concatenate([luma, 0.7 * chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    image = jpeg(image + rng.uniform(1.5, 3.0) / 255 * noise, int(rng.integers(25, 46)))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    smooth = cv2.GaussianBlur(image, (0, 0), 0.8, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(image + rng.uniform(0.3, 0.6) * (image - smooth), 0, 1).astype(np.float32)


def degrade_phone(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's processed photo: noise reduction that smears fine texture, colour blotches, sharpening, JPEG.

    The sensor's shot and read noise is filtered by the phone: an edge-keeping
    (bilateral) filter on luma wipes out fine, low-contrast texture along with
    the noise, and a wide blur on chroma leaves colour noise as soft blotches;
    the result is sharpened and saved at high JPEG quality.
    """
    image = np.clip(downscale(hr.astype(np.float32), scale), 0, 1).astype(np.float32)
    linear = np.maximum(image, 1e-3) ** 2.2
    gain, read = rng.uniform(0.001, 0.003), rng.uniform(0.00002, 0.00008)
    sigma = np.minimum(np.sqrt(gain * linear + read) * linear ** (1 / 2.2 - 1) / 2.2, 15 / 255)
    luma_noise, chroma_noise = _luma_chroma_noise(image.shape, rng, 0.0)
    noisy = image + sigma * (np.concatenate([luma_noise, chroma_noise], axis=2) @ _LUMA_CHROMA_TO_RGB.T)
    luma_chroma = noisy @ _LUMA_CHROMA_TO_RGB  # orthonormal: the transpose maps back
    luma = np.ascontiguousarray(luma_chroma[..., 0])
    luma = cv2.bilateralFilter(luma, 5, rng.uniform(0.04, 0.08), rng.uniform(1.0, 2.0))
    chroma = cv2.GaussianBlur(luma_chroma[..., 1:], (0, 0), rng.uniform(1.5, 2.5), borderType=cv2.BORDER_REFLECT_101)
    image = np.concatenate([luma[..., None], chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    smooth = cv2.GaussianBlur(image, (0, 0), 1.2, borderType=cv2.BORDER_REFLECT_101)
    image = np.clip(image + rng.uniform(0.4, 1.0) * (image - smooth), 0, 1).astype(np.float32)
    return jpeg(image, int(rng.integers(85, 96)))


def disk_kernel(radius: float, size: int) -> np.ndarray:
    """A normalised, antialiased disk of ``radius`` px: a defocused lens."""
    kernel = np.zeros((size * 4, size * 4), np.float32)
    cv2.circle(kernel, (size * 2 * 16, size * 2 * 16), round(radius * 4 * 16), 1.0, -1, cv2.LINE_AA, shift=4)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def degrade_webcam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A cheap webcam: a defocused lens, a Bayer sensor's noise and bilinear demosaicing, JPEG.

    Noise is added to the raw mosaic (one colour per pixel, signal-dependent),
    so demosaicing spreads it across neighbours and channels, and colours
    alias at fine edges (zipper and false-colour fringes); then moderate JPEG.
    """
    radius = rng.uniform(2.0, 4.0)  # HR px: 0.5-1 LR px at x4
    image = np.clip(downscale(blur(hr.astype(np.float32), disk_kernel(radius, 11)), scale), 0, 1)
    height, width = image.shape[:2]
    mosaic = np.empty((height, width), np.float32)  # RGGB
    mosaic[0::2, 0::2] = image[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = image[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = image[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = image[1::2, 1::2, 2]
    gain, read = rng.uniform(0.0005, 0.0015), rng.uniform(0.00002, 0.00006)
    mosaic = mosaic + np.sqrt(gain * mosaic + read) * rng.standard_normal(mosaic.shape).astype(np.float32)
    raw = np.round(np.clip(mosaic, 0, 1) * 65535).astype(np.uint16)
    # OpenCV names Bayer patterns by the second row's first two pixels: RGGB is its "BayerBG".
    image = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535
    return jpeg(image, int(rng.integers(50, 76)))


def degrade_film(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A scanned colour negative: the scanner's soft optics, clumped dye grain strongest in the midtones, JPEG.

    Film grain is not a sensor's white noise: dye clouds are a pixel or two
    across at the scan's resolution, each of the three dye layers has its own
    (so the grain is partly coloured), and it is most visible in the midtones
    and least in the deepest shadows and brightest highlights.
    """
    sigma_blur = rng.uniform(0.8, 1.5)
    image = blur(hr.astype(np.float32), gaussian_kernel(9, sigma_blur, sigma_blur, 0.0))
    image = np.clip(downscale(image, scale), 0, 1).astype(np.float32)
    clump_px = rng.uniform(0.6, 1.0)
    layers = rng.standard_normal((*image.shape[:2], 4)).astype(np.float32)
    layers = cv2.GaussianBlur(layers, (0, 0), clump_px, borderType=cv2.BORDER_REFLECT_101)
    layers /= layers.reshape(-1, 4).std(axis=0) + 1e-8
    shared = rng.uniform(0.6, 0.8)  # the part of the grain common to the three dye layers
    grain = math.sqrt(shared) * layers[..., :1] + math.sqrt(1 - shared) * layers[..., 1:]
    strength = rng.uniform(4.0, 7.0) / 255 * (0.35 + 0.65 * np.sin(math.pi * image))
    return jpeg(image + strength * grain, int(rng.integers(80, 93)))


def corner_weight(height: int, width: int) -> np.ndarray:
    """(height, width) float32: the squared distance from the frame's centre, 0 there and 1 in the corners."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot(rows / max(height - 1, 1) - 0.5, cols / max(width - 1, 1) - 0.5) / math.sqrt(0.5)
    return radius**2


def degrade_cctv(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A security camera's frame: a wide-angle lens soft toward the corners, a cheap denoiser, hard compression.

    The lens blur grows with the distance from the frame's centre; the
    sensor's noise (signal-dependent, partly shared by the channels) is half
    removed by a 3x3 median on the luma and a blur of the chroma, which leaves
    it as small blotches; the encoder then compresses hard.
    """
    image = hr.astype(np.float32)
    height, width = image.shape[:2]
    centre_sigma, corner_sigma = rng.uniform(0.5, 1.0), rng.uniform(2.0, 3.5)  # HR px
    sharp = blur(image, gaussian_kernel(21, centre_sigma, centre_sigma, 0.0))
    soft = blur(image, gaussian_kernel(21, corner_sigma, corner_sigma, 0.0))
    weight = corner_weight(height, width)[..., None]
    image = np.clip(downscale(sharp * (1 - weight) + soft * weight, scale), 0, 1).astype(np.float32)
    gain, read = rng.uniform(0.0008, 0.002), rng.uniform(0.00003, 0.0001)
    shared = rng.standard_normal((*image.shape[:2], 1)).astype(np.float32)
    own = rng.standard_normal(image.shape).astype(np.float32)
    noisy = image + np.sqrt(gain * image + read) * (0.7 * shared + math.sqrt(1 - 0.49) * own)
    luma_chroma = np.clip(noisy, 0, 1) @ _LUMA_CHROMA_TO_RGB
    luma = np.ascontiguousarray(luma_chroma[..., 0]) / math.sqrt(3)  # the channels' mean, in [0, 1]
    denoised = cv2.medianBlur(np.round(luma * 255).astype(np.uint8), 3).astype(np.float32) / 255
    luma = (0.5 * luma + 0.5 * denoised) * math.sqrt(3)
    chroma = cv2.GaussianBlur(luma_chroma[..., 1:], (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    image = np.concatenate([luma[..., None], chroma], axis=2) @ _LUMA_CHROMA_TO_RGB.T
    return jpeg(image, int(rng.integers(30, 56)))


def degrade_dashcam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A dashcam's frame: a sensor read out by skipping pixels, hot pixels, shot and read noise, JPEG.

    To keep its frame rate the sensor reads every ``scale``-th pixel instead
    of averaging them, so little blurs the image before it is decimated:
    fine detail aliases (jagged edges, moire) and the frame looks sharper
    than a properly downscaled one. A few defective pixels stay lit in one
    channel (sparse, non-Gaussian), the noise is white and signal-dependent,
    and the encoder compresses moderately.
    """
    sigma = rng.uniform(0.3, 0.6)  # HR px: the optics and the sensor's fill factor, far below an anti-alias filter
    image = blur(hr.astype(np.float32), gaussian_kernel(7, sigma, sigma, 0.0))
    row, col = (int(offset) for offset in rng.integers(0, scale, size=2))
    image = np.ascontiguousarray(image[row::scale, col::scale])  # HR / scale exactly: degrade() checks the size
    gain, read = rng.uniform(0.0005, 0.0015), rng.uniform(0.00002, 0.00008)
    shared = rng.standard_normal((*image.shape[:2], 1)).astype(np.float32)
    own = rng.standard_normal(image.shape).astype(np.float32)
    image = image + np.sqrt(gain * np.clip(image, 0, 1) + read) * (0.5 * shared + math.sqrt(0.75) * own)
    hot = rng.random(image.shape[:2]) < rng.uniform(0.0005, 0.002)
    channel = rng.integers(0, 3, size=int(hot.sum()))
    image[hot, channel] += rng.uniform(0.3, 0.8, size=int(hot.sum())).astype(np.float32)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(60, 86)))


def degrade_camcorder(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """One field of an interlaced camcorder frame: lines skipped, soft along them, 4:1:1 colour, line noise, JPEG.

    The camera keeps every ``scale``-th sensor line with little vertical
    filtering (one field of an interlaced frame), so vertical detail aliases
    (jagged near-horizontal edges, line twitter), while the analog signal's
    limited bandwidth blurs each line horizontally before it is sampled. The
    colour carries a quarter of the luma's horizontal resolution (DV's 4:1:1),
    the tape and the electronics add noise smeared along the scan lines, and
    the capture saves a JPEG.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    sigma_x, sigma_y = rng.uniform(1.2, 2.2), rng.uniform(0.3, 0.5)  # HR px: bandwidth along, optics across lines
    image = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)
    image = np.ascontiguousarray(image[scale // 2 :: scale])[:height]  # one field: every scale-th line
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)  # along the line: averaged
    ycc = cv2.cvtColor(np.clip(image, 0, 1), cv2.COLOR_RGB2YCrCb)
    quarter = cv2.resize(ycc[:, :, 1:], (max(1, width // 4), height), interpolation=cv2.INTER_AREA)
    ycc[:, :, 1:] = cv2.resize(quarter, (width, height), interpolation=cv2.INTER_LINEAR)
    luma_noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1.0, 0.01)
    luma_noise /= luma_noise.std() + 1e-8
    ycc[:, :, 0] += rng.uniform(2.0, 5.0) / 255 * luma_noise
    image = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(75, 93)))


def degrade_thumbnail(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """An app's thumbnail of a camera photo: the camera's JPEG, OpenCV's cubic resize, another JPEG.

    The camera's photo carries faint sensor noise and its own high-quality
    JPEG; the app shrinks it with ``cv2.resize(..., INTER_CUBIC)``, which
    interpolates at the LR pixel centres from the nearest 4x4 HR pixels without
    first removing the detail the LR grid cannot hold, so fine texture aliases
    and the faint noise is not averaged away; the thumbnail is saved at JPEG
    70-90.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    noisy = hr.astype(np.float32) + rng.uniform(0.5, 1.5) / 255 * rng.standard_normal(hr.shape).astype(np.float32)
    photo = jpeg(np.clip(noisy, 0, 1), int(rng.integers(88, 96)))
    thumbnail = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    return jpeg(np.clip(thumbnail, 0, 1).astype(np.float32), int(rng.integers(70, 91)))


def partly_shared_noise(image: np.ndarray, rng: np.random.Generator, gain: float, read: float) -> np.ndarray:
    """``image`` (H, W, 3 float32) plus shot and read noise of variance ``gain * image + read``, 36% of it
    common to the three channels (a sensor's noise after demosaicing and the colour matrix)."""
    shared = rng.standard_normal((*image.shape[:2], 1)).astype(np.float32)
    own = rng.standard_normal(image.shape).astype(np.float32)
    return image + np.sqrt(gain * np.clip(image, 0, 1) + read) * (0.6 * shared + 0.8 * own)


def sharpen_luma(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """An in-camera unsharp mask of the luma (Gaussian ``sigma`` px, ``amount``), on ``image`` clipped to [0, 1]."""
    ycc = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2YCrCb)
    smooth = cv2.GaussianBlur(ycc[:, :, 0], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    ycc[:, :, 0] += amount * (ycc[:, :, 0] - smooth)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def degrade_actioncam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """An action camera's video frame: pixels binned in pairs then skipped, hard sharpening, noise, JPEG.

    To read a large sensor at video rates the camera averages neighbouring
    pixels in pairs along each axis (binning) and keeps every other pair, so
    at x4 half of the anti-alias filter a downscale needs is missing: fine
    detail still folds back (aliasing), less than a sensor that skips every
    pixel. Scales without a factor 2 above it skip only. The processor then
    sharpens the luma hard (halos, crisp aliasing), the noise is shot and
    read noise of the binned pixels, and the frame is encoded at JPEG 55-80.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    binning = 2 if scale % 2 == 0 and scale > 2 else 1
    image = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.4, 0.8))  # HR px: the lens
    if binning > 1:
        image = cv2.resize(image, (image.shape[1] // binning, image.shape[0] // binning), interpolation=cv2.INTER_AREA)
    step = scale // binning
    image = np.ascontiguousarray(image[step // 2 :: step, step // 2 :: step])[:height, :width]
    gain, read = rng.uniform(0.0003, 0.001), rng.uniform(0.00001, 0.00004)
    image = partly_shared_noise(image, rng, gain, read)
    image = sharpen_luma(image, rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.4))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(55, 81)))


def phone_photo(hr: np.ndarray, rng: np.random.Generator, qualities: tuple[int, int]) -> np.ndarray:
    """A phone's full-size photo of ``hr``: faint signal-dependent noise, partly shared by the channels, and the
    phone's own JPEG at a quality in ``qualities`` (inclusive), before an app or a gallery shrinks it."""
    gain, read = rng.uniform(0.0002, 0.0008), rng.uniform(0.00001, 0.00003)
    shared = rng.standard_normal(hr.shape[:2] + (1,)).astype(np.float32)
    own = rng.standard_normal(hr.shape).astype(np.float32)
    noisy = hr.astype(np.float32) + np.sqrt(gain * np.clip(hr, 0, 1) + read) * (0.5 * shared + 0.87 * own)
    return jpeg(np.clip(noisy, 0, 1).astype(np.float32), int(rng.integers(qualities[0], qualities[1] + 1)))


def degrade_messenger(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A photo sent through a messaging app: the phone's photo, shrunk by pixel averaging, re-encoded as WebP.

    The phone's full-size photo carries faint signal-dependent noise and its
    own high-quality JPEG; the app shrinks it with an area filter (each LR
    pixel the mean of its HR block: a box, not bicubic's kernel, and the
    noise averaged down) and re-encodes it as lossy WebP at quality 25-55.
    VP8's 4x4 transforms and loop filter smooth texture and ring at edges
    without JPEG's 8x8 block grid, and its chroma is at half resolution.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    photo = phone_photo(hr, rng, qualities=(90, 96))
    shrunk = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    return webp(np.clip(shrunk, 0, 1).astype(np.float32), int(rng.integers(25, 56)))


def degrade_gallery(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A cloud photo gallery's preview: the phone's photo, shrunk with Lanczos, stored as AVIF.

    The phone's full-size photo carries faint signal-dependent noise and its
    own high-quality JPEG; the gallery shrinks it with Pillow's Lanczos filter
    (sharper than bicubic's, with ringing lobes) and stores the preview as
    lossy AVIF at quality 30-60: AV1's intra coding, whose variable block
    sizes, directional prediction and deblocking and CDEF filters leave
    smooth, painterly texture rather than blocks.
    """
    from PIL import Image

    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    photo = phone_photo(hr, rng, qualities=(92, 97))
    pixels = Image.fromarray((photo * 255).round().astype(np.uint8))
    preview = np.asarray(pixels.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    return avif(preview, int(rng.integers(30, 61)))


def degrade_archive(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A digital library's derivative of a scanned print, served as JPEG 2000.

    The flatbed scanner's optics soften the print (a Gaussian of 0.7-1.1 HR
    px) and its sensor adds faint, mostly luminance noise; the library's
    image server shrinks the master with Pillow's bilinear filter (a triangle
    kernel, softer than bicubic's) and encodes the derivative with the 9/7
    wavelet at a target of 28-34 dB PSNR. The wavelet codec has no
    blocks: it blurs texture, rings around edges and leaves colour at full
    resolution. At these targets OpenJPEG now and then ruins a channel of a
    small tile: in the demo split, one training tile of 39 (``china_t003``)
    lost about 90 levels of red over three quarters of its pixels.
    """
    from PIL import Image

    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    scan = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.7, 1.1), borderType=cv2.BORDER_REFLECT_101)
    luma = rng.standard_normal(hr.shape[:2] + (1,)).astype(np.float32)
    colour = rng.standard_normal(hr.shape).astype(np.float32)
    scan += rng.uniform(0.5, 1.5) / 255.0 * (0.9 * luma + 0.45 * colour)
    pixels = Image.fromarray((np.clip(scan, 0, 1) * 255).round().astype(np.uint8))
    derivative = np.asarray(pixels.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return jpeg2000(derivative, rng.uniform(28.0, 34.0))


def lens_and_shrink(image: np.ndarray, sigma: float, width: int, height: int) -> np.ndarray:
    """A camera's optics and sensor: a Gaussian lens blur of ``sigma`` HR px, then pixels averaged down to
    ``width`` x ``height`` (an area shrink)."""
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def lateral_chromatic_aberration(image: np.ndarray, red: float, blue: float) -> np.ndarray:
    """Red and blue magnified about the frame's centre by ``1 + red`` and ``1 + blue`` against green (bilinear)."""
    height, width = image.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    channels = []
    for channel, magnification in zip(range(3), (red, 0.0, blue)):
        # A magnified channel shows at each pixel what lies nearer the centre.
        map_rows = centre_row + (rows - centre_row) / (1 + magnification)
        map_cols = centre_col + (cols - centre_col) / (1 + magnification)
        plane = np.ascontiguousarray(image[..., channel], dtype=np.float32)
        channels.append(cv2.remap(plane, map_cols, map_rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(channels, axis=2)


def degrade_ultrawide(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A budget phone's ultra-wide camera: lateral chromatic aberration, mild blur, noise, sharpening, JPEG.

    The wide lens focuses red and blue at slightly different magnifications
    than green (0.4-0.8% and about as much the other way: up to 2-3 HR px
    apart in the corners of a 512 px photo, none at the centre), so edges
    grow red and blue fringes toward the corners; its optics blur 0.6-0.9 HR
    px. The ISP shrinks by pixel averaging, adds the small sensor's
    signal-dependent noise, sharpens the luma (which turns the fringes into
    coloured halos) and saves JPEG 80-92.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    spread = rng.uniform(0.004, 0.008)
    image = lateral_chromatic_aberration(hr.astype(np.float32), spread, -spread * rng.uniform(0.6, 1.0))
    image = lens_and_shrink(image, rng.uniform(0.6, 0.9), width, height)
    gain, read = rng.uniform(0.0005, 0.0015), rng.uniform(0.00002, 0.00006)
    image = partly_shared_noise(image, rng, gain, read)
    image = sharpen_luma(image, 1.0, rng.uniform(0.4, 0.8))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 93)))


# A camera's colour correction matrix (raw -> linear sRGB). Its rows sum to 1, so grey stays grey; its negative
# terms undo the overlap of the colour filters, and in doing so amplify the noise and set the channels'
# noise against each other. Its inverse has no negative entry, so no colour of the HR photo leaves the raw range.
_COMPACT_COLOUR_MATRIX = np.array([[1.70, -0.50, -0.20], [-0.25, 1.55, -0.30], [-0.05, -0.55, 1.60]], dtype=np.float32)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve undone (IEC 61966-2-1), for values in [0, 1]."""
    return np.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (IEC 61966-2-1), for values in [0, 1]: a slope of 12.92 at black."""
    return np.where(image <= 0.0031308, image * 12.92, 1.055 * image ** (1 / 2.4) - 0.055).astype(np.float32)


def degrade_compact(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A compact camera at high ISO: raw noise in linear light, clipped at black, through the colour matrix, JPEG.

    The lens blurs 0.5-0.8 HR px and the sensor averages pixels. Shot and read
    noise are made in the raw linear signal, each channel its own; what falls
    below the black level is lost (clipped). The colour matrix then mixes the
    channels with negative weights, so the noise grows and its colour turns
    against the signal's (red noise comes with cyan), and the sRGB curve,
    steep near black, makes it strongest in the shadows and weakest in the
    highlights: the opposite of noise added after the curve. JPEG 80-92.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.8), width, height)
    raw = srgb_to_linear(np.clip(image, 0, 1)) @ np.linalg.inv(_COMPACT_COLOUR_MATRIX).T
    gain, read = rng.uniform(0.0004, 0.001), rng.uniform(0.0015, 0.003)
    raw = raw + np.sqrt(gain * raw + read**2) * rng.standard_normal(raw.shape).astype(np.float32)
    linear = np.clip(raw, 0, 1) @ _COMPACT_COLOUR_MATRIX.T  # the black level: what fell below it is lost
    return jpeg(linear_to_srgb(np.clip(linear, 0, 1)), int(rng.integers(80, 93)))


def readout_offsets(rng: np.random.Generator, count: int, std: float) -> np.ndarray:
    """(count, 3) float32: an offset of ``std`` per readout line (a row or a column of a CMOS sensor), 81% of its
    variance shared by the three channels."""
    shared = rng.standard_normal((count, 1)).astype(np.float32)
    own = rng.standard_normal((count, 3)).astype(np.float32)
    return std * (0.9 * shared + 0.44 * own)


def degrade_nightcam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A security camera's colour night mode at high gain: a soft lens, row banding, strong noise, JPEG 65-85.

    The lens blurs 0.6-1.0 HR px and the sensor averages pixels. At high gain
    a CMOS sensor's row readout adds an offset of its own to every pixel of a
    row (1.5-3 levels, mostly shared by the channels): noise that is perfectly
    correlated along a row and not at all from one row to the next, unlike
    any grain. Shot and read noise, partly shared by the channels, come on
    top, and the stream's frame is saved at JPEG 65-85.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.6, 1.0), width, height)
    image = image + readout_offsets(rng, height, rng.uniform(1.5, 3.0) / 255)[:, None, :]
    image = partly_shared_noise(image, rng, rng.uniform(0.0006, 0.0015), rng.uniform(0.00004, 0.0001))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(65, 86)))


def degrade_digizoom(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's digital zoom: the sensor's smaller picture and its noise enlarged together, sharpened, JPEG.

    Zoomed past its lens, the camera crops the sensor and enlarges the crop
    to the output size: the sensor sees the scene at 1.3-1.8x less than the
    output's resolution (a lens of 0.5-0.8 HR px, pixels averaged down to
    that size), its shot and read noise (partly shared by the channels) is
    made at that size, and the ISP enlarges both by bilinear interpolation.
    The grain is then soft, correlated over 1-2 output pixels, and no finer
    than the picture, unlike grain made at the output size. The ISP sharpens
    the luma to hide the softness and saves JPEG 75-90.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    zoom = rng.uniform(1.3, 1.8)
    sensor_height, sensor_width = max(1, round(height / zoom)), max(1, round(width / zoom))
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.8), sensor_width, sensor_height)
    image = partly_shared_noise(image, rng, rng.uniform(0.0004, 0.0012), rng.uniform(0.00002, 0.00006))
    image = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    image = sharpen_luma(image, 1.0, rng.uniform(0.5, 1.0))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(75, 91)))


def degrade_gif(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A frame of an animated GIF made from a phone's video: the frame, reduced to a palette with dithering.

    The video frame has a lens of 0.4-0.7 HR px, pixels averaged down, faint
    signal-dependent noise partly shared by the channels, and its own JPEG
    85-95 (the video's compression, before the GIF maker decodes it). The
    GIF keeps at most 256 colours; the maker picks 48-128 for the frame
    (Pillow's median cut) and spreads each pixel's error onto its neighbours
    (Floyd-Steinberg). The error then depends on where the pixel's colour
    falls between the palette's entries, not on its brightness; smooth
    gradients get a fine dither pattern (errors anti-correlated between
    neighbours), and where the palette is sparse, contours.
    """
    from PIL import Image

    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    frame = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
    frame = partly_shared_noise(frame, rng, rng.uniform(0.0001, 0.0004), rng.uniform(0.00001, 0.00003))
    frame = jpeg(np.clip(frame, 0, 1).astype(np.float32), int(rng.integers(85, 96)))
    pixels = Image.fromarray((np.clip(frame, 0, 1) * 255).round().astype(np.uint8))
    colours = int(rng.integers(48, 129))
    indexed = pixels.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(indexed.convert("RGB"), dtype=np.float32) / 255.0


def degrade_telephoto(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A long lens through heat shimmer: the scene warped by a smooth random field, softened, noise, JPEG.

    Air of uneven temperature between a telephoto lens and a distant subject
    (a wildlife or surveillance camera on a warm day) bends the light: each
    part of the frame is displaced by its own small amount (a smooth random
    field, 1-2.5 HR px in std, correlated over about 20-40 HR px), so straight
    edges wobble and textures shift against their neighbours, and the air's
    blur on top of the lens's softens everything by 0.9-1.5 HR px. The sensor
    averages pixels and adds shot and read noise partly shared by the
    channels; the camera saves JPEG 70-88.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    hr_height, hr_width = hr.shape[:2]
    correlation = rng.uniform(20.0, 40.0)
    amplitude = rng.uniform(1.0, 2.5)
    displacement = []
    for _ in range(2):
        field = rng.standard_normal((hr_height, hr_width)).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), correlation / 2, borderType=cv2.BORDER_REFLECT_101)
        displacement.append(amplitude * field / max(float(field.std()), 1e-6))
    rows, cols = np.mgrid[0:hr_height, 0:hr_width].astype(np.float32)
    warped = cv2.remap(
        hr.astype(np.float32),
        cols + displacement[0],
        rows + displacement[1],
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    image = lens_and_shrink(np.clip(warped, 0, 1), rng.uniform(0.9, 1.5), width, height)
    image = partly_shared_noise(image, rng, rng.uniform(0.0005, 0.0015), rng.uniform(0.00003, 0.00008))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(70, 89)))


def degrade_vhs(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A frame captured from a VHS tape: bandwidth-limited luma, smeared colour, line jitter, streaky noise, JPEG.

    Tape stores the picture line by line as an analogue signal. Its luma
    bandwidth softens detail along each line (a Gaussian of 1.5-3 HR px
    across columns, 0.5-0.8 HR px down rows), and its colour carrier far
    more (8-14 HR px along the lines): colour bleeds past edges sideways,
    not up and down. The deck's time-base wanders, so each line starts a
    little early or late (a smooth drift over 8-24 lines of 0.15-0.4 LR px
    std, plus 0.05-0.15 LR px of its own). The tape's noise is streaky:
    luma noise correlated along a line over 1-2 LR px and not across lines,
    colour noise over 3-6 LR px. The deck's edge enhancement sharpens along
    the lines (halos on vertical edges), and the capture card saves JPEG
    85-95.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = hr.astype(np.float32)
    luma_sigma, colour_sigma = rng.uniform(1.5, 3.0), rng.uniform(8.0, 14.0)
    luma = image @ LUMA_WEIGHTS
    colour = image - luma[..., None]
    vertical = rng.uniform(0.5, 0.8)
    luma = cv2.GaussianBlur(luma, (0, 0), luma_sigma, sigmaY=vertical, borderType=cv2.BORDER_REFLECT_101)
    colour = cv2.GaussianBlur(colour, (0, 0), colour_sigma, sigmaY=vertical, borderType=cv2.BORDER_REFLECT_101)
    image = cv2.resize(luma[..., None] + colour, (width, height), interpolation=cv2.INTER_AREA)

    drift = rng.standard_normal(height).astype(np.float32)
    drift = cv2.GaussianBlur(
        drift[:, None], (0, 0), 1e-3, sigmaY=rng.uniform(8.0, 24.0) / 2, borderType=cv2.BORDER_REFLECT_101
    ).reshape(height)
    drift = rng.uniform(0.15, 0.4) * drift / max(float(drift.std()), 1e-6)
    shift = drift + rng.uniform(0.05, 0.15) * rng.standard_normal(height).astype(np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = cv2.remap(image, cols + shift[:, None], rows, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)

    def streaks(sigma: float, channels: int) -> np.ndarray:
        white = rng.standard_normal((height, width, channels)).astype(np.float32)
        streaky = cv2.GaussianBlur(white, (0, 0), sigma, sigmaY=1e-3, borderType=cv2.BORDER_REFLECT_101)
        return (streaky / max(float(streaky.std()), 1e-6)).reshape(height, width, channels)

    luma_noise = rng.uniform(1.5, 3.5) / 255 * streaks(rng.uniform(1.0, 2.0), 1)
    colour_noise = rng.uniform(1.5, 3.0) / 255 * streaks(rng.uniform(3.0, 6.0), 2)
    image = image + luma_noise + colour_noise @ _LUMA_CHROMA_TO_RGB[:, 1:].T
    image = np.clip(image, 0, 1)
    luma = image @ LUMA_WEIGHTS
    detail = luma - cv2.GaussianBlur(luma, (0, 0), 1.0, sigmaY=1e-3, borderType=cv2.BORDER_REFLECT_101)
    image = image + rng.uniform(0.4, 0.9) * detail[..., None]
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(85, 96)))


def degrade_newsprint(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A scanned halftone print: ink dots on rotated screens, dot gain, the scanner's blur and noise, JPEG.

    A press prints each ink (cyan, magenta, yellow: one minus red, green,
    blue) as dots whose area follows the ink's amount, on a regular screen of
    its own angle (15, 75 and 0 degrees, so the three do not beat with one
    another). The screen's period, 4-7 HR px, lies near the LR grid's
    Nyquist period of 2 LR px (8 HR px): what the scanner's optics (a
    Gaussian of 0.6-1.0 HR px) leave of the dots beats with the LR grid as
    moire. The paper spreads the ink at the dots' edges (a soft threshold,
    0.1-0.2 of full coverage wide). The scanner adds faint white noise (1-2
    levels) and saves a JPEG of quality 80-92.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    rows, cols = np.mgrid[0 : hr.shape[0], 0 : hr.shape[1]].astype(np.float32)
    period, softness = rng.uniform(4.0, 7.0), rng.uniform(0.1, 0.2)
    ink = 1.0 - hr.astype(np.float32)
    printed = np.empty_like(ink)
    for channel, degrees in enumerate((75.0, 15.0, 0.0)):  # cyan (red), magenta (green), yellow (blue)
        angle = math.radians(degrees)
        u = 2 * math.pi * (cols * math.cos(angle) + rows * math.sin(angle)) / period + rng.uniform(0, 2 * math.pi)
        v = 2 * math.pi * (rows * math.cos(angle) - cols * math.sin(angle)) / period + rng.uniform(0, 2 * math.pi)
        screen = (np.cos(u) * np.cos(v) + 1) / 2  # a dot screen: each cell's threshold rises from its centre
        coverage = np.clip((ink[:, :, channel] - screen) / softness + 0.5, 0, 1)
        printed[:, :, channel] = 1.0 - coverage
    image = cv2.GaussianBlur(printed, (0, 0), rng.uniform(0.6, 1.0), borderType=cv2.BORDER_REFLECT_101)
    image = downscale(np.clip(image, 0, 1), scale)[:height, :width]
    image = image + rng.uniform(1.0, 2.0) / 255 * rng.standard_normal(image.shape).astype(np.float32)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 93)))


def degrade_photoscan(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """An old photo print on a flatbed scanner: paper grain, dust, scratches, the scanner's blur and noise, JPEG.

    The print's paper has a fine texture that modulates every tone (a
    multiplicative field of 1-3%, correlated over 1-2 HR px). Dust on the
    glass casts sparse dark specks (20-120 per HR megapixel, 2-8 HR px
    across, soft edged, 40-80% darker), and the print
    carries 0-3 hairline scratches where the emulsion is gone: thin pale
    curves 1-2 HR px wide. The scanner's optics (a Gaussian of 0.5-0.9 HR px)
    and a bicubic shrink follow, then faint sensor noise (1-2.5 levels) and a
    JPEG of quality 85-95. Sparse, image-locked defects: neither a grain nor
    a blur.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    hr_height, hr_width = hr.shape[:2]
    image = hr.astype(np.float32).copy()
    texture = cv2.GaussianBlur(
        rng.standard_normal((hr_height, hr_width)).astype(np.float32),
        (0, 0),
        rng.uniform(0.8, 1.6),
        borderType=cv2.BORDER_REFLECT_101,
    )
    texture = texture / max(float(texture.std()), 1e-6)
    image = image * (1.0 + rng.uniform(0.01, 0.03) * texture)[:, :, None]
    shade = np.ones((hr_height, hr_width), np.float32)
    for _ in range(int(rng.poisson(rng.uniform(20, 120) * hr_height * hr_width / 1e6))):
        radius, darkness = rng.uniform(1.0, 4.0), rng.uniform(0.4, 0.8)
        centre_row, centre_col = rng.uniform(0, hr_height), rng.uniform(0, hr_width)
        # only the speck's own window: beyond radius + 0.5 it darkens nothing
        top, left = max(0, int(centre_row - radius) - 1), max(0, int(centre_col - radius) - 1)
        bottom = min(hr_height, int(centre_row + radius) + 2)
        right = min(hr_width, int(centre_col + radius) + 2)
        rows, cols = np.mgrid[top:bottom, left:right].astype(np.float32)
        distance = np.hypot(rows - centre_row, cols - centre_col)
        shade[top:bottom, left:right] *= 1.0 - darkness * np.clip(radius + 0.5 - distance, 0, 1)
    image = image * shade[:, :, None]
    for _ in range(int(rng.integers(0, 4))):
        # a smooth random curve: a start, a heading that drifts, 200-600 HR px long
        points = [np.array([rng.uniform(0, hr_width), rng.uniform(0, hr_height)])]
        heading = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(40, 120))):
            heading += rng.normal(0, 0.08)
            points.append(points[-1] + 5.0 * np.array([math.cos(heading), math.sin(heading)]))
        mask = np.zeros((hr_height, hr_width), np.float32)
        curve = np.round(np.stack(points) * 4).astype(np.int32)  # 2 bits of sub-pixel precision
        cv2.polylines(mask, [curve], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA, shift=2)
        image = image + (rng.uniform(0.85, 1.0) - image) * mask[:, :, None] * rng.uniform(0.6, 1.0)
    image = cv2.GaussianBlur(np.clip(image, 0, 1), (0, 0), rng.uniform(0.5, 0.9), borderType=cv2.BORDER_REFLECT_101)
    image = downscale(image, scale)[:height, :width]
    image = image + rng.uniform(1.0, 2.5) / 255 * rng.standard_normal(image.shape).astype(np.float32)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(85, 96)))


def degrade_machinevision(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """An industrial camera's frame, saved losslessly: fixed-pattern noise, shot and read noise, no codec.

    A lens of 0.4-0.8 HR px and a sensor that averages pixels. A CMOS sensor
    without on-chip correction has two fixed patterns: every pixel's gain
    differs a little (photo-response non-uniformity, 1-2% of the signal,
    white) and every column's readout amplifier adds an offset of its own
    (1-2.5 levels, mostly shared by the channels): faint vertical stripes
    through the whole frame, perfectly correlated down a column and not at all
    across. Shot and read noise, partly shared by the channels, come on top;
    the frame is quantised to 8 bits and saved as PNG: no compression at all.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.4, 0.8), width, height)
    gain_pattern = 1.0 + rng.uniform(0.01, 0.02) * rng.standard_normal(image.shape).astype(np.float32)
    image = image * gain_pattern
    image = image + readout_offsets(rng, width, rng.uniform(1.0, 2.5) / 255)[None, :, :]
    image = partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00002, 0.00006))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.float32) / 255


def degrade_hdrphone(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's HDR photo: local tone mapping that boosts detail, most in the shadows, and the noise with it; JPEG.

    A lens of 0.5-0.9 HR px and a sensor that averages pixels; shot and read
    noise, partly shared by the channels. The phone's local tone mapping then
    splits the image into a base (a Gaussian of 3-6 LR px) and the detail
    above it, and adds the detail back boosted: by 1.25-1.45x in the
    highlights up to 2-2.8x in the shadows, following the base's brightness.
    The local means stay where they were (no tone shift); the detail, the
    noise, and a halo along every edge larger than the base's scale grow,
    most where the scene is dark. JPEG 82-94.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.9), width, height)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0002, 0.0005), rng.uniform(0.00002, 0.00006)), 0, 1)
    base = cv2.GaussianBlur(image, (0, 0), rng.uniform(3.0, 6.0), borderType=cv2.BORDER_REFLECT_101)
    darkness = 1.0 - np.clip(base @ LUMA_WEIGHTS.astype(np.float32), 0, 1)
    boost = 1.0 + rng.uniform(0.5, 0.9) * (0.5 + 1.5 * darkness**2)
    image = base + boost[:, :, None] * (image - base)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(82, 95)))


def degrade_toycam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A plastic toy-camera lens: a sharp core with a wide skirt of veiling glare, pixel averaging, noise, JPEG.

    The lens's point spread is a mixture: 70-88% of the light in a core of
    0.5-0.9 HR px, the rest in a skirt of 12-24 HR px (3-6 LR px). Fine detail
    survives, but every bright region spills a faint glow over its
    surroundings: dark areas next to bright ones lift, local contrast drops,
    the mean of the whole frame stays. The sensor averages pixels, adds shot
    and read noise partly shared by the channels; JPEG 75-90.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    glare = rng.uniform(0.12, 0.30)
    skirt = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(12.0, 24.0), borderType=cv2.BORDER_REFLECT_101)
    core = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.5, 0.9), borderType=cv2.BORDER_REFLECT_101)
    image = cv2.resize((1 - glare) * core + glare * skirt, (width, height), interpolation=cv2.INTER_AREA)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0002, 0.0006), rng.uniform(0.00002, 0.00008)), 0, 1)
    return jpeg(image.astype(np.float32), int(rng.integers(75, 91)))


def degrade_drone(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A drone's video frame: rolling-shutter wobble, a short motion blur, pixel averaging, noise, codec blocks.

    The sensor is read row by row while the airframe vibrates, so every row
    is caught at its own moment of the vibration and shifted sideways along
    a sine of the row (1-2.5 HR px, a period of 40-120 HR rows, a random
    phase): vertical edges wobble as whole rows, nothing moves down. The
    exposure adds a short straight motion blur (2-4 HR px, any direction),
    a lens of 0.4-0.7 HR px, and the sensor averages pixels; shot and read
    noise, partly shared by the channels. The video codec's 8x8 blocks stand
    in as JPEG 60-80.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    rows, cols = np.mgrid[0 : hr.shape[0], 0 : hr.shape[1]].astype(np.float32)
    amplitude, period = rng.uniform(1.0, 2.5), rng.uniform(40.0, 120.0)
    shift = amplitude * np.sin(2 * math.pi * rows / period + rng.uniform(0, 2 * math.pi))
    image = cv2.remap(hr.astype(np.float32), cols + shift, rows, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    image = blur(np.clip(image, 0, 1), motion_kernel(rng.uniform(2.0, 4.0), rng.uniform(0, math.pi), 7))
    image = lens_and_shrink(image, rng.uniform(0.4, 0.7), width, height)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00002, 0.00006)), 0, 1)
    return jpeg(image.astype(np.float32), int(rng.integers(60, 81)))


def degrade_wdrcam(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A wide-dynamic-range security camera: strong noise, an edge-keeping denoiser, local contrast, codec blocks.

    A lens of 0.5-0.9 HR px and a sensor that averages pixels; shot and read
    noise, stronger than a phone's, partly shared by the channels. The
    camera's denoiser is edge-keeping (a bilateral filter of 1-1.5 LR px that
    leaves steps over 6-12 levels alone): flat areas come out smooth with a
    faint mottle, edges and texture keep their noise. Its wide-dynamic-range
    mode then adds the detail above a local mean (a Gaussian of 1.5-3 LR px)
    back boosted by 1.2-1.5x, the same in dark and bright areas. The encoder
    compresses hard: JPEG 45-70.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.9), width, height)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0008, 0.0016), rng.uniform(0.00003, 0.0001)), 0, 1)
    image = cv2.bilateralFilter(image.astype(np.float32), 5, rng.uniform(6.0, 12.0) / 255, rng.uniform(1.0, 1.5))
    base = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.5, 3.0), borderType=cv2.BORDER_REFLECT_101)
    image = base + rng.uniform(1.2, 1.5) * (image - base)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(45, 71)))


def degrade_videocall(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A video call's frame as the receiver sees it: sent at a lower resolution, coarsely coded, upscaled, sharpened.

    The sender's webcam: a lens of 0.5-0.9 HR px, a sensor that averages
    pixels, shot and read noise partly shared by the channels. To fit the
    bandwidth the call shrinks the frame to 50-75% of its size (pixel
    averaging) and codes it coarsely (JPEG 30-50: 8x8 blocks of the smaller
    frame, 11-16 px blocks at the frame's own size); the receiver scales it
    back up bilinearly and sharpens the luma a little (an unsharp mask of
    1 LR px, 0.3-0.7): soft detail, faint halos, blocks off the frame's grid.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.9), width, height)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0004, 0.001), rng.uniform(0.00002, 0.00006)), 0, 1)
    fraction = rng.uniform(0.5, 0.75)
    sent_size = (max(8, round(width * fraction)), max(8, round(height * fraction)))
    sent = cv2.resize(image.astype(np.float32), sent_size, interpolation=cv2.INTER_AREA)
    sent = jpeg(sent, int(rng.integers(30, 51)))
    image = cv2.resize(sent, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(sharpen_luma(image, 1.0, rng.uniform(0.3, 0.7)), 0, 1).astype(np.float32)


def degrade_substream(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A security recorder's sub-stream: the camera's full frame, shrunk by nearest-neighbour and coded hard.

    The camera's main stream: a lens of 0.4-0.8 HR px, shot and read noise
    made at the full resolution and partly shared by the channels, its own
    high-quality coding (JPEG 85-95). The recorder makes the low-bandwidth
    sub-stream from it with the cheapest resize, nearest-neighbour as
    OpenCV's ``INTER_NEAREST`` does it (each LR pixel one HR pixel, the first
    of its block: no filter, so detail and the full-resolution noise alias),
    and codes it hard (JPEG 40-65).
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.4, 0.8), borderType=cv2.BORDER_REFLECT_101)
    image = np.clip(partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00002, 0.00005)), 0, 1)
    image = jpeg(image.astype(np.float32), int(rng.integers(85, 96)))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(40, 66)))


def degrade_album(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A shared family album: each photo from one of two phones of unlike character, half from each.

    The new phone's night shot: a lens of 0.4-0.7 HR px, pixels averaged,
    strong shot and read noise made at the output's size and partly shared by
    the channels (7-12 levels at mid-grey), JPEG 85-95. The old phone's
    picture, re-shared through a chat app: a soft lens (1.0-1.8 HR px), faint
    noise and the phone's JPEG 88-95 at full size, pixels averaged, then the
    app's JPEG 30-50. Which phone took an image is drawn per image, so a set
    holds both and no image says which it is but by its look.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    if rng.random() < 0.5:
        image = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
        image = partly_shared_noise(image, rng, rng.uniform(0.0015, 0.004), rng.uniform(0.00005, 0.0002))
        return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(85, 96)))
    image = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(1.0, 1.8), borderType=cv2.BORDER_REFLECT_101)
    image = np.clip(partly_shared_noise(image, rng, 0.0001, 0.00001), 0, 1)
    photo = jpeg(image.astype(np.float32), int(rng.integers(88, 96)))
    shared = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    return jpeg(np.clip(shared, 0, 1).astype(np.float32), int(rng.integers(30, 51)))


def degrade_shading(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone camera module whose lens shading correction lifts the corners, and their noise with them.

    A small lens lights the sensor's corners less than its centre (here a
    quadratic fall-off with the distance from the frame's centre, to 35-55%
    of the centre's light in the corners); the sensor records that dimmer
    picture (a lens of 0.5-0.9 HR px, pixels averaged, shot and read noise
    partly shared by the channels, clipped) and the phone's image processor
    multiplies each pixel back by the inverse of the fall-off. The brightness
    comes out even; the noise does not: at the same brightness a corner's
    noise is 1.5-2x the centre's. Then JPEG 75-90. The first source whose
    noise level depends on where a pixel lies in the frame, not only on its
    brightness.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.9), width, height)
    falloff = (1 - (1 - rng.uniform(0.35, 0.55)) * corner_weight(height, width))[:, :, None].astype(np.float32)
    recorded = partly_shared_noise(image * falloff, rng, rng.uniform(0.0004, 0.001), rng.uniform(0.00002, 0.00006))
    corrected = np.clip(recorded, 0, 1) / falloff
    return jpeg(np.clip(corrected, 0, 1).astype(np.float32), int(rng.integers(75, 91)))


def smooth_field(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """(height, width) float32: white noise blurred by a Gaussian of ``sigma`` px, then standardised (mean 0,
    std 1): a stand-in for a scene's depth map."""
    field = rng.standard_normal((height, width)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return (field - field.mean()) / (field.std() + 1e-8)


def degrade_portrait(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's portrait mode: a synthetic background blur over part of each frame, the rest left sharp.

    The phone estimates a depth map and blurs what it takes for background
    with a disk (a lens's bokeh) of 1.0-2.5 LR px; here the depth map is a
    smooth random field over the frame (a Gaussian of a sixth of its size),
    and the background the 30-60% of it where the field is highest, with a
    soft edge of a few pixels. The camera itself: a lens of 0.4-0.7 HR px,
    pixels averaged, faint shot and read noise partly shared by the
    channels (blurred with the background, as the phone blurs after its
    denoiser leaves a little), a mild sharpening of the luma, JPEG 80-94.
    The first source whose blur covers part of each image and not the rest.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
    image = partly_shared_noise(image, rng, rng.uniform(0.0002, 0.0005), rng.uniform(0.00001, 0.00003))
    depth = smooth_field(rng, height, width, max(height, width) / 6)
    edge = np.quantile(depth, 1 - rng.uniform(0.3, 0.6))
    background = np.clip((depth - edge) / 0.4 + 0.5, 0, 1)[:, :, None]
    radius = rng.uniform(1.0, 2.5)
    bokeh = blur(image, disk_kernel(radius, 2 * math.ceil(radius) + 3))
    image = sharpen_luma(image * (1 - background) + bokeh * background, 1.0, rng.uniform(0.3, 0.6))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 95)))


def degrade_autofocus(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A compact camera whose autofocus misses on some frames: those soft as a whole, the others sharp.

    About 40% of the frames, drawn frame by frame, are out of focus: the lens's
    defocus, a disk of 1.0-2.2 LR px, over the whole frame; the others get the
    lens alone (0.4-0.7 HR px). Then pixels averaged, shot and read noise
    partly shared by the channels, JPEG 78-92. The set mixes sharp and soft
    images, where ``portrait`` mixes sharp and soft regions in every image.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
    if rng.random() < 0.4:
        radius = rng.uniform(1.0, 2.2)
        image = blur(image, disk_kernel(radius, 2 * math.ceil(radius) + 3))
    image = partly_shared_noise(image, rng, rng.uniform(0.0005, 0.0012), rng.uniform(0.00002, 0.00006))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(78, 93)))


def degrade_autoiso(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone whose auto-ISO sets the gain frame by frame: the noise level differs from image to image.

    The gain is drawn log-uniformly over 1-16x the base ISO; the shot noise's
    variance grows with it, the read noise's with its square (before the codec,
    from dark to bright grey: 1.0-2.7 levels at 1x, 8.9-13.4 at 16x). A lens
    of 0.4-0.7 HR px, pixels averaged, the noise partly shared by the
    channels, JPEG 80-92. Every earlier source drew one noise level for all
    its frames, or two (``album``).
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
    gain = float(np.exp(rng.uniform(0.0, np.log(16.0))))
    image = partly_shared_noise(image, rng, 0.00012 * gain, 0.000004 * gain**2)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 93)))


def degrade_awb(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone whose auto white balance misjudges the light frame by frame: a colour cast per image.

    Red and blue are scaled against green by gains drawn per frame (log-normal,
    5% either way, clipped at 12%) in linear light, after the sensor's noise,
    as a camera applies its white balance to the raw signal: each frame has a
    cast of its own and its noise is tinted with it, while over the set the
    casts average out. A lens of 0.5-0.8 HR px, pixels averaged, shot and read
    noise partly shared by the channels, JPEG 82-94. Every earlier source left
    the colour balance alone or changed it the same way in every frame.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.5, 0.8), width, height)
    image = partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00001, 0.00004))
    gains = np.exp(np.clip(rng.normal(0.0, 0.05, size=2), -0.12, 0.12))
    linear = np.clip(image, 0, 1) ** 2.2
    linear[:, :, 0] *= gains[0]
    linear[:, :, 2] *= gains[1]
    image = np.clip(linear, 0, 1) ** (1 / 2.2)
    return jpeg(image.astype(np.float32), int(rng.integers(82, 95)))


def degrade_haze(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A camera looking through haze: a veil of scattered light over each frame, strongest where the scene is far.

    The scattering model of dehazing (Koschmieder's law): each pixel is the
    scene times its transmission t plus the veil's colour (a bluish grey of
    0.75-0.9) times 1 - t. The veil's share 1 - t is 10-30% on average,
    varying by up to half that over the frame as a smooth field (a Gaussian
    of a quarter of its size) stands in for depth. Contrast drops and
    blacks lift, detail stays sharp. A lens of 0.6-1.0 HR px (the
    scattering softens a little too), pixels averaged, shot and read noise
    partly shared by the channels, JPEG 75-90. ``toycam``'s glare spreads
    the scene's own light over its surroundings; this veil is light from
    elsewhere, the same wherever the scene is dark or bright.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.6, 1.0), width, height)
    depth = smooth_field(rng, height, width, max(height, width) / 4)
    veil_share = rng.uniform(0.1, 0.3)
    veil = np.clip(veil_share * (1 + 0.25 * depth), 0.02, 0.5)[:, :, None]
    grey = rng.uniform(0.75, 0.9)
    airlight = np.array([grey * 0.95, grey, min(1.0, grey * rng.uniform(1.03, 1.1))], dtype=np.float32)
    image = image * (1 - veil) + airlight * veil
    image = partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00001, 0.00004))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(75, 91)))


def barrel_positions(height: int, width: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of a straight (undistorted) ``height`` x ``width`` frame lies on a sensor whose lens
    squeezes the periphery: radius ``r -> r (1 - strength r^2)`` about the centre, ``r`` = 1 at the corners.

    (x, y) float32 maps of sensor positions in pixels, as ``cv2.remap`` takes them.
    """
    half_diagonal = math.hypot(height / 2, width / 2)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = (y - (height - 1) / 2) / half_diagonal, (x - (width - 1) / 2) / half_diagonal
    squeeze = 1 - strength * (dx**2 + dy**2)
    return dx * squeeze * half_diagonal + (width - 1) / 2, dy * squeeze * half_diagonal + (height - 1) / 2


def straight_positions(height: int, width: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of ``barrel_positions``: where each sensor pixel's centre lies in the straight frame
    (fixed-point iterations of ``r = r_sensor / (1 - strength r^2)``; it converges for strength < 0.25)."""
    half_diagonal = math.hypot(height / 2, width / 2)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sy, sx = (y - (height - 1) / 2) / half_diagonal, (x - (width - 1) / 2) / half_diagonal
    dy, dx = sy.copy(), sx.copy()
    for _ in range(20):
        squeeze = 1 - strength * (dx**2 + dy**2)
        dy, dx = sy / squeeze, sx / squeeze
    return dx * half_diagonal + (width - 1) / 2, dy * half_diagonal + (height - 1) / 2


def degrade_dewarp(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's wide camera whose processor corrects its lens's barrel distortion: soft corners, spread grain.

    The lens squeezes the periphery onto the sensor (radius r -> r (1 - k r^2)
    with k 0.05-0.1, r = 1 at the corners), so a sensor pixel there covers
    1.15-1.4x more of the scene than at the centre: the scene, through a lens
    of 0.4-0.7 HR px and averaged over each pixel's footprint, is sampled on
    that squeezed grid, shot and read noise partly shared by the channels are
    added there, and the processor remaps the frame back to straight lines
    with bilinear interpolation. The centre is as sharp as the sensor; toward
    the corners the detail is the squeezed grid's, stretched, and each
    output pixel's grain is a blend of its sensor neighbours'. JPEG 80-92.
    The first source that resamples the frame by a varying factor.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    strength = rng.uniform(0.05, 0.1)
    reflect = cv2.BORDER_REFLECT_101
    scene = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.4, 0.7), borderType=reflect)
    # Each sensor pixel averages its footprint: scale HR px at the centre, up to 1.4x that in the corners.
    scene = cv2.blur(scene, (scale, scale), borderType=reflect)
    corner_footprint = 1 / (1 - 3 * strength) - 1
    scene_wide = cv2.GaussianBlur(scene, (0, 0), scale * corner_footprint, borderType=reflect)
    straight_x, straight_y = straight_positions(height, width, strength)
    # A box of even side ends half an HR px after its anchor: its average over LR pixel i's footprint sits at
    # (i + 0.5) * scale, not at the footprint's centre (i + 0.5) * scale - 0.5.
    hr_x, hr_y = (straight_x + 0.5) * scale, (straight_y + 0.5) * scale  # float32, as cv2.remap takes them
    sharp = cv2.remap(scene, hr_x, hr_y, cv2.INTER_LINEAR, borderMode=reflect)
    wide = cv2.remap(scene_wide, hr_x, hr_y, cv2.INTER_LINEAR, borderMode=reflect)
    radius2 = corner_weight(height, width)[:, :, None]
    sensor = sharp * (1 - radius2) + wide * radius2
    sensor = partly_shared_noise(sensor, rng, rng.uniform(0.0004, 0.001), rng.uniform(0.00002, 0.00005))
    map_x, map_y = barrel_positions(height, width, strength)
    image = cv2.remap(np.clip(sensor, 0, 1), map_x, map_y, cv2.INTER_LINEAR, borderMode=reflect)
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 93)))


def degrade_logvideo(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A frame of a phone's log-profile video, saved as shot: flat, lifted blacks, rolled-off highlights, muted.

    Video meant for grading keeps the sensor's range with a logarithmic curve
    instead of a display's: the linear light ``x`` goes to
    ``black + (white - black) * log(1 + a x) / log(1 + a)`` with ``a`` 10-40
    (the shadows' slope steep, the highlights' shallow), black at 5-10% and
    white at 92-97% of full scale, and colour is muted by 10-25% toward the
    luma. Seen ungraded, as a user who shares the clip sees it, the whole
    frame looks flat. The sensor: a lens of 0.5-0.8 HR px, pixels averaged,
    shot and read noise partly shared by the channels made in linear light
    (so the curve lifts the shadows' noise with them). Then the codec's 8x8
    blocks as JPEG 70-88. Every earlier source kept the display's tone curve.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    linear = srgb_to_linear(np.clip(lens_and_shrink(hr, rng.uniform(0.5, 0.8), width, height), 0, 1))
    linear = np.clip(
        partly_shared_noise(linear, rng, rng.uniform(0.0002, 0.0005), rng.uniform(0.000002, 0.00001)), 0, 1
    )
    steepness = rng.uniform(10.0, 40.0)
    black, white = rng.uniform(0.05, 0.1), rng.uniform(0.92, 0.97)
    coded = black + (white - black) * np.log1p(steepness * linear) / np.log1p(steepness)
    luma = coded @ LUMA_WEIGHTS
    coded = luma[:, :, None] + (1 - rng.uniform(0.1, 0.25)) * (coded - luma[:, :, None])
    return jpeg(np.clip(coded, 0, 1).astype(np.float32), int(rng.integers(70, 89)))


def degrade_fringe(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A fast lens wide open, whose colours focus at different depths: blue and red fringes along every edge.

    Axial (longitudinal) chromatic aberration: the lens brings green to focus
    on the sensor and red and blue in front of or behind it, so each colour
    is blurred by its own amount: green by 0.4-0.7 HR px, red by 0.9-1.5,
    blue by 1.6-3.0. Luma, mostly green, stays nearly sharp; every
    high-contrast edge grows a soft blue-purple fringe, widest beside
    highlights. ``ultrawide``'s lateral aberration moves the colours apart
    toward the corners; this one softens them unequally everywhere. Then
    pixels averaged, shot and read noise partly shared by the channels, JPEG
    80-92.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    sigmas = (rng.uniform(0.9, 1.5), rng.uniform(0.4, 0.7), rng.uniform(1.6, 3.0))
    channels = [
        lens_and_shrink(np.ascontiguousarray(hr[:, :, channel]), sigma, width, height)
        for channel, sigma in enumerate(sigmas)
    ]
    image = np.stack(channels, axis=2)
    image = partly_shared_noise(image, rng, rng.uniform(0.0003, 0.0008), rng.uniform(0.00001, 0.00004))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(80, 93)))


def degrade_burstmerge(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's burst merge: noise averaged down where the frames agreed, a single frame's noise where they did not.

    The phone takes 4-8 frames and averages them where the scene held still;
    where something moved it keeps one frame, to avoid ghosts. Here the moving
    parts are the 20-45% of the frame where a smooth random field (a Gaussian
    of a twelfth of the frame's size) is highest, with a soft edge of a few
    pixels, so a frame holds blobs of strong noise beside areas of weak noise
    of the same brightness. The single frame's shot and read noise is that of
    a small sensor in dim light, partly shared by the channels; the merged
    areas carry it divided by the square root of the frame count. A lens of
    0.4-0.7 HR px, pixels averaged, a mild sharpening of the luma, JPEG
    82-94. ``shading``'s noise follows the position in the frame (the
    corners), ``autoiso``'s changes from frame to frame; this one changes
    within a frame at places tied to neither.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    image = lens_and_shrink(hr, rng.uniform(0.4, 0.7), width, height)
    single_frame = partly_shared_noise(image, rng, rng.uniform(0.001, 0.002), rng.uniform(0.00004, 0.0001)) - image
    frames = int(rng.integers(4, 9))
    motion = smooth_field(rng, height, width, max(height, width) / 12)
    edge = np.quantile(motion, 1 - rng.uniform(0.2, 0.45))
    moved = np.clip((motion - edge) / 0.4 + 0.5, 0, 1)[:, :, None]
    image = image + single_frame * (moved + (1 - moved) / math.sqrt(frames))
    image = sharpen_luma(image, 1.0, rng.uniform(0.2, 0.5))
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(82, 95)))


def degrade_stabilized(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's stabilized video frame: the sensor's tilted frame turned back by bilinear interpolation.

    The hand turns the phone by 0.5-2 degrees (either way) and shifts it by
    a fraction of a pixel, so the sensor samples the scene (through a lens of
    0.4-0.7 HR px, each pixel averaging its footprint) on a grid tilted
    against it, and its shot and read noise, partly shared by the channels,
    lands on that grid. Electronic stabilization turns the frame back so the
    scene stands straight: each output pixel is a bilinear blend of the four
    sensor pixels around its position, whose fractional part drifts across
    the frame with the angle. Where it is near half a pixel the detail is
    softened and the grain averaged down (to a quarter of its variance at
    the centre of four pixels); where it is near a whole pixel both are as
    the sensor left them. A video codec's blocks, JPEG 70-88. ``dewarp``
    resamples by a factor that grows toward the corners; this one by a
    constant factor of 1 at a phase that changes across the frame.
    """
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    reflect = cv2.BORDER_REFLECT_101
    scene = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), rng.uniform(0.4, 0.7), borderType=reflect)
    scene = cv2.blur(scene, (scale, scale), borderType=reflect)  # each sensor pixel averages its footprint
    angle = np.deg2rad(rng.uniform(0.5, 2.0)) * rng.choice([-1.0, 1.0])
    shift_x, shift_y = rng.uniform(0.0, 1.0, size=2)
    cos, sin = np.cos(angle), np.sin(angle)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    # The scene position (LR px) each sensor pixel sees; a box of even side ends half an HR px after its anchor
    # (``degrade_dewarp``), so its average over LR pixel i's footprint sits at HR position (i + 0.5) * scale.
    seen_x = centre_x + cos * (x - centre_x) - sin * (y - centre_y) + shift_x
    seen_y = centre_y + sin * (x - centre_x) + cos * (y - centre_y) + shift_y
    hr_x, hr_y = ((seen + 0.5) * scale for seen in (seen_x, seen_y))
    sensor = cv2.remap(scene, hr_x.astype(np.float32), hr_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=reflect)
    sensor = partly_shared_noise(sensor, rng, rng.uniform(0.0004, 0.001), rng.uniform(0.00002, 0.00005))
    # The stabilizer: output pixel (x, y) shows scene point (x, y), which the sensor saw at the inverse turn.
    sensor_x = centre_x + cos * (x - centre_x - shift_x) + sin * (y - centre_y - shift_y)
    sensor_y = centre_y - sin * (x - centre_x - shift_x) + cos * (y - centre_y - shift_y)
    image = cv2.remap(
        sensor, sensor_x.astype(np.float32), sensor_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=reflect
    )
    return jpeg(np.clip(image, 0, 1).astype(np.float32), int(rng.integers(70, 89)))


PRESETS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "bicubic": degrade_bicubic,
    "noise_jpeg": degrade_noise_jpeg,
    "realesrgan": degrade_realesrgan,
    "camera": degrade_camera,
    "grain": degrade_grain,
    "blur_jpeg": degrade_blur_jpeg,
    "lowlight": degrade_lowlight,
    "handheld": degrade_handheld,
    "stream": degrade_stream,
    "phone": degrade_phone,
    "webcam": degrade_webcam,
    "film": degrade_film,
    "cctv": degrade_cctv,
    "dashcam": degrade_dashcam,
    "camcorder": degrade_camcorder,
    "thumbnail": degrade_thumbnail,
    "actioncam": degrade_actioncam,
    "messenger": degrade_messenger,
    "gallery": degrade_gallery,
    "archive": degrade_archive,
    "ultrawide": degrade_ultrawide,
    "compact": degrade_compact,
    "nightcam": degrade_nightcam,
    "digizoom": degrade_digizoom,
    "gif": degrade_gif,
    "telephoto": degrade_telephoto,
    "vhs": degrade_vhs,
    "newsprint": degrade_newsprint,
    "photoscan": degrade_photoscan,
    "machinevision": degrade_machinevision,
    "hdrphone": degrade_hdrphone,
    "toycam": degrade_toycam,
    "drone": degrade_drone,
    "wdrcam": degrade_wdrcam,
    "videocall": degrade_videocall,
    "substream": degrade_substream,
    "album": degrade_album,
    "shading": degrade_shading,
    "portrait": degrade_portrait,
    "autofocus": degrade_autofocus,
    "autoiso": degrade_autoiso,
    "awb": degrade_awb,
    "haze": degrade_haze,
    "dewarp": degrade_dewarp,
    "logvideo": degrade_logvideo,
    "fringe": degrade_fringe,
    "burstmerge": degrade_burstmerge,
    "stabilized": degrade_stabilized,
}


def degrade(hr: np.ndarray, scale: int, preset: str, rng: np.random.Generator) -> np.ndarray:
    """Degrade one HR image (float RGB in [0, 1], size a multiple of ``scale``) with ``preset``.

    Returns float32 RGB of size ``HR size / scale``.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown degradation {preset!r}; choose one of {', '.join(PRESETS)}")
    if scale not in (2, 3, 4):
        raise UserError(f"scale must be 2, 3 or 4, got {scale}")
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"HR size {hr.shape[:2]} is not a multiple of the scale {scale}; mod_crop it first")
    return PRESETS[preset](hr, scale, rng)


def image_rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one image, from the run's seed and the image's name (order-independent)."""
    return np.random.default_rng(seed_keys(seed, name))


# ----------------------------------------------------------------------------- command


def _degrade_file(path: Path, out_dir: Path, scale: int, preset: str, seed: int) -> None:
    hr = mod_crop(read_image(path), scale)
    if min(hr.shape[:2]) < scale * 4:
        raise UserError(f"image {path} is too small ({hr.shape[1]}x{hr.shape[0]}) to degrade at x{scale}")
    lr = degrade(hr, scale, preset, image_rng(seed, path.stem))
    write_image(out_dir / f"{path.stem}.png", lr)


def degrade_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    scale: int,
    preset: str,
    seed: int = 0,
    num_workers: int = 0,
    overwrite: bool = False,
) -> int:
    """Degrade every image of ``input_dir`` into PNGs of the same stem in ``output_dir``."""
    from unpaired_sr.common.files import staged_output_dir

    if preset not in PRESETS:
        raise UserError(f"unknown degradation {preset!r}; choose one of {', '.join(PRESETS)}")
    paths = list_images(input_dir, "input folder")
    with staged_output_dir(output_dir, overwrite) as staging:
        job = partial(_degrade_file, out_dir=staging, scale=scale, preset=preset, seed=seed)
        map_with_progress(job, paths, num_workers, desc=f"degrade ({preset})")
    return len(paths)


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.degrade_classical", __doc__)
    parser.add_argument("--input", required=True, help="folder of HR images")
    parser.add_argument("--output", required=True, help="folder for the LR PNGs (created)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--preset", default="realesrgan", choices=list(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    count = degrade_folder(args.input, args.output, args.scale, args.preset, args.seed, args.workers, args.overwrite)
    print(f"wrote {count} images to {args.output}")


if __name__ == "__main__":
    main()
