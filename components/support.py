"""Client support: the HTML and CSS features a built email uses that its readers' clients lack.

The data is caniemail.com's (vendored in components/caniemail/, MIT, refreshed with
`make caniemail`): per feature, client family, platform and version, "y" (supported), "a"
(partial), "n" (not supported) or "u" (unknown), each maybe followed by "#n" note numbers.
As Maizzle's dev server does (through the npm `caniemail` package), every feature the email
uses is looked up on the latest version of each platform of the configured clients: a feature
no platform supports is an error, one some platforms lack is a warning naming them.

Scope rules keep the report about what a reader can see:
- content of downlevel-hidden conditional comments (`<!--[if mso | IE]>…<![endif]-->`) is
  read by Outlook's Word engine only, so it is checked against those platforms only;
- CSS inside `<style>` (or inside `@media`) is not held against a platform that drops the
  `<style>` element (or `@media`) altogether: the html-style (css-at-media) finding says so once;
- BASICS are never reported, and components/support_allowlist.yaml lists MJML's deliberate
  fallbacks, each with its reason;
- VML and Office elements (`<v:image>`, `<v:rect>`, `<o:…>`: a hero's background for Outlook)
  exist only for Word, and their `style` is VML's positioning, not the CSS caniemail describes:
  they are not checked.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from .errors import ComponentError

DATA_PATH = Path(__file__).parent / "caniemail" / "caniemail.json"
ALLOWLIST_PATH = Path(__file__).parent / "support_allowlist.yaml"
DEFAULT_CLIENTS: tuple[str, ...] = ("gmail", "apple-mail", "outlook", "yahoo")

# The platforms that render with Word and so read <!--[if mso]> content (Windows Mail too).
MSO_PLATFORMS = frozenset({"outlook.windows", "outlook.windows-mail"})

# The building blocks every email uses, MJML's output included: table layout and its
# attributes, text elements, the box model and type properties, plain units and selectors.
# caniemail marks many of them partial or "n" somewhere (Outlook's Word engine ignores
# padding on a <div>, Yahoo turns height into min-height…), but no email can do without
# them and nothing in an issue file can change them, so reporting them would only bury
# the findings an author can act on.
BASICS = frozenset({
    "html-table", "html-img", "html-div", "html-p", "html-span", "html-strong", "html-h1-h6",
    "html-body", "html-lists", "html-blockquote", "html-hr", "html-small",
    "html-cellpadding", "html-cellspacing", "html-width", "html-height", "html-align",
    "html-valign", "html-lang", "html-dir",
    "css-font-size", "css-font-weight", "css-line-height", "css-letter-spacing",
    "css-text-align", "css-text-decoration", "css-text-transform", "css-vertical-align",
    "css-direction", "css-background-color", "css-border", "css-border-collapse",
    "css-padding", "css-margin", "css-width", "css-height", "css-max-width", "css-display",
    "css-unit-px", "css-unit-percent", "css-unit-em", "css-unit-pt",
    "css-selector-type", "css-selector-class", "css-selector-id", "css-selector-descendant",
    "css-selector-grouping",
    "image-png", "image-jpg", "image-gif",
})


@dataclass(frozen=True)
class SupportIssue:
    level: str  # "error" | "warning"
    feature_slug: str
    feature_title: str
    where: str  # what was found, where first, and how often
    clients: list[str] = field(default_factory=list)  # "family.platform" lacking it
    notes: list[str] = field(default_factory=list)  # caniemail's notes, and partial support

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.level}: {self.feature_title} [{self.feature_slug}] not supported by "
                f"{', '.join(self.clients)}: {self.where}")


@dataclass(frozen=True)
class AllowEntry:
    """One allowlisted feature: everywhere, or only where its context contains `match`."""

    feature: str
    reason: str
    match: str | None = None


def check_support(html: str, clients: Sequence[str] = DEFAULT_CLIENTS, *,
                  data: Caniemail | Mapping[str, Any] | None = None,
                  allowlist: Iterable[AllowEntry] | None = None) -> list[SupportIssue]:
    """Every feature of `html` some configured client lacks, errors first.

    `clients` are families ("outlook") or single platforms ("outlook.windows"). `data` and
    `allowlist` default to the vendored caniemail data and components/support_allowlist.yaml.
    """
    db = load_caniemail() if data is None else data if isinstance(data, Caniemail) else Caniemail(data)
    entries = load_allowlist() if allowlist is None else tuple(allowlist)
    platforms = db.platforms(clients)
    uses = _Uses(entries)
    _Scanner(db, uses).scan(html)
    issues = []
    for slug, use in uses.by_slug.items():
        lacking, having, notes = db.verdict(slug, db.in_scope(use.scopes, platforms))
        if lacking:
            issues.append(SupportIssue("warning" if having else "error", slug, db.title(slug),
                                       use.where(), list(lacking), list(notes)))
    return sorted(issues, key=lambda i: (i.level != "error", i.feature_slug))


# --- the data ----------------------------------------------------------------------------

_NUMBERS = re.compile(r"\d+")


def latest_version(versions: Mapping[str, str]) -> str:
    """The key of the newest version caniemail tested on one platform.

    Versions are listed oldest first, so it is the last key, except that a few were added out
    of order (outlook-com "2024-04" then "2024-01"; Apple Mail iOS "15" then "14"): of the keys
    written like the last one, the highest wins. Keys written otherwise are an older naming
    scheme (Outlook for Mac "2019-02" before "16.80") and never win.
    """
    keys = list(versions)
    shape = _NUMBERS.sub("0", keys[-1])
    same = [k for k in keys if _NUMBERS.sub("0", k) == shape]
    return max(reversed(same), key=lambda k: [int(n) for n in _NUMBERS.findall(k)])


def parse_support(value: str) -> tuple[str, tuple[str, ...]]:
    """"a #1 #3" -> ("a", ("1", "3")): the support letter (y, a, n or u) and note numbers."""
    words = value.split()
    letter = words[0][0].lower() if words else "u"
    return (letter if letter in "yanu" else "u"), tuple(w[1:] for w in words if w.startswith("#"))


@cache
def load_caniemail(path: Path = DATA_PATH) -> Caniemail:
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ComponentError(f"cannot read the caniemail data {path}: {exc} (run `make caniemail`)") from exc
    return Caniemail(raw)


@cache
def load_allowlist(path: Path = ALLOWLIST_PATH) -> tuple[AllowEntry, ...]:
    """The allowlist, refused whole if an entry lacks a reason or names no caniemail feature."""
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ComponentError(f"cannot read {path}: {exc}") from exc
    known = load_caniemail().features
    entries, problems = [], []
    for n, item in enumerate(raw if isinstance(raw, list) else [raw], 1):
        if not isinstance(item, dict) or set(item) - {"feature", "reason", "match"}:
            problems.append(f"entry {n}: expected a mapping of feature, reason and optional match")
        elif item.get("feature") not in known:
            problems.append(f"entry {n}: {item.get('feature')!r} is not a caniemail feature slug")
        elif not isinstance(item.get("reason"), str) or not item["reason"].strip():
            problems.append(f"entry {n} ({item['feature']}): a reason is required")
        elif item.get("match") is not None and not isinstance(item["match"], str):
            problems.append(f"entry {n} ({item['feature']}): match must be a string")
        else:
            entries.append(AllowEntry(item["feature"], item["reason"].strip(), item.get("match")))
    if problems:
        raise ComponentError(f"{path}: " + "; ".join(problems))
    return tuple(entries)


# What titles don't say: tags, attributes and properties of features named in prose.
_ELEMENTS_BY_SLUG = {
    "html-address": ("address",),
    "html-semantics": ("article", "aside", "details", "figcaption", "figure", "footer", "header",
                       "main", "mark", "nav", "section", "summary", "time"),
    "html-image-maps": ("map", "area"),
    "html-svg": ("svg",),
    "html-h1-h6": ("h1", "h2", "h3", "h4", "h5", "h6"),
    "html-lists": ("ul", "ol", "dl"),
}
_ATTRIBUTES_BY_SLUG = {"html-srcset": ("srcset", "sizes"), "css-inert-attribute": ("inert",)}
_SIDES = ("top", "right", "bottom", "left")
_PROPERTIES_BY_SLUG = {
    "css-border": ("border", "border-width", "border-style", "border-color",
                   *(f"border-{s}{p}" for s in _SIDES for p in ("", "-width", "-style", "-color"))),
    "css-border-radius": ("border-radius", "border-top-left-radius", "border-top-right-radius",
                          "border-bottom-right-radius", "border-bottom-left-radius"),
    "css-margin": ("margin", *(f"margin-{s}" for s in _SIDES)),
    "css-padding": ("padding", *(f"padding-{s}" for s in _SIDES)),
    "css-overflow": ("overflow", "overflow-x", "overflow-y", "overflow-block", "overflow-inline"),
    "css-inset": ("inset", "inset-block", "inset-inline", "inset-block-start", "inset-block-end",
                  "inset-inline-start", "inset-inline-end"),
    "css-scroll-snap": ("scroll-snap-type", "scroll-snap-align", "scroll-snap-stop"),
    "css-color-scheme": ("color-scheme",),
    "css-column-layout-properties": ("columns", "column-count", "column-fill", "column-gap", "column-rule",
                                     "column-rule-color", "column-rule-style", "column-rule-width",
                                     "column-span", "column-width"),
    "css-grid-template": ("grid-template", "grid-template-areas", "grid-template-columns", "grid-template-rows"),
    "css-border-inline-block-individual": tuple(f"border-{a}-{b}" for a in ("inline", "block")
                                                for b in ("start", "end", "color", "style", "width")),
    "css-border-inline-block-longhand": tuple(f"border-{a}-{b}-{c}" for a in ("inline", "block")
                                              for b in ("start", "end") for c in ("color", "style", "width")),
    "css-border-radius-logical": ("border-start-start-radius", "border-start-end-radius",
                                  "border-end-start-radius", "border-end-end-radius"),
}
# Longhands that share their shorthand's feature (animation-name -> css-animation).
_LONGHAND_ROOTS = ("animation", "transition", "background", "outline", "list-style", "column-rule",
                   "grid-template", "text-emphasis", "border-inline", "border-block", "margin",
                   "padding", "border", "overflow", "inset", "scroll-snap")
_VALUE_KEYWORD_SLUGS = ("css-sytem-ui", "css-intrinsic-size")  # titles list values, not properties
_IMAGE_EXTENSIONS = {"jpg": ("jpg", "jpeg"), "tiff": ("tif", "tiff"), "heif": ("heif", "heic"),
                     "svg": ("svg", "svg+xml")}
_PROPERTY = re.compile(r"-?[a-z][a-z-]*")
_VENDOR = re.compile(r"^-(?:webkit|moz|ms|o)-")


class Caniemail:
    """The caniemail data, indexed by what HTML and CSS contain (derived from the titles)."""

    def __init__(self, raw: Mapping[str, Any]):
        self.features: dict[str, Mapping[str, Any]] = {f["slug"]: f for f in raw.get("data", [])}
        self.elements: dict[str, list[str]] = {}
        self.attributes: dict[str, list[str]] = {}
        self.typed: dict[tuple[str, str, str], str] = {}  # <input type="text"> and the like
        self.properties: dict[str, list[str]] = {}
        self.pairs: dict[tuple[str, str], str] = {}  # display:flex
        self.functions: dict[str, str] = {"var": "css-variables"}
        self.units: dict[str, str] = {}
        self.keywords: dict[str, str] = {}
        self.at_rules: dict[str, str] = {}
        self.media_features: dict[str, str] = {}
        self.pseudos: dict[str, str] = {}
        self.images: dict[str, str] = {}
        self.known_platforms: dict[str, list[str]] = {}
        for slug, feature in self.features.items():
            title, category = str(feature.get("title", "")).strip(), feature.get("category")
            if category == "html":
                self._index_html(slug, title)
            elif category == "css":
                self._index_css(slug, title)
            elif category == "image" and slug != "image-base64":
                for ext in _IMAGE_EXTENSIONS.get(slug[6:], (slug[6:],)):
                    self.images[ext] = slug
            for family, platforms in (feature.get("stats") or {}).items():
                known = self.known_platforms.setdefault(family, [])
                known += [p for p in platforms if p not in known]
        self._verdicts: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], ...]] = {}
        self._scopes: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._styles: dict[str, list[tuple[str, str]]] = {}
        self._values: dict[tuple[str, str], tuple[str, ...]] = {}

    def title(self, slug: str) -> str:
        return str(self.features[slug].get("title", slug)).strip()

    def _index_html(self, slug: str, title: str) -> None:
        typed = re.fullmatch(r'<(\w+) (\w+)="(\w+)"> element', title)
        if typed:
            self.typed[typed[1], typed[2], typed[3]] = slug
        elif slug in _ATTRIBUTES_BY_SLUG or title.endswith(" attribute"):
            for name in _ATTRIBUTES_BY_SLUG.get(slug, (title[:-len(" attribute")],)):
                self.attributes.setdefault(name, []).append(slug)
        else:
            for tag in _ELEMENTS_BY_SLUG.get(slug, re.findall(r"<(\w+)>", title)):
                self.elements.setdefault(tag, []).append(slug)

    def _index_css(self, slug: str, title: str) -> None:
        if slug in _ATTRIBUTES_BY_SLUG:  # css-inert-attribute
            for name in _ATTRIBUTES_BY_SLUG[slug]:
                self.attributes.setdefault(name, []).append(slug)
        elif slug.startswith(("css-pseudo-class-", "css-pseudo-element-")):
            prefix = "::" if slug.startswith("css-pseudo-element-") else ":"
            self.pseudos[prefix + slug.split("-", 3)[3]] = slug  # css-pseudo-class-first-child
        elif slug in _VALUE_KEYWORD_SLUGS:
            for word in re.split(r"\s*,\s*", title):
                self.keywords[word] = slug
        elif title.startswith("@media ("):
            for name in re.findall(r"\(([-a-z]+)\)", title):
                self.media_features[_media_feature(name)] = slug
        elif title.startswith("@"):
            self.at_rules[title[1:]] = slug
        elif title.endswith(" unit"):
            unit = title[:-len(" unit")]
            if unit == "initial":
                self.keywords[unit] = slug
            else:
                self.units[unit] = slug
        elif "()" in title:
            for name in re.findall(r"([a-z-]+)\(\)", title):
                self.functions[name] = slug
        elif pair := re.fullmatch(r"([a-z-]+):\s*([a-z-]+)", title):
            self.pairs[pair[1], pair[2]] = slug
        else:
            names = _PROPERTIES_BY_SLUG.get(slug)
            if names is None:
                parts = re.split(r"\s*(?:,|&)\s*", re.sub(r" (?:property|shorthand)$", "", title))
                names = tuple(parts) if all(_PROPERTY.fullmatch(p) for p in parts) else ()
            for name in names:
                self.properties.setdefault(name, []).append(slug)

    def platforms(self, clients: Sequence[str]) -> tuple[str, ...]:
        """"outlook" -> ("outlook.windows", …); "outlook.windows" -> itself; unknown -> error."""
        found: list[str] = []
        for client in clients:
            family, _, platform = client.partition(".")
            known = self.known_platforms.get(family, [])
            if not known:
                names = ", ".join(sorted(self.known_platforms))
                raise ComponentError(f"unknown email client {client!r} (caniemail knows: {names})")
            if platform and platform not in known:
                names = ", ".join(sorted(known))
                raise ComponentError(f"unknown platform {platform!r} of {family} (caniemail knows: {names})")
            found += [f"{family}.{p}" for p in known if (not platform or p == platform)
                      and f"{family}.{p}" not in found]
        return tuple(found)

    def latest(self, slug: str, platform: str) -> tuple[str, tuple[str, ...]]:
        """The support letter and note numbers of a feature on the latest version of a platform."""
        family, _, name = platform.partition(".")
        versions = (self.features[slug].get("stats") or {}).get(family, {}).get(name)
        return parse_support(versions[latest_version(versions)]) if versions else ("u", ())

    def in_scope(self, scopes: Iterable[tuple[bool, tuple[str, ...]]],
                 platforms: tuple[str, ...]) -> tuple[str, ...]:
        """The platforms that can see at least one use: see the module docstring."""
        found: dict[str, None] = {}
        for mso, requires in scopes:
            key = (mso, requires, platforms)
            if key not in self._scopes:
                self._scopes[key] = tuple(
                    p for p in platforms if (not mso or p in MSO_PLATFORMS)
                    and not any(self.latest(r, p)[0] == "n" for r in requires if r in self.features))
            found.update(dict.fromkeys(self._scopes[key]))
        return tuple(found)

    def verdict(self, slug: str, platforms: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """(platforms lacking it, platforms having it, notes) on their latest versions."""
        key = (slug, platforms)
        if key in self._verdicts:
            return self._verdicts[key]
        texts = self.features[slug].get("notes_by_num") or {}
        lacking: list[str] = []
        having: list[str] = []
        partly: list[str] = []
        cited: dict[str, list[str]] = {}
        for platform in platforms:
            letter, numbers = self.latest(slug, platform)
            if letter == "u":  # unknown, or never tested there: neither for nor against
                continue
            (lacking if letter == "n" else having).append(platform)
            if letter == "a":
                partly.append(platform)
            if letter in "an":
                for number in numbers:
                    cited.setdefault(number, []).append(platform)
        notes = [f"partial support: {', '.join(partly)}"] if partly else []
        notes += [f"{', '.join(ps)}: {texts[n]}" for n, ps in cited.items() if texts.get(n)]
        self._verdicts[key] = result = (tuple(lacking), tuple(having), tuple(notes))
        return result

    # What one CSS declaration uses, memoised: a built email repeats the same few hundred.
    def style_features(self, style: str) -> list[tuple[str, str]]:
        """(slug, "property:value") for each feature of a style attribute or declaration block."""
        found = self._styles.get(style)
        if found is None:
            found = self._styles[style] = [
                (slug, f"{prop}:{value}") for prop, value in _declarations(style)
                for slug in self.declaration_features(prop, value)]
        return found

    def declaration_features(self, prop: str, value: str) -> tuple[str, ...]:
        key = (prop, value)
        if key not in self._values:
            self._values[key] = tuple(dict.fromkeys(self._property_features(prop)
                                                    + self._value_features(prop, value)))
        return self._values[key]

    def _property_features(self, prop: str) -> list[str]:
        if prop.startswith("--"):
            return ["css-variables"]
        name = _VENDOR.sub("", prop)
        if name in self.properties:
            return self.properties[name]
        while "-" in name:
            name = name.rsplit("-", 1)[0]
            if name in _LONGHAND_ROOTS and name in self.properties:
                return self.properties[name]
        return []

    def _value_features(self, prop: str, value: str) -> list[str]:
        value = value.lower()
        found = []
        if "!" in value and _IMPORTANT.search(value):
            found.append("css-important")
            value = _IMPORTANT.sub("", value)
        plain = value.strip()
        pair = self.pairs.get((prop, plain)) or self.pairs.get((prop, plain.removeprefix("inline-")))
        if pair:
            found.append(pair)
        if "url(" in value:
            found += [s for url in _URL.findall(value) for s in self.image_features(url)]
            value = _URL.sub(" ", value)
        value = _QUOTED.sub(" ", value)
        if "(" in value:
            found += [self.functions[f] for f in _FUNCTION.findall(value) if f in self.functions]
        found += [self.units[u] for u in _UNIT.findall(value) if u in self.units]
        found += [self.keywords[w] for w in _WORD.findall(value) if w in self.keywords]
        return found

    def image_features(self, url: str) -> list[str]:
        url = url.strip().strip("'\"").lower()
        if url.startswith("data:"):
            mime = url[5:].split(";", 1)[0].split(",", 1)[0]
            ext = mime.rpartition("/")[2]
            return ["image-base64", *([self.images[ext]] if ext in self.images else [])]
        ext = url.split("?", 1)[0].split("#", 1)[0].rpartition(".")[2]
        return [self.images[ext]] if ext in self.images else []


def _media_feature(name: str) -> str:
    """"-webkit-min-device-pixel-ratio" -> "device-pixel-ratio": the feature, any variant."""
    return re.sub(r"^(?:min-|max-)", "", _VENDOR.sub("", name))


_IMPORTANT = re.compile(r"!\s*important")
_URL = re.compile(r"url\(\s*[\"']?([^\"')]*)[\"']?\s*\)", re.I)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_FUNCTION = re.compile(r"([a-z-]+)\(")
_UNIT = re.compile(r"(?<![\w#.-])[-+]?(?:\d*\.)?\d+(%|[a-z]+)")
_WORD = re.compile(r"(?<![\w-])[a-z][a-z-]*")
# One declaration: a value may hold ';' inside url(data:…;base64,…) or quotes.
_DECLARATION = re.compile(r"([-\w]+)\s*:\s*((?:[^;(\"']|\([^)]*\)|\"[^\"]*\"|'[^']*')*)")


def _declarations(block: str) -> Iterable[tuple[str, str]]:
    for match in _DECLARATION.finditer(block):
        value = match[2].strip()
        if value:
            yield match[1].lower(), value


# --- the scan ----------------------------------------------------------------------------

Scope = tuple[bool, tuple[str, ...]]  # (inside an mso conditional, features it depends on)
T = TypeVar("T")
Lazy = Union[T, Callable[[], T]]  # noqa: UP007 (a generic alias: `|` cannot take a TypeVar here)


class _Use:
    __slots__ = ("line", "col", "shown", "count", "scopes")

    def __init__(self, line: int, col: int, shown: str, scope: Scope):
        self.line, self.col, self.shown, self.count, self.scopes = line, col, shown, 1, {scope}

    def where(self) -> str:
        more = f", and {self.count - 1} more" if self.count > 1 else ""
        return f"{self.shown} (line {self.line}:{self.col}{more})"


class _Uses:
    """Each feature's first use and count, less BASICS and the allowlist."""

    def __init__(self, allowlist: Iterable[AllowEntry]):
        self.skip = set(BASICS)
        self.matches: dict[str, list[str]] = {}
        for entry in allowlist:
            if entry.match is None:
                self.skip.add(entry.feature)
            else:
                self.matches.setdefault(entry.feature, []).append(entry.match)
        self.by_slug: dict[str, _Use] = {}

    def add(self, slug: str, scope: Scope, pos: Lazy[tuple[int, int]], shown: Lazy[str], context: str) -> None:
        """Count one use; where it is and how it reads are worked out for the first use only."""
        if slug in self.skip or any(m in context for m in self.matches.get(slug, ())):
            return
        use = self.by_slug.get(slug)
        if use is None:
            line, col = pos() if callable(pos) else pos
            self.by_slug[slug] = _Use(line, col + 1, shown() if callable(shown) else shown, scope)
        else:
            use.count += 1
            use.scopes.add(scope)


