"""Plain-text part formatting: every long line wrapped, keeping its indent and marker."""
from __future__ import annotations

import re
import textwrap

WIDTH = 76
_MARKER = re.compile(r"^(\s*(?:[*-] |>> |\d+\. |-- |\")?)")


def wrap_lines(text: str, width: int = WIDTH) -> str:
    """Wrap at `width`; a list item's continuation lines align under its text. URLs are never broken."""
    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        lead = _MARKER.match(line).group(1)  # type: ignore[union-attr]
        out.append(textwrap.fill(
            line[len(lead):], width, initial_indent=lead, subsequent_indent=" " * len(lead),
            break_long_words=False, break_on_hyphens=False,
        ))
    return "\n".join(out)
