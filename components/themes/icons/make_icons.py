"""Rebuild the social icons (PNG, 64 px: 32 px at 2x) from the SVGs in src/.

The brand glyphs are Simple Icons 10.4.0 (CC0, src/LICENSE-simple-icons.md;
the brands' trademarks stay theirs); email.svg and website.svg are ours.
Each icon is the glyph on a disc, in two variants: `-light` for light
backgrounds (white on slate) and `-dark` for dark mode (slate on light grey).
Not needed to build an issue: the PNGs are committed. To run it:

    python3 -m venv /tmp/icons && /tmp/icons/bin/pip install cairosvg pillow
    /tmp/icons/bin/python components/themes/icons/make_icons.py
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import cairosvg  # type: ignore[import-not-found]
from PIL import Image

HERE = Path(__file__).parent
SIZE = 64
GLYPH = 34  # px of the 64 the glyph spans
VARIANTS = {"light": ("#2f3b48", "#ffffff"), "dark": ("#dfe6ee", "#16212c")}


def icon_svg(source: str, disc: str, glyph: str) -> str:
    body = re.search(r"<svg[^>]*>(.*)</svg>", source, re.S)
    if body is None:
        raise SystemExit(f"not an SVG: {source[:60]!r}")
    inner = re.sub(r"<title>.*?</title>", "", body.group(1))
    inner = inner.replace('stroke="#000"', f'stroke="{glyph}"')
    offset, scale = (SIZE - GLYPH) / 2, GLYPH / 24
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">'
            f'<circle cx="{SIZE / 2}" cy="{SIZE / 2}" r="{SIZE / 2}" fill="{disc}"/>'
            f'<g transform="translate({offset} {offset}) scale({scale})" fill="{glyph}">{inner}</g></svg>')


def main() -> None:
    for svg in sorted((HERE / "src").glob("*.svg")):
        for variant, (disc, glyph) in VARIANTS.items():
            png = cairosvg.svg2png(bytestring=icon_svg(svg.read_text(), disc, glyph).encode())
            image = Image.open(io.BytesIO(png))
            # A palette PNG is a third of the size and looks the same at this size.
            image.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(
                HERE / f"{svg.stem}-{variant}.png", optimize=True)


if __name__ == "__main__":
    main()
