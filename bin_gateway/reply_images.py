"""Images of a member's reply, re-encoded from their pixels alone.

A photo carries more than its pixels: EXIF GPS position and time, camera serial number,
the owner's name (Artist, Copyright, XPAuthor), XMP and IPTC blocks, JPEG comments, PNG
text chunks, an ICC profile naming the device. Stripping known tags misses the unknown
ones, so nothing of the file is kept but the decoded pixels: a fresh image is made from
them and encoded anew (JPEG for photos, PNG for the rest), after turning it upright
(the EXIF orientation goes with the EXIF) and scaling it down to a sane size.

Hostile files are expected: only the formats mail clients send are decoded (Pillow's
other plugins never see the bytes), the pixel count is checked from the header before
anything is decoded, and any failure means "not passed on", never an exception.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

__all__ = ["MAX_SIDE", "CleanImage", "reencode"]

MAX_SIDE = 2048  # long side of a relayed image, in pixels
_MAX_PIXELS = 40_000_000  # a 40 MP photo is the most a phone makes; more is a bomb
_MAX_BYTES = 40 * 1024 * 1024
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")  # the JPEG opener also gives MPO (iPhone photos)
_JPEG_QUALITY = 85


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    subtype: str  # "jpeg" or "png"


def reencode(data: bytes) -> CleanImage | None:
    """The image's pixels alone, upright and at most MAX_SIDE; None if it is unreadable."""
    if not data or len(data) > _MAX_BYTES:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as source:
            width, height = source.size
            if width < 1 or height < 1 or width * height > _MAX_PIXELS:
                return None
            photo = source.format in ("JPEG", "MPO") or (
                source.format == "WEBP" and not _has_alpha(source)
            )
            if source.format in ("JPEG", "MPO"):
                # decode at a reduced scale where the codec can: much faster for big photos
                source.draft("RGB", (MAX_SIDE, MAX_SIDE))
            upright = ImageOps.exif_transpose(source)
            pixels = upright.convert("RGB" if photo or not _has_alpha(upright) else "RGBA")
        pixels.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return _encode(_fresh(pixels), photo=photo)
    except Exception:  # any decoder failure (bombs included) drops this image, nothing else
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _fresh(image: Image.Image) -> Image.Image:
    """A new image holding only the pixels: no info, no EXIF, no ICC profile, no text."""
    return Image.frombytes(image.mode, image.size, image.tobytes())


def _encode(image: Image.Image, *, photo: bool) -> CleanImage:
    out = io.BytesIO()
    if photo:
        image.save(out, "JPEG", quality=_JPEG_QUALITY)
        return CleanImage(out.getvalue(), "jpeg")
    image.save(out, "PNG")
    return CleanImage(out.getvalue(), "png")
