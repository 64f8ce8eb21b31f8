"""Markdown for `text` blocks: to sanitised HTML for the email, to plain text for the text part."""
from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from .fields import SAFE_SCHEMES

# What an email client renders reliably; everything else is stripped by nh3,
# which also drops <script>, event handlers and javascript: URLs.
ALLOWED_TAGS = {
    "p", "a", "strong", "em", "b", "i", "u", "ul", "ol", "li", "br", "h3", "h4",
    "blockquote", "code", "pre", "span", "sub", "sup", "hr", "small",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
# Markdown tables become real tables; their cells keep only the column's alignment.
TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_STYLES = {"text-align"}
# Wider than this, the text part lists a table row by row instead of in columns.
TEXT_TABLE_WIDTH = 76


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # commonmark keeps the syntax authors expect, plus GitHub's tables; html=True
    # lets the odd inline tag through to nh3 rather than showing it as text.
    return MarkdownIt("commonmark", {"html": True, "typographer": False}).enable("table")


def parse(source: str) -> list[Token]:
    """Markdown tokens; parse once, then render to HTML and to text."""
    return _parser().parse(source)


def to_html(source: str | list[Token]) -> str:
    """Markdown to HTML that is safe to put in an email."""
    md = _parser()
    tokens = parse(source) if isinstance(source, str) else source
    raw = md.renderer.render(tokens, md.options, {})
    clean = nh3.clean(
        raw,
        tags=ALLOWED_TAGS | TABLE_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=set(SAFE_SCHEMES),
        link_rel=None,
        filter_style_properties=ALLOWED_STYLES,
    ).strip()
    # After cleaning, so the attributes are ours: a data table, full width, its cells styled by the text block.
    return clean.replace("<table>", '<table class="nl-table" width="100%" cellpadding="0" cellspacing="0">')


def to_text(source: str | list[Token]) -> str:
    """Markdown to readable plain text: lists kept, links written out (wrapped later)."""
    out: list[str] = []
    bullets: list[list[int]] = []  # per open list: [next number] or [] for bullets
    table: list[list[str]] | None = None  # rows of the table being read
    right: set[int] = set()  # its right-aligned columns
    for token in parse(source) if isinstance(source, str) else source:
        if token.type == "table_open":
            table, right = [], set()
        elif token.type == "table_close" and table is not None:
            out += [_table_text(table, right), ""]
            table = None
        elif table is not None:
            if token.type == "tr_open":
                table.append([])
            elif token.type == "th_open" and "right" in str(token.attrGet("style") or ""):
                right.add(len(table[-1]))
            elif token.type == "inline" and token.children is not None and table:
                table[-1].append(_inline(token.children).strip())
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrGet("start") or 1) if token.type == "ordered_list_open" else 0
            bullets.append([start] if token.type == "ordered_list_open" else [])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            bullets.pop()
            out.append("")
        elif token.type == "inline" and token.children is not None:
            out.append(_paragraph(_inline(token.children), bullets))
        elif token.type in ("fence", "code_block"):
            out.append(token.content.rstrip("\n"))
        elif token.type == "html_block":
            out.append(_strip_tags(token.content))
        elif token.type == "paragraph_close" and not bullets:
            out.append("")
        elif token.type == "hr":
            out.append("-" * 20)
    return "\n".join(out).strip()


def _table_text(rows: list[list[str]], right: set[int]) -> str:
    """Columns padded to line up (figures to the right, as in the email), or, when that
    is too wide to read, each row as `heading: value` lines."""
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[i]) for row in rows) for i in range(width)]
    if sum(sizes) + 3 * (width - 1) <= TEXT_TABLE_WIDTH:
        lines = [" | ".join(cell.rjust(size) if i in right else cell.ljust(size)
                            for i, (cell, size) in enumerate(zip(row, sizes, strict=True))).rstrip() for row in rows]
        lines.insert(1, "-+-".join("-" * size for size in sizes))
        return "\n".join(lines)
    head, *body = rows
    return "\n\n".join("\n".join(f"{h}: {cell}" if h else cell for h, cell in zip(head, row, strict=True) if cell)
                        for row in body)


def _paragraph(text: str, bullets: list[list[int]]) -> str:
    # Lines are wrapped once, for the whole text part, by plaintext.wrap_lines.
    if not bullets:
        return text
    counter = bullets[-1]
    if counter:
        marker = f"{counter[0]}. "
        counter[0] += 1
    else:
        marker = "* "
    return "  " * (len(bullets) - 1) + marker + text


def _inline(children: list[Token]) -> str:
    parts: list[str] = []
    href_stack: list[str] = []
    hidden = ""  # inside <script> or <style>: what nh3 drops from the HTML is no text either
    for child in children:
        if hidden:
            if child.type == "html_inline" and child.content.lower().startswith(f"</{hidden}"):
                hidden = ""
        elif child.type == "html_inline" and (opened := _HIDDEN_OPEN.match(child.content)):
            hidden = opened.group(1).lower()
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "link_open":
            href_stack.append(str(child.attrGet("href") or ""))
        elif child.type == "link_close" and href_stack:
            href = href_stack.pop()
            label = parts[-1] if parts else ""
            if href and href not in (label, "mailto:" + label):
                parts.append(f" ({href})")
        elif child.type == "html_inline":
            parts.append(_strip_tags(child.content))
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


_HIDDEN_OPEN = re.compile(r"<(script|style)\b", re.I)


def _strip_tags(fragment: str) -> str:
    return nh3.clean(fragment, tags=set()).strip()
