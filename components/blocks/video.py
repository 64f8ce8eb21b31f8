"""A video's thumbnail with a play mark, linking to the video; an optional caption.

The play mark is drawn onto a copy of the thumbnail (published beside it), so it
shows in every client, Outlook included, with no overlay CSS. The thumbnail is
therefore a file in the issue's folder: a remote one would also let a third
party see every open.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import field_validator

from ..fields import BlockFields, Image, OptionalText, Url, is_remote

# Bump when the drawing changes: cached copies are keyed by it.
PLAY_MARK = "play1"


class Fields(BlockFields):
    thumbnail: Image
    url: Url
    caption: OptionalText = ""

    @field_validator("thumbnail")
    @classmethod
    def _local(cls, value: Image) -> Image:
        if is_remote(value.src):
            raise ValueError("a video thumbnail must be an image file in the issue's folder "
                             "(the play mark is drawn onto it; a remote image lets a third party see every open)")
        if value.href:
            raise ValueError("a video thumbnail links to the video's url; it takes no href")
        return value


def draw_play_mark(source: Path, target: Path) -> None:
    """Write `source` with a round play button in its middle to `target` (same format)."""
    from PIL import Image as Pil
    from PIL import ImageDraw

    with Pil.open(source) as opened:
        kind = opened.format or "PNG"
        picture = opened.convert("RGBA")
    w, h = picture.size
    scale = 4  # drawn large, then shrunk: smooth edges
    r = max(12, min(w, h) // 7)
    mark = Pil.new("RGBA", (2 * r * scale, 2 * r * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(mark)
    draw.ellipse((0, 0, 2 * r * scale - 1, 2 * r * scale - 1), fill=(0, 0, 0, 150),
                 outline=(255, 255, 255, 235), width=max(2, r * scale // 14))
    c, t = r * scale, r * scale * 0.42
    draw.polygon([(c - t * 0.62, c - t), (c - t * 0.62, c + t), (c + t * 0.95, c)], fill=(255, 255, 255, 245))
    mark = mark.resize((2 * r, 2 * r), Pil.Resampling.LANCZOS)
    picture.alpha_composite(mark, ((w - 2 * r) // 2, (h - 2 * r) // 2))
    out = picture if kind == "PNG" else picture.convert("RGB")
    out.save(target, format=kind if kind in ("PNG", "JPEG", "GIF", "WEBP") else "PNG")
