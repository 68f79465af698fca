"""Decoding uploads into [H, W, 3] uint8 RGB arrays, with the checks that come before it.

JPEG, PNG, WebP, BMP and TIFF; EXIF orientation applied; grayscale, palette, CMYK, alpha and
16-bit images converted. The declared size is checked against the pixel limit from the header,
before any pixel data is decoded (decompression bombs).
"""
import io
import warnings
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ServiceError

FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF")
CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/x-ms-bmp",
                 "image/tiff")


class ImageError(ServiceError):
    """An upload that cannot be served; `status` is the HTTP status to answer with."""


def check_content_type(content_type: Optional[str]) -> None:
    """415 for a declared type that is not one of the supported image types."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base not in CONTENT_TYPES:
        raise ImageError(415, f"unsupported content type {base or '(none)'!r}; send one of "
                              f"{', '.join(CONTENT_TYPES)} as the body or as multipart field "
                              "'image'")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max(initial=0) > 255 or image.mode != "I" else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return image


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def decode(data: bytes, max_pixels: int,
           check_size: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """Upload bytes -> [H, W, 3] uint8 RGB; raises ImageError (400 undecodable or truncated,
    413 over `max_pixels`, 415 not a supported format). `check_size(width, height)` may raise
    ImageError too; it sees the declared size before any pixel is decoded.

    Pillow's decoders raise many exception types on corrupt data (OSError, ValueError,
    SyntaxError, struct.error, IndexError, ...), so every one of them is a 400 here."""
    if not data:
        raise ImageError(400, "empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError as e:
        raise ImageError(413, f"image too large: {e}") from e
    except UnidentifiedImageError as e:
        raise ImageError(400, "cannot decode the image (not a JPEG, PNG, WebP, BMP or TIFF "
                              "file, or corrupt)") from e
    except Exception as e:
        raise ImageError(400, f"cannot decode the image header: {_reason(e)}") from e
    if image.format not in FORMATS:
        raise ImageError(415, f"unsupported image format {image.format}")
    if width * height > max_pixels:
        raise ImageError(413, f"image of {width} x {height} pixels exceeds the limit of "
                              f"{max_pixels} pixels")
    if width <= 0 or height <= 0:
        raise ImageError(400, "image has no pixels")
    if check_size is not None:
        check_size(width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = np.asarray(_to_rgb(image).convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise ImageError(413, f"image too large: {e}") from e
    except Exception as e:
        raise ImageError(400, f"cannot decode the image: {_reason(e)}") from e
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] * rgb.shape[1] == 0:
        raise ImageError(400, f"cannot decode the image: got pixels of shape {rgb.shape}")
    return rgb
