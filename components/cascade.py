"""The colours a reader sees: a small CSS cascade over the built email, without a browser.

The contrast check (components/a11y.py) must judge what is drawn, not the theme's palette: a
dark-mode rule such as `.nl-card a {color: … !important}` reaches the button inside the card too.
A browser answers that exactly but is slow to start and absent from most machines that run
`check`, so this module computes, for every element that holds text, the properties that decide
what a reader sees (color, the background under it, font size and weight, whether it is shown) from
what the built email carries:

- inline `style` attributes (premailer has already inlined the theme's stylesheet into them),
- the `<style>` blocks that stay (MJML's, the dark-mode rules), their `@media` evaluated per view,
- presentational attributes (`bgcolor`, `<font color>`) and the few user-agent defaults that matter
  (links are blue, headings and <b> are bold and larger, the canvas follows the colour scheme),

ordered as CSS orders them: importance, then inline over sheet, then specificity, then source order.
Selectors are matched by cssselect through lxml (both come with premailer); the few rule blocks
are split by hand (cssutils, premailer's parser, keeps rules a browser drops). tests/test_cascade.py
holds a chromium test that agrees with this, element by element, on the example issues.

A view is one way a client shows the email: light or dark `prefers-color-scheme`, Outlook's dark
mode (its apps mark what they recolour with `data-ogsc`/`data-ogsb`, which the email's own rules
select), at desktop and phone widths.
"""
from __future__ import annotations

import colorsys
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import lxml.html
from cssselect import HTMLTranslator, SelectorError, parse
from lxml import etree

RGBA = tuple[float, float, float, float]  # channels 0-255, alpha 0-1
RGB = tuple[float, float, float]

# What the checks read; a rule that sets none of these changes nothing here.
PROPERTIES = frozenset({"color", "color-scheme", "background-color", "font-size", "font-weight", "display",
                        "visibility", "opacity", "overflow", "overflow-y", "max-height", "height"})

# Chromium's canvas, text and unvisited-link colours (its UA stylesheet and LayoutTheme).
CANVAS = {"light": (255.0, 255.0, 255.0), "dark": (18.0, 18.0, 18.0)}
CANVAS_TEXT = {"light": (0.0, 0.0, 0.0, 1.0), "dark": (255.0, 255.0, 255.0, 1.0)}
LINK = {"light": (0.0, 0.0, 238.0, 1.0), "dark": (158.0, 158.0, 255.0, 1.0)}

DESKTOP, PHONE = 1024, 375
_HEADING_EM = {"h1": 2.0, "h2": 1.5, "h3": 1.17, "h4": 1.0, "h5": 0.83, "h6": 0.67}
_BOLD = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "b", "strong", "th"})
_SIZE_KEYWORDS = {"xx-small": 9.0, "x-small": 10.0, "small": 13.0, "medium": 16.0, "large": 18.0,
                  "x-large": 24.0, "xx-large": 32.0, "xxx-large": 48.0}
_NOT_SHOWN = frozenset({"head", "script", "style", "title", "template", "noscript", "meta", "link"})
# Characters that take no room: the preheader pads itself with them.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u034f\u00ad"), " ")


@dataclass(frozen=True)
class View:
    name: str  # as findings name it
    scheme: str  # what `prefers-color-scheme` answers: light or dark
    width: int  # viewport width in CSS px, for width media queries
    outlook: bool = False  # data-ogsc and data-ogsb on <body>


@dataclass(frozen=True)
class TextRun:
    """An element's own text (its text nodes, not its children's) as a reader sees it in one view."""

    element: Any  # lxml element
    text: str  # whitespace collapsed
    color: RGB  # the text colour, composited over the background
    background: RGB  # what is drawn under it, every translucent layer composited down to the canvas
    size: float  # font size in px
    weight: int  # 100-900
    kind: str  # button, link, heading or text


@dataclass(frozen=True)
class _Rule:
    xpath: etree.XPath
    specificity: tuple[int, int, int]
    order: int
    media: tuple[str, ...]  # media query lists that must all match (<style media>, nested @media)
    declarations: tuple[tuple[str, str, bool], ...]  # (property, value, important)
    outlook: bool  # selects [data-ogsc] or [data-ogsb]


@dataclass
class _Computed:
    color: RGBA
    under: RGB  # the background under this element's content
    size: float
    weight: int
    hidden: bool
    visible: bool  # the inherited `visibility`
    link: bool
    heading: bool
    own_background: bool


