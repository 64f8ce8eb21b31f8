"""Accessibility checks: the Email Markup Consortium's most common failures, in their order.

1. `lang` and `dir` on the body wrapper (clients strip them from `<html>`),
2. a `<title>` that is the subject,
3. `role="presentation"` on every layout table,
4. exactly one `<h1>` and no skipped heading levels,
5. link text that says where the link goes,
6. alt text on every image, decorative ones declared as such,
7. text, links and buttons with at least 4.5:1 contrast against what is drawn under them, 3:1 for
   large text (WCAG 1.4.3), as the reader sees them: the colours after the CSS cascade of the
   built email (components/cascade.py), in light mode, dark mode and Outlook's dark mode.

Each finding is a plain tuple `(level, rule, message, file, line)` so that lint.py can import this
module (and wrap the tuples in its `Finding`) without an import cycle. A finding names the block
(file:line) that caused it; what comes from the page template names the issue file, line 1.
check_contrast judges a theme's palettes alone and names the theme file and the colour key's line.

Headings, links and images are read from each block's own MJML fragment, rendered by the same
templates as the email (a theme's overrides included), so a changed template changes what is
checked; the rendered email is checked too, for what the page template adds around the blocks.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mjml

from . import cascade, merge
from .fields import Image
from .model import Block, Issue
from .render import Context, RenderedIssue, _env, _macro
from .theme import THEMES_DIR, Theme

A11yFinding = tuple[str, str, str, str, int]  # (level, rule, message, file, line)

MIN_CONTRAST = 4.5  # WCAG 1.4.3 (AA) for body-size text
MIN_CONTRAST_LARGE = 3.0  # and for large text: at least 24px, or 18.66px (14pt) bold

# Link text that does not say where the link goes (WCAG 2.4.4), compared after lower-casing and
# dropping punctuation ("Read more »" -> "read more"). A bare URL is allowed: it does say where
# the link goes, and the contact block shows its website that way on purpose.
VAGUE_LINK_TEXT = frozenset({
    "here", "click here", "click", "click this link", "this link", "link", "this", "more",
    "read more", "learn more", "find out more", "more info", "more information", "details", "go",
})

# Which palette colour is drawn on which, as the templates use them (email.css.j2, email.mjml.j2
# and the block templates). Foreground first: the finding points at its line in the theme.
CONTRAST_PAIRS = (
    ("text", "content_bg", "body text and quotations"),
    ("muted", "content_bg", "image captions and quotation sources"),
    ("muted", "body_bg", "the top bar and the footer, their links included"),
    ("heading", "content_bg", "section titles and sub-headings"),
    ("link", "content_bg", "links in text and in the contact block"),
    ("link", "panel", "links in the contents panel"),
    ("on_primary", "primary", "the masthead and buttons"),
    ("on_panel", "panel", "callouts, the contents title and statistic labels"),
    ("accent", "panel", "statistic figures"),
)

DATA_TABLE = " data"  # set on a table with <th>, <thead> or <caption> (no attribute name has a space)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr"})
_HEADING = re.compile(r"^h([1-6])$")
_HEX = re.compile(r"^#(?:[0-9a-f]{3}|[0-9a-f]{6})$", re.I)
_RGB = re.compile(r"^rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,\s*[\d.]+\s*)?\)$", re.I)


def check_accessibility(issue: Issue, rendered: RenderedIssue, theme: Theme) -> list[A11yFinding]:
    """Every accessibility finding for one rendered issue, in the order of the rules above."""
    page = _scan(rendered.html)
    blocks = _block_scans(issue, theme)
    return [
        *_lang(issue, page),
        *_title(issue, page),
        *_layout_tables(issue, page, blocks),
        *_headings(issue, page, blocks),
        *_link_text(issue, page, blocks),
        *_alt_text(issue, page, blocks),
        *_rendered_contrast(issue, rendered, theme, blocks),
    ]


# --- reading HTML ------------------------------------------------------------------------------


@dataclass
class _Link:
    href: str
    name: str = ""  # its accessible name: text plus the alt of images inside
    image: bool = False  # named by an image's alt (a linked image or a social icon)


@dataclass
class _Scan:
    """What the checks need from one piece of HTML or MJML."""

    body_children: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    tables: list[dict[str, str]] = field(default_factory=list)
    headings: list[tuple[int, str]] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)
    images: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (tag, attributes)
    text: list[str] = field(default_factory=list)  # every piece of text, in order


class _Parser(HTMLParser):
    # html.parser hands `<!--[if mso]> … <![endif]-->` over as one comment, so the tables Outlook
    # alone sees are skipped, and `<!--[if !mso]><!--> … <!--<![endif]-->` content is read.
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = _Scan()
        self._depth: int | None = None  # inside <body>: how deep
        self._title: list[str] | None = None
        self._heading: list[Any] | None = None  # [level, text]
        self._links: list[_Link] = []  # open links
        self._social: tuple[_Link, str] | None = None  # open mj-social-element: text link, icon alt
        self._tables: list[dict[str, str]] = []  # open tables, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._depth is not None and self._depth == 0:
            self.out.body_children.append((tag, a))
        if self._depth is not None and tag not in _VOID:
            self._depth += 1
        if tag == "body":
            self._depth = 0
        elif tag == "title":
            self._title = []
        elif tag == "table":
            self.out.tables.append(a)
            self._tables.append(a)
        elif tag in ("th", "thead", "caption") and self._tables:
            self._tables[-1][DATA_TABLE] = "1"  # headers: a data table (a Markdown table), not layout
        elif _HEADING.match(tag):
            self._heading = [int(tag[1]), ""]
        elif tag in ("a", "mj-button") and "href" in a:
            self._links.append(_Link(a["href"]))
        elif tag == "mj-social-element" and "href" in a:
            self._social = (_Link(a["href"]), a.get("alt", ""))
        elif tag in ("img", "mj-image"):
            self._image(tag, a)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "mj-image"):
            if self._depth == 0:
                self.out.body_children.append((tag, {k: v or "" for k, v in attrs}))
            self._image(tag, {k: v or "" for k, v in attrs})
        else:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def _image(self, tag: str, a: dict[str, str]) -> None:
        self.out.images.append((tag, a))
        for link in self._links:
            link.name += " " + a.get("alt", "")
            link.image = True
        if tag == "mj-image" and a.get("href"):
            self.out.links.append(_Link(a["href"], a.get("alt", ""), image=True))

    def handle_data(self, data: str) -> None:
        self.out.text.append(data)
        if self._title is not None:
            self._title.append(data)
        if self._heading is not None:
            self._heading[1] += data
        for link in self._links:
            link.name += data
        if self._social is not None:
            self._social[0].name += data

    def handle_endtag(self, tag: str) -> None:
        if self._depth is not None and tag not in _VOID:
            self._depth = max(self._depth - 1, 0)
        if tag == "table" and self._tables:
            self._tables.pop()
        if tag == "title" and self._title is not None:
            self.out.titles.append("".join(self._title))
            self._title = None
        elif _HEADING.match(tag) and self._heading is not None:
            self.out.headings.append((self._heading[0], " ".join(self._heading[1].split())))
            self._heading = None
        elif tag in ("a", "mj-button") and self._links:
            self.out.links.append(self._links.pop())
        elif tag == "mj-social-element" and self._social is not None:
            # MJML draws it as two links: the icon (named by its alt) and the text beside it.
            text, alt = self._social
            self.out.links += [_Link(text.href, alt, image=True), *([text] if text.name.strip() else [])]
            self._social = None


def _scan(markup: str) -> _Scan:
    parser = _Parser()
    parser.feed(markup)
    parser.close()
    return parser.out


@dataclass(frozen=True)
class _BlockScan:
    block: Block
    mjml: str  # the block's own MJML, as the email's templates render it
    scan: _Scan


def _block_scans(issue: Issue, theme: Theme) -> list[_BlockScan]:
    """Each block's own fragment, in the order the email shows them (a block, then its children)."""
    env = _env(issue.fields.theme)
    context = Context(issue, theme, "https://example.invalid")
    out = []
    for block in issue.walk():
        fragment = str(_macro(env, block, "mjml")(block.fields, block, context)).strip()
        out.append(_BlockScan(block, fragment, _scan(fragment)))
    return out