_CONDITIONAL = re.compile(r"\[if\s[^\]]*\]>(.*)<!\[endif\]\s*$", re.S | re.I)
_STRUCTURE = re.compile(r"[{};]")
_BRACES = re.compile(r"[{}]")
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_AT_RULE = re.compile(r"@([-\w]+)\s*(.*)", re.S)
_MEDIA_FEATURE = re.compile(r"\(\s*([-a-z]+)\s*[:)]")
_SELECTOR_TOKEN = re.compile(r"""
    (?P<comb>\s*[>+~]\s*|\s+) | (?P<pseudo>::?[-\w]+) | (?P<id>\#[-\w]+) | (?P<cls>\.[-\w]+)
  | (?P<attr>\[[^\]]*\]) | (?P<star>\*) | (?P<tag>[a-zA-Z][-\w]*) | (?P<nest>&) | (?P<paren>\() | .
""", re.X)
_COMBINATORS = {">": "css-selector-child", "+": "css-selector-adjacent-sibling",
                "~": "css-selector-general-sibling", "": "css-selector-descendant"}
_LEGACY_PSEUDO_ELEMENTS = {":before", ":after", ":first-letter", ":first-line"}


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _shown_inline(tag: str, declaration: str) -> str:
    return f'<{tag} style="{_short(declaration, 60)}">'


