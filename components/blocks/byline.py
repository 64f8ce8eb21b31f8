"""Who wrote it: a round photo, a name and a role."""
from pathlib import Path

from ..fields import BlockFields, Image, OptionalText, Text

MAIN_FIELD = "name"


class Fields(BlockFields):
    name: Text
    role: OptionalText = ""
    photo: Image | None = None


SIZE = 56  # px shown; drawn at twice that for sharp screens


def square_photo(source: Path, target: Path) -> None:
    """The middle square of `source`, 2x SIZE px: shown round, it is never stretched."""
    from PIL import Image as Pil

    with Pil.open(source) as opened:
        kind = opened.format or "PNG"
        w, h = opened.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
        picture = opened.convert("RGBA").crop(box).resize((2 * SIZE, 2 * SIZE), Pil.Resampling.LANCZOS)
    out = picture if kind == "PNG" else picture.convert("RGB")
    out.save(target, format=kind if kind in ("PNG", "JPEG", "GIF", "WEBP") else "PNG")