def _at(issue: Issue, block: Block | None) -> tuple[str, int]:
    return (block.file, block.line) if block is not None else (issue.shown, 1)


# --- 1. lang and dir ---------------------------------------------------------------------------


def _lang(issue: Issue, page: _Scan) -> list[A11yFinding]:
    # MJML writes the wrapper <div> after the hidden preheader; Gmail and others drop <html>'s
    # attributes, so only the wrapper's lang reaches a screen reader.
    wrapper = next((a for tag, a in page.body_children
                    if tag == "div" and "display:none" not in a.get("style", "").replace(" ", "")), None)
    if wrapper is None:
        return [_lang_error(issue, "the email has no wrapper <div> inside <body> to carry lang and dir")]
    found = []
    want = issue.fields.lang
    lang, direction = wrapper.get("lang", "").strip(), wrapper.get("dir", "").strip().lower()
    if not lang:
        found.append(_lang_error(issue, "the email's wrapper <div> has no lang attribute; clients strip it "
                                        f'from <html>, so set <mjml lang="{want}">'))
    elif lang.lower() != want.lower():
        found.append(_lang_error(issue, f'the email\'s wrapper <div> says lang="{lang}" but the issue is in '
                                        f'"{want}"; set <mjml lang> from the issue'))
    expected = issue.fields.direction
    if not direction:
        found.append(_lang_error(issue, "the email's wrapper <div> has no dir attribute; "
                                        f'set <mjml dir="{expected}">'))
    elif direction not in ("ltr", "rtl", "auto"):
        found.append(_lang_error(issue, f'the email\'s wrapper <div> has dir="{direction}"; use ltr, rtl or auto'))
    elif direction != "auto" and direction != expected:
        found.append(_lang_error(issue, f'"{want}" is written {expected} but the email says dir="{direction}"; '
                                        "set <mjml dir> from the issue's language"))
    return found


