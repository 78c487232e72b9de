"""Make the small images embedded (base64) in the reply corpus. Run once by hand:

    .venv/bin/python tests/messages/replies/make_images.py

It prints, per image, a header line and the base64 text (76 characters a line, as mail
clients write it), which was pasted into the .eml files:

* ``IMG_4821.jpeg`` (apple_ios_nl_photo.eml): a 64x48 photo as an iPhone writes it, with
  EXIF Make/Model/Software/DateTimeOriginal, an Artist (set by a photo app) and a GPS
  position (the member's garden), so a relay that keeps the metadata shows it.
* ``plattegrond.png`` (ziggo_webmail_nl_hidden_html.eml): a 64x48 PNG with ``tEXt``
  chunks naming the member (Author) and their street (Description).

The pixels are a plain gradient: only the metadata matters to the tests.
"""

from __future__ import annotations

import base64
import io
import textwrap
from fractions import Fraction

from PIL import Image, PngImagePlugin

WIDTH, HEIGHT = 64, 48

# The EXIF and GPS values the corpus expects to vanish (cases.toml, apple_ios_nl_photo).
JPEG_ARTIST = "Sanne Verhoeven"
JPEG_MAKE = "Apple"
JPEG_MODEL = "iPhone 13 mini"
JPEG_SOFTWARE = "17.1.1"
JPEG_TAKEN = "2026:11:03 20:10:41"
GPS_LATITUDE = (51, 26, Fraction(47112, 1000))  # 51.44642 N
GPS_LONGITUDE = (5, 28, Fraction(41232, 1000))  # 5.47812 E

PNG_AUTHOR = "Karin Smit"
PNG_DESCRIPTION = "Vlierstraat 9, achtertuin"


def _gradient(mode: str) -> Image.Image:
    image = Image.new(mode, (WIDTH, HEIGHT))
    image.putdata([(x * 4, y * 5, 128) for y in range(HEIGHT) for x in range(WIDTH)])
    return image


def jpeg_bytes() -> bytes:
    image = _gradient("RGB")
    exif = Image.Exif()
    exif[0x010F] = JPEG_MAKE
    exif[0x0110] = JPEG_MODEL
    exif[0x0131] = JPEG_SOFTWARE
    exif[0x013B] = JPEG_ARTIST
    exif[0x0132] = JPEG_TAKEN
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = JPEG_TAKEN  # DateTimeOriginal
    exif_ifd[0xA434] = "iPhone 13 mini back dual wide camera 1.54mm f/2.4"  # LensModel
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = tuple(float(v) for v in GPS_LATITUDE)
    gps[3] = "E"
    gps[4] = tuple(float(v) for v in GPS_LONGITUDE)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60, exif=exif)
    return out.getvalue()


def png_bytes() -> bytes:
    image = _gradient("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", PNG_AUTHOR)
    info.add_text("Description", PNG_DESCRIPTION)
    info.add_text("Software", "Paint 11.2409")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info, optimize=True)
    return out.getvalue()


def as_base64(data: bytes) -> str:
    return "\n".join(textwrap.wrap(base64.b64encode(data).decode("ascii"), 76))


def main() -> None:
    for name, data in (("IMG_4821.jpeg", jpeg_bytes()), ("plattegrond.png", png_bytes())):
        print(f"=== {name} ({len(data)} bytes)")
        print(as_base64(data))


if __name__ == "__main__":
    main()
