"""CSS inlining with premailer, configured for MJML's output.

premailer's defaults are wrong for MJML (measured, design §9):
- it fetches every <link> stylesheet unless allow_network=False;
- strip_important=True removes `!important` from the @media rules that make
  columns sit side by side on desktop;
- it writes `<!DOCTYPE html>` and drops MJML's lowercase doctype.
MJML's own <style> blocks (reset, responsive columns) are left alone
(`data-premailer="ignore"`): inlining them only bloats every element. Only
our theme's CSS, passed as css_text, is inlined.
"""
from __future__ import annotations

import logging
import re

from premailer import Premailer

DOCTYPE = "<!doctype html>"
_OPEN_TAG = re.compile(r"<(style|link)\b(?![^>]*data-premailer)", re.I)
_IGNORE_ATTR = re.compile(r'\sdata-premailer="ignore"')
_LEADING_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>\s*", re.I)
# cssutils fetches @import URLs itself, whatever allow_network says; inlined
# CSS has no use for them (a web font belongs in <mj-font>), so drop them.
_IMPORT = re.compile(r"@import\s[^;]*;?", re.I)
# cssutils writes CSS strings in double quotes (`"Times New Roman"`), so lxml
# puts such a style attribute in single quotes. Put it back as themes write it:
# double-quoted attribute, single-quoted families (no `'` can be inside a
# single-quoted attribute, so swapping the quotes inside is safe).
_SINGLE_QUOTED_STYLE = re.compile(r"""(<[a-zA-Z][^<>]*?\sstyle=)'([^'<>]*)'""")


def inline_css(html: str, css: str) -> str:
    marked = _OPEN_TAG.sub(lambda m: f'<{m.group(1)} data-premailer="ignore"', html)
    premailer = Premailer(
        marked,
        css_text=_IMPORT.sub("", css),
        allow_network=False,
        strip_important=False,
        keep_style_tags=True,
        disable_leftover_css=True,
        remove_classes=False,
        exclude_pseudoclasses=True,
        align_floating_images=False,  # nothing floats; it would parse every <img> style
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    )
    out = premailer.transform(pretty_print=False)
    out = _IGNORE_ATTR.sub("", out)
    out = _SINGLE_QUOTED_STYLE.sub(lambda m: f'{m.group(1)}"{m.group(2).replace(chr(34), chr(39))}"', out)
    return DOCTYPE + _LEADING_DOCTYPE.sub("", out)