def _lang_error(issue: Issue, message: str) -> A11yFinding:
    return ("error", "a11y-lang", message, issue.shown, 1)



# --- 2. title ----------------------------------------------------------------------------------


def _title(issue: Issue, page: _Scan) -> list[A11yFinding]:
    # The built email keeps merge fields in their canonical spelling (merge.restore).
    subject = " ".join(merge.EXPRESSION.sub(lambda m: merge.parse_field(m.group(1)).source(),
                                            issue.fields.subject).split())
    titles = [" ".join(t.split()) for t in page.titles]  # entities already decoded by the parser
    if not titles or not titles[0]:
        message = "the email has no <title>; screen readers announce it first: set <mj-title> to the subject"
    elif titles[0] != subject:
        message = f"the email's <title> is {titles[0]!r}, not the subject {subject!r}; set <mj-title> to the subject"
    else:
        return []
    return [("error", "a11y-title", message, issue.shown, 1)]


# --- 3. layout tables --------------------------------------------------------------------------


def _layout_tables(issue: Issue, page: _Scan, blocks: list[_BlockScan]) -> list[A11yFinding]:
    missing = sum(1 for t in page.tables if _bare(t))
    if not missing:
        return []
    # Rare, so only now compile each block alone to find whose tables they are.
    found = []
    for b in blocks:
        count = _bare_tables(b)
        if count:
            missing -= count
            found.append(("error", "a11y-layout-table",
                          f'{b.block.path}: {count} layout table(s) without role="presentation"; screen readers '
                          "read them out as data tables", b.block.file, b.block.line))
    if missing > 0:
        found.append(("error", "a11y-layout-table",
                      f'{missing} layout table(s) of the page template without role="presentation"; screen '
                      "readers read them out as data tables", issue.shown, 1))
    return found


