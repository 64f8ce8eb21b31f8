"""What an issue's image file really is, read from its header with Pillow.

Images are published with the archive as they are and downloaded by every
reader at every open, so `check` refuses a file that is not the image its
name says (the web server and mail clients go by the name) and one past a
hard cap, and warns over a budget. Only the header is read (`Image.open` is
lazy): a decompression bomb is judged by the size it declares, never decoded.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# The formats email clients show, by the file name's suffix.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP"}

# Pillow's names for variants that are the same file type to a mail client.
_SAME = {"MPO": "JPEG"}  # a camera's multi-picture JPEG

# Most email clients show an image at 600 px (1200 px covers high-density
# screens); the reference issue's images are under 2 KB each. Past the budget
# the email is slow to open on a phone; past the cap something is wrong.
WARN_BYTES = 1024 * 1024
WARN_SIDE = 4_000
MAX_BYTES = 10 * 1024 * 1024
MAX_SIDE = 10_000
# Pixels: Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS, about 89 million).

RESIZE = "resize it, most email clients show 600 px"


@dataclass(frozen=True)
class ImageFile:
    """An image's name, format, size in bytes and pixels, from its header."""

    src: str
    format: str
    bytes: int
    width: int
    height: int


def inspect(path: Path, src: str) -> ImageFile | str:
    """The image `path` holds, or why it cannot be published (a message naming `src`)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read image {src}: {exc.strerror or exc}"
    if size > MAX_BYTES:
        return f"image {src} is {_mb(size)}, over the {_mb(MAX_BYTES)} an email image may be; {RESIZE}"
    opened = _open(path, src)
    if isinstance(opened, str):
        return opened
    found, width, height = opened
    found = _SAME.get(found, found)
    if found != FORMATS.get(path.suffix.lower()):
        fix = f"rename it to {_suffix(found)}" if found in FORMATS.values() else "convert it to PNG or JPEG"
        return f"{src} is named {path.suffix} but is a {found} image; {fix}"
    image = ImageFile(src, found, size, width, height)
    return _over_cap(image) or image


def _open(path: Path, src: str) -> tuple[str, int, int] | str:
    """Format and size from the header, or why not; Pillow's decompression-bomb check included."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    not_an_image = f"{src} is not a {FORMATS.get(path.suffix.lower(), 'supported')} image"
    try:
        with warnings.catch_warnings():
            # Past MAX_IMAGE_PIXELS Pillow only warns (it refuses past twice that): make both refusals.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return str(image.format), image.width, image.height
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return (f"image {src} declares more than {limit:,} pixels, Pillow's decompression-bomb limit; "
                f"{RESIZE}")
    except UnidentifiedImageError:
        return f"{not_an_image}: {_what_it_is(path)}"
    # Pillow's format plugins raise many kinds of error on a damaged header; all mean the same here.
    except Exception as exc:
        return f"{not_an_image}: its header is damaged ({type(exc).__name__}: {exc})"


def _what_it_is(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if not head:
        return "the file is empty"
    if head.lstrip().lower().startswith((b"<svg", b"<?xml")):
        return "it is SVG, which most email clients do not show; convert it to PNG"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "Pillow does not recognise its contents"
    return "it is text"


def _over_cap(image: ImageFile) -> str | None:
    side = max(image.width, image.height)
    if side > MAX_SIDE:
        return (f"image {image.src} is {image.width}x{image.height} px, over the {MAX_SIDE:,} px "
                f"an email image may have on a side; {RESIZE}")
    return None


def budget_warning(image: ImageFile) -> str | None:
    """Why a publishable image is still heavier than an email should carry, if it is."""
    if image.bytes > WARN_BYTES:
        return (f"image {image.src} is {_mb(image.bytes)}; every reader downloads it at every open "
                f"(keep images under {_mb(WARN_BYTES)}: {RESIZE}, or compress it)")
    if max(image.width, image.height) > WARN_SIDE:
        return f"image {image.src} is {image.width}x{image.height} px; {RESIZE}"
    return None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB".replace(".0 MB", " MB")


def _suffix(format_name: str) -> str:
    return next(s for s, f in FORMATS.items() if f == format_name)