def _shown_rule(selectors: str, declaration: str) -> str:
    return f"<style> {_short(selectors, 60)} {{ {_short(declaration, 60)} }}"


class _Scanner(HTMLParser):
    """One pass over the HTML (html.parser), handing each feature it meets to a _Uses."""

    def __init__(self, db: Caniemail, uses: _Uses, mso: bool = False, origin: tuple[int, int] = (1, 0)):
        super().__init__(convert_charrefs=True)
        self.db, self.uses, self.mso, self.origin = db, uses, mso, origin
        self._css: list[str] | None = None
        self._css_pos = (1, 0)

    def scan(self, html: str) -> None:
        self.feed(html)
        self.close()

    def pos(self) -> tuple[int, int]:
        line, col = self.getpos()
        return (self.origin[0] + line - 1, col + (self.origin[1] if line == 1 else 0))

    def found(self, slug: str, shown: Lazy[str], context: str, requires: tuple[str, ...] = (),
              pos: tuple[int, int] | None = None) -> None:
        if slug in self.db.features:  # a smaller or older dataset may lack it
            self.uses.add(slug, (self.mso, requires), pos or self.pos, shown, context)

    # HTML
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)
        if tag == "style":
            self._css, self._css_pos = [], self.pos()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._css is not None:
            self._css.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style" and self._css is not None:
            css, self._css = "".join(self._css), None
            _StyleSheet(self, self._css_pos).scan(css)

    def handle_comment(self, data: str) -> None:
        hidden = _CONDITIONAL.match(data)
        if hidden:  # downlevel-hidden: only Outlook's Word engine reads it
            line, col = self.pos()
            _Scanner(self.db, self.uses, mso=True, origin=(line, col + len("<!--") + hidden.start(1))).scan(hidden[1])
        else:
            self.found("html-comments", "<!-- -->", f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        if decl.lower().split() == ["doctype", "html"]:
            self.found("html-doctype", f"<!{decl}>", f"<!{decl}>")

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if ":" in tag:  # VML and Office markup (<v:image style="position:absolute">): Word's own language
            return
        db, context = self.db, self.get_starttag_text() or f"<{tag}>"
        shown = lambda: _short(context)  # noqa: E731
        for slug in db.elements.get(tag, ()):
            self.found(slug, f"<{tag}>", context)
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            for slug in db.attributes.get(name, ()):
                self.found(slug, shown, context)
            typed = db.typed.get((tag, name, value.lower()))
            if typed:
                self.found(typed, shown, context)
        if "style" in values:
            for slug, declaration in db.style_features(values["style"]):
                self.found(slug, partial(_shown_inline, tag, declaration), context)
        if tag == "a":
            href = values.get("href", "").strip().lower()
            if href.startswith("#") or "name" in values:
                self.found("html-anchor-links", shown, context)
            elif href.startswith("mailto:"):
                self.found("html-mailto-links", shown, context)
        elif tag == "html" and ("amp4email" in values or "\u26a14email" in values):
            self.found("amp", shown, context)
        elif tag == "meta" and values.get("name", "").lower() == "color-scheme":
            self.found("html-meta-color-scheme", shown, context)
        urls = [values["src"]] if tag == "img" and values.get("src") else []
        urls += [c.split()[0] for c in values.get("srcset", "").split(",") if c.split()]
        for slug in {s for url in urls for s in db.image_features(url)}:
            self.found(slug, shown, context)


class _StyleSheet:
    """The rules, at-rules and selectors of one <style> element (a small CSS tokenizer)."""

    def __init__(self, scanner: _Scanner, pos: tuple[int, int]):
        self.scanner, self.db, self.pos = scanner, scanner.db, pos

    def found(self, slug: str, shown: Lazy[str], context: str, requires: tuple[str, ...]) -> None:
        self.scanner.found(slug, shown, context, requires, self.pos)

    def scan(self, css: str) -> None:
        if "/*" in css:
            for comment in _COMMENT.findall(css):
                self.found("css-comments", "/* */ in <style>", comment, ("html-style",))
            css = _COMMENT.sub(" ", css)
        self._rules(css, ("html-style",), "")

    def _rules(self, css: str, requires: tuple[str, ...], outer: str) -> None:
        at = 0
        while (match := _STRUCTURE.search(css, at)) is not None:
            prelude, end = css[at:match.start()].strip(), match.start()
            if match[0] == "{":
                end = _block_end(css, end)
                body = css[match.end():end]
                if prelude.startswith("@"):
                    self._at_rule(prelude, body, requires, outer)
                elif prelude:
                    self._rule(prelude, body, requires, outer)
            elif match[0] == ";" and prelude.startswith("@"):
                self._at_rule(prelude, None, requires, outer)
            at = end + 1

    def _at_rule(self, prelude: str, body: str | None, requires: tuple[str, ...], outer: str) -> None:
        parsed = _AT_RULE.match(prelude)
        if not parsed:
            return
        name, condition = _VENDOR.sub("", parsed[1].lower()), parsed[2]
        context = f"{outer} {prelude}".strip()
        if body is not None:  # so an allowlist entry can tell one @media from another
            context = f"{context} {{ {body} }}"
        slug = self.db.at_rules.get(name)
        if slug:
            self.found(slug, lambda: f"<style> {_short(prelude)}", context, requires)
        if name == "media":
            for feature in _MEDIA_FEATURE.findall(condition.lower()):
                media = self.db.media_features.get(_media_feature(feature))
                if media:
                    self.found(media, lambda: f"<style> {_short(prelude)}", context, (*requires, "css-at-media"))
        if body is None:
            return
        if name in ("media", "supports", "document", "container", "layer"):
            self._rules(body, (*requires, *([slug] if slug else [])), f"{outer} {prelude}".strip())
        elif name in ("font-face", "page"):
            self._declarations(body, f"@{name}", requires, context)

    def _rule(self, selectors: str, body: str, requires: tuple[str, ...], outer: str) -> None:
        context = f"{outer} {selectors}".strip()
        for slug in self._selector_features(selectors):
            self.found(slug, lambda: f"<style> {_short(selectors)}", context, requires)
        if "{" in body:  # CSS nesting: report it, then the rules it holds
            self.found("css-nesting", lambda: f"<style> {_short(selectors)}", context, requires)
            self._rules(body, requires, context)
            body = re.sub(r"[^;{}]*\{[^{}]*\}", " ", body)
        self._declarations(body, selectors, requires, context)

    def _declarations(self, body: str, selectors: str, requires: tuple[str, ...], context: str) -> None:
        for slug, declaration in self.db.style_features(body):
            self.found(slug, partial(_shown_rule, selectors, declaration), f"{context} {{ {declaration} }}",
                       requires)

    def _selector_features(self, selectors: str) -> list[str]:
        db, found = self.db, []
        parts = [p.strip() for p in re.split(r",(?![^(]*\))", selectors) if p.strip()]
        if len(parts) > 1:
            found.append("css-selector-grouping")
        for part in parts:
            classes, depth = 0, 0
            for token in _SELECTOR_TOKEN.finditer(part):
                kind, text = token.lastgroup, token[0]
                if kind == "paren" or depth:  # skip the arguments of :not(…), :nth-child(…)
                    depth += text.count("(") - text.count(")")
                    continue
                if kind == "comb":
                    classes = 0
                    found.append(_COMBINATORS[text.strip()])
                elif kind == "pseudo":
                    name = text.lower()
                    name = ":" + name if name in _LEGACY_PSEUDO_ELEMENTS else name
                    if name in db.pseudos:
                        found.append(db.pseudos[name])
                elif kind == "cls":
                    classes += 1
                    found.append("css-selector-chaining" if classes == 2 else "css-selector-class")
                elif kind == "attr":  # [class~=x] and [id=x] count as class and ID selectors
                    name = re.split(r"[~|^$*]?=|\]", text[1:].strip(), maxsplit=1)[0].strip().lower()
                    found.append({"class": "css-selector-class", "id": "css-selector-id"}.get(
                        name, "css-selector-attribute"))
                elif kind in ("id", "star", "tag", "nest"):
                    found.append({"id": "css-selector-id", "star": "css-selector-universal",
                                  "tag": "css-selector-type", "nest": "css-nesting"}[kind])
        return list(dict.fromkeys(found))


def _block_end(css: str, start: int) -> int:
    """The index of the brace closing the block opened at `start` (or the end of the text)."""
    depth = 0
    for brace in _BRACES.finditer(css, start):
        depth += 1 if brace[0] == "{" else -1
        if depth == 0:
            return brace.start()
    return len(css)