def _bare(attrs: Mapping[str, str]) -> bool:
    """A layout table that screen readers would read out as data: no role="presentation", no headers."""
    return attrs.get("role", "").strip().lower() not in ("presentation", "none") and DATA_TABLE not in attrs


def _bare_tables(b: _BlockScan) -> int:
    body = b.mjml
    if b.block.component.layout != "section":
        body = f"<mj-section><mj-column>{body}</mj-column></mj-section>"
    try:
        compiled = mjml.mjml2html(f"<mjml><mj-body>{body}</mj-body></mjml>")
    except Exception:  # MRML raises ValueError: then judge the fragment's own markup
        compiled = b.mjml
    return sum(1 for t in _scan(str(compiled)).tables if _bare(t))


# --- 4. headings -------------------------------------------------------------------------------


def _headings(issue: Issue, page: _Scan, blocks: list[_BlockScan]) -> list[A11yFinding]:
    placed: list[tuple[int, str, Block | None]] = [
        (lvl, text, b.block) for b in blocks for lvl, text in b.scan.headings]
    if [lvl for lvl, _, _ in placed] != [lvl for lvl, _ in page.headings]:
        # The page template adds or drops headings: judge the email as it is, at the issue file.
        placed = [(lvl, text, None) for lvl, text in page.headings]
    found = []
    h1s = [(text, block) for lvl, text, block in placed if lvl == 1]
    if not h1s:
        found.append(("error", "a11y-headings", "the email has no <h1>; start the issue with a masthead, "
                                                "whose title is the email's one <h1>", issue.shown, 1))
    for text, block in h1s[1:]:
        first = h1s[0][1].path if h1s[0][1] is not None else "the page"
        found.append(("error", "a11y-headings",
                      f"{_where(block)}a second <h1> ({text!r}); the email's <h1> is already {first}'s: "
                      "use a section (<h2>) or a heading (<h3>)", *_at(issue, block)))
    previous = 0 if h1s else 1  # with no <h1> at all, that one error says it
    for level, text, block in placed:
        if level > previous + 1:
            before = f"follows an <h{previous}>" if previous else "is the first heading"
            found.append(("error", "a11y-headings",
                          f"{_where(block)}<h{level}> ({text!r}) {before}: heading levels may not skip "
                          f"(expected <h{previous + 1}> or higher)", *_at(issue, block)))
        previous = level
    return found


def _where(block: Block | None) -> str:
    return f"{block.path}: " if block is not None else ""


# --- 5. link text ------------------------------------------------------------------------------


def _link_text(issue: Issue, page: _Scan, blocks: list[_BlockScan]) -> list[A11yFinding]:
    found = []
    accounted: Counter[str] = Counter()
    for b in blocks:
        for link in b.scan.links:
            problem = _vague(link)
            if problem:
                accounted[_normal(link.name)] += 1
                found.append(("error", "a11y-link-text", f"{b.block.path}: {problem}", b.block.file, b.block.line))
    for link in page.links:
        problem = _vague(link)
        if problem and accounted[_normal(link.name)] > 0:
            accounted[_normal(link.name)] -= 1
        elif problem:
            found.append(("error", "a11y-link-text", f"the page template: {problem}", issue.shown, 1))
    return found


def _vague(link: _Link) -> str | None:
    text = _normal(link.name)
    if text in VAGUE_LINK_TEXT:
        return (f"link text {link.name.strip()!r} does not say where the link goes ({link.href}); "
                "name the destination, e.g. 'Read the annual report'")
    if not text and not link.image:  # an unnamed linked image is the alt-text rule's to report
        return f"a link to {link.href} has no text; screen readers announce it as its URL or not at all"
    return None


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


# --- 6. alt text -------------------------------------------------------------------------------


