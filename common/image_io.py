"""Reading and writing images the same way everywhere.

Every reader returns RGB, height x width x 3, whatever the file holds:
grayscale is repeated over the channels, alpha is dropped (SR datasets treat
images as opaque), palettes are expanded, CMYK JPEGs are converted. 8- and
16-bit files keep their depth in ``read_image_native`` and become float32 in
[0, 1] in ``read_image``. A file that cannot be decoded (truncated, corrupt,
not an image) raises ``ImageReadError`` naming it. The EXIF orientation is
applied (phone photos are stored sideways with a tag that says so), and an
image larger than ``max_pixels()`` is refused from its header, before it is
decoded: a small, highly compressible file can otherwise decode to gigabytes.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from unpaired_sr.common.errors import ImageReadError, UserError
from unpaired_sr.common.files import atomic_file, atomic_write_bytes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 200_000_000  # e.g. 14000 x 14000: 2.4 GB as float32 RGB
MAX_PIXELS_VARIABLE = "UNPAIRED_SR_MAX_PIXELS"
EXIF_ORIENTATION = 0x0112
# ITU-R BT.601 YCbCr from RGB, full range as JPEG (JFIF) uses it: rows Y, Cb, Cr.
RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
LUMA_WEIGHTS = RGB_TO_YCBCR[0].astype(np.float32)  # BT.601 luma from RGB


def max_pixels() -> int:
    """The largest image (width x height) a reader decodes: ``$UNPAIRED_SR_MAX_PIXELS`` or 200 M."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "")
    try:
        return int(float(text)) if text else DEFAULT_MAX_PIXELS
    except ValueError as error:
        raise UserError(f"{MAX_PIXELS_VARIABLE}={text!r} is not a number of pixels") from error


def set_max_pixels(limit: int) -> None:
    """What a command's ``--max-pixels`` does: raise or lower the decode limit for this process and its workers."""
    os.environ[MAX_PIXELS_VARIABLE] = str(int(limit))