class Document:
    """A built email, parsed once, to be read in several views."""

    def __init__(self, html: str) -> None:
        self.root = lxml.html.document_fromstring(html)
        self.body = self.root.find("body") if self.root.tag != "body" else self.root
        self.rules = _rules(self.root)
        self.dark_capable = _declares_dark(self.root, self.rules)
        # Presentational hints and style attributes are the same in every view: read them once.
        self._hints = [(e, h) for e in self.root.iter(etree.Element) if (h := _hints(e))]
        self._inline = [(e, d) for e in self.root.iter(etree.Element)
                        if (d := parse_declarations(e.get("style") or ""))]

    def views(self) -> list[View]:
        """The views this email can be seen in: dark ones only if it has dark rules or allows dark."""
        media = [m.lower() for r in self.rules for m in r.media]
        widths = [DESKTOP, PHONE] if any("width" in m for m in media) else [DESKTOP]
        out = []
        for width in widths:
            out.append(View("light", "light", width))
            if any("prefers-color-scheme" in m for m in media) or self.dark_capable:
                out.append(View("dark", "dark", width))
            if any(r.outlook for r in self.rules):
                out.append(View("Outlook dark", "light", width, outlook=True))
        return out

    def text_runs(self, view: View) -> list[TextRun]:
        """Every shown element with text of its own, in document order."""
        if self.body is None:
            return []
        computed = self._compute(view)
        runs = []
        for element in self.body.iter(etree.Element):
            style = computed.get(element)
            if style is None or style.hidden or not style.visible or style.size <= 0:
                continue
            text = own_text(element)
            if text:
                runs.append(TextRun(element, text, _over(style.color, style.under), style.under, style.size,
                                    style.weight, _kind(element, style)))
        return runs

    def _compute(self, view: View) -> dict[Any, _Computed]:
        declared = self._declared(view)
        scheme = view.scheme if self.dark_capable else "light"
        computed: dict[Any, _Computed] = {}
        for element in self.root.iter(etree.Element):
            parent = element.getparent()
            if element.tag in _NOT_SHOWN or (parent is not None and parent not in computed):
                continue  # not drawn, nor anything inside it
            computed[element] = _compute(element, computed.get(parent), declared.get(element, {}), scheme)
        return computed

    def _declared(self, view: View) -> dict[Any, dict[str, str]]:
        """Per element, the winning value of each property (the cascade, without inheritance)."""
        candidates: dict[Any, dict[str, tuple[tuple[Any, ...], str]]] = {}

        def offer(element: Any, key: tuple[Any, ...], declarations: Any) -> None:
            slot = candidates.setdefault(element, {})
            for index, (name, value, important) in enumerate(declarations):
                rank = (important, *key, index)
                if name not in slot or rank >= slot[name][0]:
                    slot[name] = (rank, value)

        for element, hints in self._hints:
            offer(element, (-1, (0, 0, 0), 0), hints)
        with _OutlookMarks(self.body if view.outlook else None):
            for rule in self.rules:
                if not all(media_matches(m, view) for m in rule.media):
                    continue
                for element in rule.xpath(self.root):
                    offer(element, (0, rule.specificity, rule.order), rule.declarations)
        for element, declarations in self._inline:
            offer(element, (1, (0, 0, 0), 0), declarations)
        return {element: {name: value for name, (_, value) in slot.items()}
                for element, slot in candidates.items()}


def own_text(element: Any) -> str:
    """The element's text nodes (its text and its children's tails), whitespace collapsed."""
    parts = [element.text or ""]
    parts += [child.tail or "" for child in element]
    return " ".join("".join(parts).translate(_INVISIBLE).split())


# --- the cascade -------------------------------------------------------------------------------


def _compute(element: Any, parent: _Computed | None, declared: dict[str, str], scheme: str) -> _Computed:
    tag = element.tag if isinstance(element.tag, str) else ""
    base = parent or _Computed(CANVAS_TEXT[scheme], CANVAS[scheme], 16.0, 400, False, True, False, False, False)
    link = base.link or (tag == "a" and element.get("href") is not None)
    size = _font_size(declared.get("font-size"), base.size, tag)
    color = _color(declared.get("color"), base.color, scheme, tag == "a" and element.get("href") is not None)
    background = _background(declared.get("background-color"), color)
    display = declared.get("display", "").strip().lower()
    overflow = (declared.get("overflow", "") + declared.get("overflow-y", "")).lower()
    clipped = ("hidden" in overflow or "clip" in overflow) and display != "inline" and any(
        _length(declared.get(p, ""), size) == 0 for p in ("max-height", "height"))
    visibility = declared.get("visibility", "").strip().lower()
    return _Computed(
        color=color,
        under=_over(background, base.under) if background[3] > 0 else base.under,
        size=size,
        weight=_font_weight(declared.get("font-weight"), base.weight, tag),
        hidden=base.hidden or display == "none" or _number(declared.get("opacity")) == 0 or clipped,
        visible=base.visible if visibility in ("", "inherit") else visibility == "visible",
        link=link,
        heading=base.heading or tag in _HEADING_EM,
        own_background=background[3] > 0,
    )