def _alt_text(issue: Issue, page: _Scan, blocks: list[_BlockScan]) -> list[A11yFinding]:
    found: list[A11yFinding] = []
    for block in issue.walk():
        for image in _own_images(block):
            found += _image_alt(block, image)
    # Templates: every <img> needs an alt attribute, even an empty one, or readers spell out the file name.
    accounted = 0
    for b in blocks:
        bare = [a for tag, a in b.scan.images if "alt" not in a]
        accounted += len(bare)
        for a in bare:
            found.append(("error", "a11y-alt-text",
                          f"{b.block.path}: the template draws an image ({a.get('src', '')}) with no alt "
                          "attribute", b.block.file, b.block.line))
    missing = sum(1 for tag, a in page.images if tag == "img" and "alt" not in a) - accounted
    if missing > 0:
        found.append(("error", "a11y-alt-text",
                      f"{missing} image(s) of the page template have no alt attribute", issue.shown, 1))
    return found


def _image_alt(block: Block, image: Image) -> list[A11yFinding]:
    # `decorative: true` is how an author declares an image decorative (then alt is ""); read with
    # getattr so this check works before and after the field exists on fields.Image.
    decorative = bool(getattr(image, "decorative", False))
    has_alt = bool(image.alt.strip())
    at = (block.file, block.line)
    if image.href and not has_alt:
        return [("error", "a11y-alt-text", f"{block.path}: image {image.src} is a link to {image.href} with no "
                                           "alt text; its alt is the link's text, so say where it goes", *at)]
    if image.href and decorative:
        return [("error", "a11y-alt-text", f"{block.path}: image {image.src} is declared decorative but is a link; "
                                           "a link is never decorative", *at)]
    if not has_alt and not decorative:
        return [("error", "a11y-alt-text", f"{block.path}: image {image.src} has no alt text; describe it, or "
                                           "declare it `decorative: true` if it carries no information", *at)]
    if has_alt and decorative:
        return [("warning", "a11y-alt-text", f"{block.path}: image {image.src} is declared decorative but has alt "
                                             "text, which screen readers will read; drop one or the other", *at)]
    return []


def _own_images(block: Block) -> list[Image]:
    skip = block.component.children_field  # a section's blocks are checked as blocks of their own
    if skip is None:
        return _images_of(block.fields)
    return [i for name in type(block.fields).model_fields if name != skip
            for i in _images_of(getattr(block.fields, name))]


def _images_of(value: Any) -> list[Image]:
    if isinstance(value, Image):
        return [value]
    if isinstance(value, (list, tuple)):
        return [i for item in value for i in _images_of(item)]
    if hasattr(type(value), "model_fields"):
        return [i for name in type(value).model_fields for i in _images_of(getattr(value, name))]
    return []


# --- 7. contrast -------------------------------------------------------------------------------


@dataclass
class _Failure:
    run: cascade.TextRun
    ratio: float
    need: float
    views: list[cascade.View] = field(default_factory=list)


def _rendered_contrast(issue: Issue, rendered: RenderedIssue, theme: Theme,
                       blocks: list[_BlockScan]) -> list[A11yFinding]:
    """Every text the reader sees below its WCAG ratio, in any view, grouped per block and colour pair."""
    document = cascade.Document(rendered.html)
    views = document.views()
    failures: dict[tuple[Any, ...], _Failure] = {}
    for view in views:
        for run in document.text_runs(view):
            need = MIN_CONTRAST_LARGE if _large(run) else MIN_CONTRAST
            ratio = _ratio(run.color, run.background)
            if ratio < need:
                key = (run.element, cascade.hex_colour(run.color), cascade.hex_colour(run.background), need)
                failures.setdefault(key, _Failure(run, ratio, need)).views.append(view)
    if not failures:
        return []
    owner = _owners(document, blocks)
    grouped: dict[tuple[Any, ...], list[_Failure]] = {}
    for (element, fg, bg, need), failure in failures.items():
        names = tuple(dict.fromkeys(v.name for v in failure.views))
        widths = tuple(sorted({v.width for v in failure.views}))
        block = owner.get(element)
        grouped.setdefault((block.path if block else None, failure.run.kind, fg, bg, need, names, widths),
                           []).append(failure)
    every_width = tuple(sorted({v.width for v in views}))
    return [_contrast_finding(issue, theme, owner.get(group[0].run.element), key[1:], group, every_width)
            for key, group in grouped.items()]