def image_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` as displayed (EXIF orientation applied), from the header alone; None if unknown."""
    try:
        data = np.fromfile(path, dtype=np.uint8, count=1 << 20)  # headers (and EXIF) sit at the start
    except OSError:
        return None
    size, orientation = _header(data)
    if size is None:
        return None
    return (size[1], size[0]) if orientation >= 5 else size


def _header(data: np.ndarray) -> tuple[tuple[int, int] | None, int]:
    """``((width, height), EXIF orientation)`` from the file's header, without decoding its pixels.

    ``(None, 1)`` where Pillow cannot read the header (cv2 may still decode the file).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own size warning: the limit here is ours
            with Image.open(io.BytesIO(data.tobytes())) as image:
                size = image.size
                try:
                    orientation = int(image.getexif().get(EXIF_ORIENTATION, 1))
                except Exception:  # a damaged EXIF block: the pixels may still be fine
                    orientation = 1
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, 1
    return size, orientation if 1 <= orientation <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1-8) the way it is meant to be seen."""
    if orientation in (5, 6, 7, 8):
        image = image.transpose(1, 0, 2)  # 5: transposed as stored
        image = {5: image, 6: image[:, ::-1], 7: image[::-1, ::-1], 8: image[::-1]}[orientation]
    else:
        image = {1: image, 2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1]}[orientation]
    return image


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises ``UserError`` when the folder is missing or holds no image, or when
    two files differ only in extension (``a.png``, ``a.jpg``): outputs are named
    by stem, so one would silently overwrite the other.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{what} {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith("."))
    if not paths:
        others = sum(1 for p in folder.iterdir() if p.is_file())
        hint = f" ({others} other files; readable: {', '.join(IMAGE_EXTENSIONS)})" if others else ""
        raise UserError(f"{what} {folder} holds no images{hint}")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise UserError(f"{what} {folder}: {seen[path.stem].name} and {path.name} differ only in extension")
        seen[path.stem] = path
    return paths


def list_inputs(path: str | Path, what: str = "input") -> list[Path]:
    """``[path]`` for one image file, else the images of the folder ``path`` (``list_images``)."""
    path = Path(path)
    if path.is_file():
        if not is_image_file(path):
            raise UserError(f"{what} {path} is not an image file (readable: {', '.join(IMAGE_EXTENSIONS)})")
        return [path]
    return list_images(path, f"{what} folder")


@dataclass
class DecodedImage:
    """What a file holds: RGB (gray repeated), its alpha channel if any, and whether it was gray."""

    rgb: np.ndarray  # (H, W, 3), the file's own depth
    alpha: np.ndarray | None  # (H, W), same depth
    gray: bool


def read_image_native(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an RGB array (H, W, 3) of its own depth: uint8, uint16 or float32."""
    return decode_image(path).rgb


def decode_image(path: str | Path) -> DecodedImage:
    """Decode ``path`` keeping what RGB readers drop (alpha, grayness), for tools that write it back."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(f"cannot read image {path}: {error.strerror or error}") from error
    if data.size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty")
    size, orientation = _header(data)
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        raise ImageReadError(
            f"image {path} is {size[0]}x{size[1]} ({size[0] * size[1]:,} px), above the limit of "
            f"{limit:,} px; raise it with --max-pixels or {MAX_PIXELS_VARIABLE} if this is intended"
        )
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"cannot decode image {path}: truncated, corrupt or not an image")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageReadError(f"image {path} has unsupported sample type {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageReadError(f"image {path} has {channels} channels; expected 1 to 4")
    if image.dtype == np.float32:
        if not np.isfinite(image).all():
            raise ImageReadError(f"image {path} holds NaN or infinite values")
        image = np.clip(image, 0.0, 1.0)
    image = apply_orientation(image, orientation)
    gray = channels in (1, 2)
    rgb = np.repeat(image[:, :, :1], 3, axis=2) if gray else np.ascontiguousarray(image[:, :, 2::-1])  # from BGR
    alpha = np.ascontiguousarray(image[:, :, -1]) if channels in (2, 4) else None
    return DecodedImage(rgb, alpha, gray)


def to_float32(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32, copy=False)


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to float32 RGB (H, W, 3) in [0, 1]."""
    return to_float32(read_image_native(path))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with rounding (uint8 passes through)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.float32) / 257.0).round()).astype(np.uint8)
    if not np.isfinite(image).all():
        raise UserError("refusing to write an image with NaN or infinite values")
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint16 with rounding (uint16 passes through, uint8 is widened)."""
    if image.dtype == np.uint16:
        return image
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if not np.isfinite(image).all():
        raise UserError("refusing to write an image with NaN or infinite values")
    return (np.clip(image, 0.0, 1.0) * 65535.0).round().astype(np.uint16)


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB (H, W, 3) or gray (H, W) image atomically; format from the extension.

    Float images are taken as [0, 1] and written as 8-bit; uint16 images keep
    16 bits in PNG and TIFF.
    """
    path = Path(path)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if not (image.dtype == np.uint16 and path.suffix.lower() in (".png", ".tif", ".tiff")):
        image = to_uint8(image)
    if image.ndim == 3:
        image = image[:, :, ::-1]
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix.lower() or ".png", np.ascontiguousarray(image), params)
    if not ok:
        raise UserError(f"cannot encode image for {path}")
    try:
        atomic_write_bytes(path, encoded.tobytes())
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error


class PngStripWriter:
    """Write a PNG strip by strip, so that the whole image never has to be in memory.

        with PngStripWriter(path, width, height, channels=3, bit_depth=8) as png:
            for rows in strips:          # uint8 (or uint16) (h, width, channels), top to bottom
                png.write_rows(rows)

    ``channels``: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA; ``bit_depth`` 8 or 16.
    Each row is filtered with PNG's "Sub" filter (the difference to the pixel
    on its left, which photos compress well with) and fed to one zlib stream;
    the file appears at ``path`` only when every row was written (temporary
    file, fsync, rename). cv2 and Pillow need the whole image to encode one.
    """

    SIGNATURE = b"\x89PNG\r\n\x1a\n"
    CHUNK_BYTES = 1 << 16
    COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type

    def __init__(self, path: str | Path, width: int, height: int, channels: int = 3, bit_depth: int = 8):
        if channels not in self.COLOUR_TYPES or bit_depth not in (8, 16):
            raise ValueError(f"PNG strips need 1-4 channels and 8 or 16 bits, got {channels} and {bit_depth}")
        self.path, self.width, self.height = Path(path), width, height
        self.channels, self.bit_depth = channels, bit_depth
        self.dtype = np.dtype(np.uint8) if bit_depth == 8 else np.dtype(np.uint16)
        self.rows_written = 0
        self._compressor = zlib.compressobj(6)
        self._pending = bytearray()
        self._writing = atomic_file(self.path)
        self._file = self._writing.__enter__()
        self._file.write(self.SIGNATURE)
        header = struct.pack(">IIBBBBB", width, height, bit_depth, self.COLOUR_TYPES[channels], 0, 0, 0)
        self._chunk(b"IHDR", header)  # no interlace

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._file.write(struct.pack(">I", len(data)) + kind + data)
        self._file.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def write_rows(self, rows: np.ndarray) -> None:
        """Append rows ``(h, width, channels)`` of the writer's depth."""
        if rows.dtype != self.dtype or rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels):
            raise ValueError(
                f"expected {self.dtype} rows (h, {self.width}, {self.channels}), got {rows.dtype} {rows.shape}"
            )
        if self.rows_written + len(rows) > self.height:
            raise ValueError(f"more than the {self.height} rows the header announced")
        rows = np.ascontiguousarray(rows.astype(">u2") if self.bit_depth == 16 else rows)  # PNG is big-endian
        flat = rows.view(np.uint8)
        flat = flat.reshape(len(rows), -1)
        step = self.channels * self.bit_depth // 8  # bytes per pixel: Sub subtracts the pixel to the left
        filtered = np.empty((len(rows), flat.shape[1] + 1), np.uint8)
        filtered[:, 0] = 1  # the Sub filter
        filtered[:, 1 : 1 + step] = flat[:, :step]
        np.subtract(flat[:, step:], flat[:, :-step], out=filtered[:, 1 + step :])  # modulo 256, as PNG wants
        self._pending += self._compressor.compress(filtered.tobytes())
        self._flush(self.CHUNK_BYTES)
        self.rows_written += len(rows)

    def _flush(self, at_least: int) -> None:
        while len(self._pending) >= max(at_least, 1):
            self._chunk(b"IDAT", bytes(self._pending[: self.CHUNK_BYTES]))
            del self._pending[: self.CHUNK_BYTES]

    def close(self) -> None:
        if self.rows_written != self.height:
            raise ValueError(f"{self.rows_written} of {self.height} rows written")
        self._pending += self._compressor.flush()
        self._flush(1)
        self._chunk(b"IEND", b"")
        self._writing.__exit__(None, None, None)

    def __enter__(self) -> PngStripWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:  # the temporary goes, ``path`` stays as it was
            self._writing.__exit__(kind, error, traceback)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) image of any supported depth -> float32 tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float32(image).transpose(2, 0, 1)))


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W) in [0, 1] -> float32 array (H, W, 3), clipped to [0, 1]."""
    if tensor.ndim != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    return tensor.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