def _color(value: str | None, inherited: RGBA, scheme: str, is_link: bool) -> RGBA:
    # A link's UA colour is a rule on the link itself: it beats the colour the link would inherit.
    fallback = LINK[scheme] if is_link else inherited
    if value is None:
        return fallback
    keyword = value.strip().lower()
    if keyword in ("inherit", "currentcolor", "unset"):
        return inherited
    if keyword == "initial":
        return CANVAS_TEXT[scheme]
    return parse_css_color(value) or fallback


def _background(value: str | None, color: RGBA) -> RGBA:
    if value is None:
        return (0.0, 0.0, 0.0, 0.0)
    if value.strip().lower() == "currentcolor":
        return color
    return parse_css_color(value) or (0.0, 0.0, 0.0, 0.0)


def _font_size(value: str | None, inherited: float, tag: str) -> float:
    if value is None:
        return inherited * _HEADING_EM.get(tag, 1 / 1.2 if tag == "small" else 1.0)  # small: `smaller`
    keyword = value.strip().lower()
    if keyword in _SIZE_KEYWORDS:
        return _SIZE_KEYWORDS[keyword]
    if keyword == "smaller":
        return inherited / 1.2
    if keyword == "larger":
        return inherited * 1.2
    size = _length(value, inherited, percent_of=inherited)
    return inherited if size is None else size


def _font_weight(value: str | None, inherited: int, tag: str) -> int:
    if value is None:  # the UA's: `b, strong {font-weight: bolder}`, headings and th bold
        if tag in ("b", "strong"):
            return _bolder(inherited)
        return 700 if tag in _BOLD else inherited
    keyword = value.strip().lower()
    if keyword == "bold":
        return 700
    if keyword == "normal":
        return 400
    if keyword == "bolder":
        return _bolder(inherited)
    if keyword == "lighter":
        return 100 if inherited < 600 else 400 if inherited < 800 else 700
    number = _number(keyword)
    return int(number) if number is not None and 1 <= number <= 1000 else inherited


def _bolder(weight: int) -> int:
    return 400 if weight < 350 else 700 if weight < 550 else 900


def _kind(element: Any, style: _Computed) -> str:
    if element.tag == "a" and style.own_background:
        return "button"  # MJML draws a button as a link with a background of its own
    if style.link:
        return "link"
    return "heading" if style.heading else "text"


def _over(top: RGBA, under: RGB) -> RGB:
    alpha = top[3]
    return (top[0] * alpha + under[0] * (1 - alpha), top[1] * alpha + under[1] * (1 - alpha),
            top[2] * alpha + under[2] * (1 - alpha))


# --- reading CSS -------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse_declarations(text: str) -> tuple[tuple[str, str, bool], ...]:
    """`a: b; c: d !important` as ((property, value, important), …), shorthands read for what matters."""
    out: list[tuple[str, str, bool]] = []
    chunks = text.split(";") if not any(c in text for c in "\"'(") else _split(text, ";")
    for chunk in chunks:
        name, colon, value = chunk.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            continue
        value, important = _importance(value)
        out += _expand(name, value, important)
    return tuple(out)


def _importance(value: str) -> tuple[str, bool]:
    if "!" not in value:
        return value.strip(), False
    m = re.search(r"!\s*important\s*$", value, re.I)
    return (value[:m.start()].strip(), True) if m else (value.strip(), False)


def _expand(name: str, value: str, important: bool) -> list[tuple[str, str, bool]]:
    if name == "background":
        # The shorthand resets the colour to transparent when it names none (`background: url(x)`).
        colour = next((t for t in _split(value, " ") if parse_css_color(t) is not None), "transparent")
        return [("background-color", colour, important)]
    if name == "font":
        return _font_shorthand(value, important)
    return [(name, value, important)] if name in PROPERTIES else []


def _font_shorthand(value: str, important: bool) -> list[tuple[str, str, bool]]:
    weight = "normal"
    for token in _split(value, " "):
        size = token.split("/")[0]
        if _length(size, 16.0) is not None or size.lower() in _SIZE_KEYWORDS:
            return [("font-size", size, important), ("font-weight", weight, important)]
        if token.lower() in ("bold", "bolder", "lighter") or re.fullmatch(r"[1-9]00", token):
            weight = token
    return []  # a system font keyword (`font: menu`) or garbage: leave both alone