def _large(run: cascade.TextRun) -> bool:
    return run.size >= 24 or (run.size >= 18.66 and run.weight >= 700)


def _ratio(fg: tuple[float, float, float], bg: tuple[float, float, float]) -> float:
    light, dark = sorted((relative_luminance(fg), relative_luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


_MERGE = re.compile(r"\{\{.*?\}\}")


def _owners(document: cascade.Document, blocks: list[_BlockScan]) -> dict[Any, Block]:
    """The block whose template wrote each text element, by its text, reading blocks in email order.

    The email shows the blocks in walk order, so a cursor moves forward only: the contents block's
    link "Volunteers" is the contents block's, the section title "Volunteers" further on the
    section's. Text no block holds (top bar, footer) is the page template's.
    """
    texts = [" ".join("".join(b.scan.text).split()) for b in blocks]
    owner: dict[Any, Block] = {}
    at, pos = 0, 0
    for element in document.body.iter() if document.body is not None else ():
        if not isinstance(element.tag, str):
            continue
        needle = max(_MERGE.split(cascade.own_text(element)), key=len).strip()  # merge fields render apart
        if not needle:
            continue
        for i in range(at, len(texts)):
            found = texts[i].find(needle, pos if i == at else 0)
            if found >= 0:
                owner[element] = blocks[i].block
                at, pos = i, found + len(needle)
                break
    return owner


def _contrast_finding(issue: Issue, theme: Theme, block: Block | None, key: tuple[Any, ...],
                      group: list[_Failure], every_width: tuple[int, ...]) -> A11yFinding:
    kind, fg, bg, need, names, widths = key
    first = group[0]
    text = first.run.text if len(first.run.text) <= 60 else first.run.text[:57] + "..."
    more = f" (and {len(group) - 1} more like it)" if len(group) > 1 else ""
    where = f" mode{_on(widths, every_width)}"
    shown_ratio = min(round(min(f.ratio for f in group), 2), need - 0.01)  # 4.497 must not print as 4.50
    large = " for large text" if need == MIN_CONTRAST_LARGE else ""
    modes = " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
    message = (f"{_where(block) or 'the page template: '}in {modes}{where}, the {kind} {text!r}{more} "
               f"is {fg} on {bg}: {shown_ratio:.2f}:1, below {need:g}:1{large} (WCAG 1.4.3)"
               f"{_palette_keys(theme, names, fg, bg)}")
    return ("error", "a11y-contrast", message, *_at(issue, block))


def _on(widths: tuple[int, ...], every_width: tuple[int, ...]) -> str:
    if widths == every_width:
        return ""
    return f" at {' and '.join(f'{w}px' for w in widths)} wide"


def _palette_keys(theme: Theme, names: tuple[str, ...], fg: str, bg: str) -> str:
    """Which theme colours these are, so a theme's author knows what to change."""
    sections = ["colors"]
    if any(n != "light" for n in names) and getattr(theme, "colors_dark", None) is not None:
        sections.insert(0, "colors_dark")  # a light colour found here is one dark mode left as it was

    def keys(colour: str) -> str:
        for section in sections:
            palette = getattr(theme, section)
            found = [k for k in type(palette).model_fields
                     if parse_color(str(getattr(palette, k))) == parse_color(colour)]
            if found:
                kept = " (light, kept in dark mode)" if section != sections[0] else ""
                return " = ".join(f"{section}.{k}" for k in found) + kept
        return colour
    fg_keys, bg_keys = keys(fg), keys(bg)
    if (fg_keys, bg_keys) == (fg, bg):
        return ""
    return f"; theme {theme.name}: {fg_keys} on {bg_keys}"


def parse_color(value: str) -> tuple[int, int, int] | None:
    """`#rgb`, `#rrggbb` or `rgb(r, g, b)` as 0-255 channels; None for anything else."""
    value = value.strip()
    if _HEX.match(value):
        digits = value[1:] if len(value) == 7 else "".join(c * 2 for c in value[1:])
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    m = _RGB.match(value)
    if m and all(int(c) <= 255 for c in m.groups()):
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return None


def relative_luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (channels 0-255)."""
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two colours, from 1 (none) to 21 (black on white)."""
    fg, bg = parse_color(foreground), parse_color(background)
    if fg is None or bg is None:
        raise ValueError(f"not a colour: {foreground if fg is None else background!r}")
    light, dark = sorted((relative_luminance(fg), relative_luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def theme_file(theme: Theme) -> Path:
    return THEMES_DIR / f"{theme.name}.yaml"


def check_contrast(theme: Theme, path: Path | None = None) -> list[A11yFinding]:
    """Every text colour pair of the theme's palettes (light, and dark when it has one)."""
    path = path or theme_file(theme)
    found = []
    for section in ("colors", "colors_dark"):
        palette = getattr(theme, section, None)
        if palette is not None:
            found += _palette_contrast(theme.name, section, palette, path)
    return found


def _palette_contrast(name: str, section: str, palette: Any, path: Path) -> list[A11yFinding]:
    lines = _key_lines(path, section)
    shown = _shown(path)
    found: list[A11yFinding] = []
    for fg_key, bg_key, used in CONTRAST_PAIRS:
        fg, bg = _colour(palette, fg_key), _colour(palette, bg_key)
        if fg is None or bg is None:
            continue  # a palette without the key: the theme model says whether that is allowed
        line = lines.get(fg_key, lines.get(section, 1))
        bad = next((c for c in (fg, bg) if parse_color(c) is None), None)
        if bad is not None:
            found.append(("warning", "a11y-contrast",
                          f"theme {name}: {section}.{fg_key if bad == fg else bg_key} is {bad!r}, which is not "
                          "#rrggbb, #rgb or rgb(); its contrast cannot be checked", shown, line))
            continue
        ratio = contrast_ratio(fg, bg)
        if ratio < MIN_CONTRAST:
            shown_ratio = min(round(ratio, 2), MIN_CONTRAST - 0.01)  # 4.497 must not print as 4.50
            found.append(("error", "a11y-contrast",
                          f"theme {name}: {section}.{fg_key} {fg} on {section}.{bg_key} {bg} is "
                          f"{shown_ratio:.2f}:1, below {MIN_CONTRAST}:1 (WCAG 1.4.3); used for {used}",
                          shown, line))
    return found


def _colour(palette: Any, key: str) -> str | None:
    value = palette.get(key) if isinstance(palette, Mapping) else getattr(palette, key, None)
    return value if isinstance(value, str) else None


def _key_lines(path: Path, section: str) -> dict[str, int]:
    """Line of each key inside a top-level mapping of a YAML file (and of the section itself)."""
    try:
        text = path.read_text("utf-8")
    except OSError:
        return {}
    out: dict[str, int] = {}
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        head = re.match(rf"^{re.escape(section)}\s*:(.*)$", line)
        if head:
            inside = True
            out[section] = number
            for key in re.findall(r"([A-Za-z_]\w*)\s*:", head.group(1)):  # flow style: {text: "#111", …}
                out.setdefault(key, number)
            continue
        if inside:
            if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
                break
            key = re.match(r"^\s+([A-Za-z_]\w*)\s*:", line)
            if key:
                out.setdefault(key.group(1), number)
    return out


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


__all__ = ["A11yFinding", "CONTRAST_PAIRS", "MIN_CONTRAST", "MIN_CONTRAST_LARGE", "VAGUE_LINK_TEXT",
           "check_accessibility", "check_contrast", "contrast_ratio", "parse_color", "relative_luminance", "theme_file"]