def _split(text: str, separator: str) -> Iterator[str]:
    """Split outside quotes and parentheses."""
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and (ch == separator or (separator == " " and ch.isspace())):
            if text[start:i].strip():
                yield text[start:i].strip()
            start = i + 1
    if text[start:].strip():
        yield text[start:].strip()


def _rules(root: Any) -> list[_Rule]:
    """The style rules of every <style> block that can matter here, in source order."""
    out: list[_Rule] = []
    for style in root.iter("style"):
        media = (style.get("media") or "").strip()
        out += _sheet_rules(style.text or "", (media,) if media else (), len(out))
    return out


def _sheet_rules(css: str, media: tuple[str, ...], start: int) -> list[_Rule]:
    # Read by hand rather than with cssutils, which keeps a rule whose selector list holds an invalid
    # selector (`.a &gt; table` became `table`) where a browser drops the whole rule.
    out: list[_Rule] = []
    for prelude, block in _blocks(re.sub(r"/\*.*?\*/", "", css, flags=re.S)):
        if prelude.lower().startswith("@media"):
            out += _sheet_rules(block or "", (*media, prelude[6:].strip()), start + len(out))
        elif prelude.startswith("@") or block is None:
            continue  # @font-face, @supports, @import…: nothing this reads
        else:
            out += _style_rule(prelude, block, media, start + len(out))
    return out


def _style_rule(prelude: str, block: str, media: tuple[str, ...], order: int) -> list[_Rule]:
    declarations = parse_declarations(block)
    selectors = [_selector(text) for text in _split(prelude, ",")]
    if not declarations or not selectors:
        return []
    if any(s is None for s in selectors):
        return []  # one invalid selector drops the whole rule, as browsers do
    return [_Rule(xpath, specificity, order + i, media, declarations, "data-ogs" in prelude.lower())
            for i, (xpath, specificity) in enumerate(s for s in selectors if s is not None and s[0] is not None)]


def _blocks(css: str) -> Iterator[tuple[str, str | None]]:
    """Top-level (prelude, block) pairs; block None for a statement (`@import x;`)."""
    depth, quote, start, opened = 0, "", 0, 0
    prelude = ""
    for i, ch in enumerate(css):
        if quote:
            quote = "" if ch == quote and css[i - 1] != "\\" else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            if depth == 0:
                prelude, opened = css[start:i].strip(), i + 1
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield prelude, css[opened:i]
                start = i + 1
        elif ch == ";" and depth == 0:
            yield css[start:i].strip(), None
            start = i + 1


@lru_cache(maxsize=512)
def _selector(text: str) -> tuple[etree.XPath | None, tuple[int, int, int]] | None:
    """XPath and specificity of one selector: None if invalid, XPath None if it selects no element's text."""
    try:
        [parsed] = parse(text)
        if parsed.pseudo_element is not None:
            return None, (0, 0, 0)  # ::before, ::first-line: valid, but not the element's own colours
        return etree.XPath(HTMLTranslator().selector_to_xpath(parsed)), parsed.specificity()
    except (SelectorError, ValueError, etree.XPathError):
        return None


def _hints(element: Any) -> list[tuple[str, str, bool]]:
    """Presentational attributes, which any CSS rule overrides."""
    out = []
    bgcolor = element.get("bgcolor")
    if bgcolor:
        out.append(("background-color", _legacy_colour(bgcolor), False))
    if element.tag == "font" and element.get("color"):
        out.append(("color", _legacy_colour(element.get("color")), False))
    return out


def _legacy_colour(value: str) -> str:
    value = value.strip()
    return f"#{value}" if re.fullmatch(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{3}", value) else value


def _declares_dark(root: Any, rules: list[_Rule]) -> bool:
    """The email allows a dark canvas (`color-scheme` in a meta tag or on :root)."""
    metas = root.xpath("//meta[@name='color-scheme' or @name='supported-color-schemes']/@content")
    return any("dark" in m.lower() for m in metas) or any(
        name == "color-scheme" and "dark" in value.lower() for r in rules for name, value, _ in r.declarations)


class _OutlookMarks:
    """What Outlook's apps add in dark mode, for the rules that select it; removed afterwards."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def __enter__(self) -> None:
        if self.body is not None:
            self.body.set("data-ogsc", "")
            self.body.set("data-ogsb", "")

    def __exit__(self, *exc: object) -> None:
        if self.body is not None:
            self.body.attrib.pop("data-ogsc", None)
            self.body.attrib.pop("data-ogsb", None)


# --- media queries -----------------------------------------------------------------------------

_FEATURE = re.compile(r"\(\s*([a-z-]+)\s*(?::\s*([^)]*?))?\s*\)", re.I)


def media_matches(media: str, view: View) -> bool:
    """A media query list (`screen and (max-width: 479px), print`) in one view; unknown features fail."""
    return any(_query_matches(q, view) for q in media.split(",") if q.strip())


def _query_matches(query: str, view: View) -> bool:
    text = query.strip().lower()
    negate = text.startswith("not ")
    text = re.sub(r"^(not|only)\s+", "", text)
    kind = re.match(r"^([a-z-]+)", text)
    matched = kind is None or kind.group(1) in ("all", "screen") or kind.group(1) == "and"
    for name, value in _FEATURE.findall(text):
        matched = matched and _feature(name, (value or "").strip(), view)
    return matched != negate


def _feature(name: str, value: str, view: View) -> bool:
    if name == "prefers-color-scheme":
        return value == view.scheme if value else True
    if name in ("min-width", "max-width", "width", "min-device-width", "max-device-width", "device-width"):
        px = _length(value, 16.0)
        if px is None:
            return False
        return {"min": view.width >= px, "max": view.width <= px}.get(name.split("-")[0], view.width == px)
    return False


# --- values ------------------------------------------------------------------------------------


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _length(value: str, em: float, percent_of: float | None = None) -> float | None:
    """A CSS length in px (em against `em`, rem against 16px); None when it is not one."""
    m = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*(px|pt|em|rem|%|)\s*", value or "", re.I)
    if m is None:
        return None
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit == "%":
        return None if percent_of is None else number * percent_of / 100
    if unit == "" and number != 0:
        return None  # a unitless length is invalid (quirks aside)
    return number * {"px": 1.0, "": 1.0, "pt": 4 / 3, "em": em, "rem": 16.0}[unit]


@lru_cache(maxsize=1024)
def parse_css_color(value: str) -> RGBA | None:
    """Any CSS colour but system colours: #rgb(a), #rrggbb(aa), rgb(a)(), hsl(a)(), names, transparent."""
    text = value.strip().lower()
    if text == "transparent":
        return (0.0, 0.0, 0.0, 0.0)
    if re.fullmatch(r"#[0-9a-f]{3,8}", text) and len(text) in (4, 5, 7, 9):
        digits = text[1:] if len(text) > 5 else "".join(c * 2 for c in text[1:])
        channels = [int(digits[i:i + 2], 16) for i in range(0, len(digits), 2)]
        return (float(channels[0]), float(channels[1]), float(channels[2]),
                channels[3] / 255 if len(channels) == 4 else 1.0)
    m = re.fullmatch(r"(rgba?|hsla?)\((.*)\)", text)
    if m:
        return _functional(m.group(1), re.split(r"\s*[,/]\s*|\s+", m.group(2).strip()))
    from cssutils.css.colors import COLORS  # the CSS 3 named colours

    named = COLORS.get(text) or ((102, 51, 153, 1.0) if text == "rebeccapurple" else None)  # CSS 4 added one
    return (float(named[0]), float(named[1]), float(named[2]), float(named[3])) if named else None


def _functional(name: str, parts: list[str]) -> RGBA | None:
    if len(parts) not in (3, 4):
        return None
    try:
        alpha = 1.0 if len(parts) == 3 else _fraction(parts[3])
        if name.startswith("rgb"):
            r, g, b = (_channel(p) for p in parts[:3])
        else:
            hue = float(parts[0].removesuffix("deg")) / 360 % 1
            red, green, blue = colorsys.hls_to_rgb(hue, _fraction(parts[2]), _fraction(parts[1]))
            r, g, b = red * 255, green * 255, blue * 255
    except ValueError:
        return None
    return (r, g, b, min(max(alpha, 0.0), 1.0))


def _channel(part: str) -> float:
    value = float(part[:-1]) * 255 / 100 if part.endswith("%") else float(part)
    return min(max(value, 0.0), 255.0)


def _fraction(part: str) -> float:
    return float(part[:-1]) / 100 if part.endswith("%") else float(part)


def hex_colour(rgb: RGB) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


__all__ = ["DESKTOP", "PHONE", "Document", "TextRun", "View", "hex_colour", "media_matches", "own_text",
           "parse_css_color", "parse_declarations"]
