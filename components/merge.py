"""Merge fields: `{{ first_name | default("friend") }}` and friends.

Merge fields are resolved per recipient at send time, never at build time.
While an issue is rendered, every merge expression is swapped for an opaque
alphanumeric token, because Markdown, MJML, lxml and premailer each rewrite
braces, quotes and spaces (lxml URL-escapes `{{ x }}` inside href). After the
last step the tokens are swapped back: into the canonical expression for the
email, into the default value for the public web version.

The tokens carry a random key made for each render (`Placeholders`), so no
text in an issue file can forge one: whatever an author writes, even the
strings an older renderer used, comes out as that text. Braces that reach the
end of a render without being a merge field (an author's `&#123;&#123;`, which
Markdown decodes to `{{`) are literal text, and are escaped in the built email
so the mailer never reads them as a field.

Merge values are data. The built email is split once per send
(`compile_template`) into literal text and `Slot`s, each knowing how its value
is written where it stands: HTML-escaped in HTML, as it is in plain text, and
percent-encoded inside a URL, so a value never changes a link's scheme, host
or structure. A field that would be a link's whole address or its host is
refused at build time (`Placeholders.address_problems`).
"""
from __future__ import annotations

import bisect
import html
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .errors import ComponentError

# Fields every subscriber has, plus the per-message ones the mailer fills.
SUBSCRIBER_FIELDS = ("first_name", "last_name", "name", "email")
SYSTEM_FIELDS = ("unsubscribe_url", "web_url")  # URLs we make: they may be a whole link target
KNOWN_FIELDS = SUBSCRIBER_FIELDS + SYSTEM_FIELDS

EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_SHAPE = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)?)\s*
        (?:\|\s*default\s*\(\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*\)\s*)?$""",
    re.X,
)
# What any render's token looks like (letters and digits only: they survive
# Markdown, HTML escaping and URL quoting). No file can predict one.
TOKEN_RE = re.compile(r"zq[0-9a-f]{16}m(\d+)qz")

# A literal `{` in a built plain-text template (the text part), where a
# brace pair would otherwise read as a merge field. Only the renderer writes
# it; an issue file cannot (it is not a merge field there). No spaces, so
# line wrapping never splits it.
LITERAL_BRACE = '{{"{"}}'
_LITERAL = re.compile(r"""^\s*(?:"\{"|'\{')\s*$""")

ADDRESS_MESSAGE = "a merge field cannot be a link's address or host; put it in the path or query"


class MergeSyntaxError(ComponentError, ValueError):
    """A `{{ … }}` that is not a merge field we understand."""


@dataclass(frozen=True)
class MergeField:
    name: str  # "first_name", "email", "fields.team"
    default: str | None = None

    @property
    def known(self) -> bool:
        return self.name in KNOWN_FIELDS or self.name.startswith("fields.")

    @property
    def system(self) -> bool:
        return self.name in SYSTEM_FIELDS

    def source(self) -> str:
        """The canonical spelling written into the built email."""
        if self.default is None:
            return "{{ %s }}" % self.name
        quoted = '"%s"' % self.default if '"' not in self.default else "'%s'" % self.default
        return "{{ %s | default(%s) }}" % (self.name, quoted)

    def resolve(self, values: Mapping[str, object]) -> str:
        """Value for one recipient; a missing or empty value takes the default."""
        if self.name.startswith("fields."):
            fields = values.get("fields") or {}
            value = fields.get(self.name[7:]) if isinstance(fields, Mapping) else None
        else:
            value = values.get(self.name)
        if value is None or value == "":
            return self.default or ""
        return str(value)


def parse_field(expression: str) -> MergeField:
    match = _SHAPE.match(expression)
    if not match:
        raise MergeSyntaxError(
            "{{%s}} is not a merge field; write e.g. {{ first_name | default(\"friend\") }}" % expression
        )
    default = match.group("dq") if match.group("dq") is not None else match.group("sq")
    return MergeField(match.group("name"), default)


def fields_in(text: str) -> list[MergeField]:
    """Every merge field in a string; raises MergeSyntaxError on a malformed one."""
    return [parse_field(m.group(1)) for m in EXPRESSION.finditer(text)]


# --- where a value stands: text, or inside a URL --------------------------------------------------------

TEXT, URL, ADDRESS = "text", "url", "address"

# A start tag and its attributes. Text never holds a bare `<` (Markdown, nh3,
# Jinja and lxml all write `&lt;`), so whatever this finds is markup, also
# inside Outlook's conditional comments (VML), which are scanned as text.
_TAG = re.compile(r"""<[A-Za-z][\w:.-]*((?:\s+[^\s"'=<>/`]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)\s*/?>""")
_ATTR = re.compile(r"""([^\s"'=<>/`]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_URL_ATTRS = frozenset({"href", "src", "background", "action", "formaction", "poster", "cite", "xlink:href"})
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style>", re.I | re.S)
_CSS_URL = re.compile(r"""url\(\s*(?:&quot;|&\#39;|&\#x27;|["'])?""", re.I)
_CSS_URL_END = re.compile(r"""["')\s]|&quot;|&\#39;|&\#x27;""", re.I)
# In plain text a URL is a run that starts with its scheme.
_TEXT_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"]*", re.I)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_IGNORED = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL
_LEADING = re.compile(r"^[\x00-\x20]+")  # and these before it


def _url_spans(shape: str, *, html_: bool) -> list[tuple[int, int]]:
    """Where the URLs of a document are, as (start, end) offsets."""
    if not html_:
        return [m.span() for m in _TEXT_URL.finditer(shape)]
    spans: list[tuple[int, int]] = []
    for tag in _TAG.finditer(shape):
        for attr in _ATTR.finditer(shape, *tag.span(1)):
            value = next((i for i in (2, 3, 4) if attr.group(i) is not None), None)
            name = attr.group(1).lower()
            if value is not None and name in _URL_ATTRS:
                spans.append(attr.span(value))
            elif value is not None and name == "style":
                spans += _css_urls(shape, *attr.span(value))
    for style in _STYLE_ELEMENT.finditer(shape):
        spans += _css_urls(shape, *style.span(1))
    return sorted(spans)


def _css_urls(shape: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    for m in _CSS_URL.finditer(shape, start, end):
        close = _CSS_URL_END.search(shape, m.end(), end)
        spans.append((m.end(), close.start() if close else end))
    return spans


def _address_done(prefix: str) -> bool:
    """Whether a URL's text before a value already holds its whole address (scheme, host; a
    mailto's recipients), so the value can only land in the path, query or fragment."""
    prefix = _LEADING.sub("", _IGNORED.sub("", prefix)).replace("\\", "/")
    scheme = _SCHEME.match(prefix)
    at = scheme.end() if scheme else 0
    if prefix.startswith("//", at):
        ends = "/?#"
        at += 2
    else:
        ends = "?#" if scheme else "/?#"  # mailto:who?subject=…; a relative path/…
    return any(c in ends for c in prefix[at:])


Span = tuple[int, int]


def _contexts(shape: str, starts: list[int], *, html_: bool) -> list[tuple[str, Span]]:
    """For each placeholder starting at an offset: TEXT, URL or ADDRESS, and its URL's span."""
    spans = _url_spans(shape, html_=html_)
    out: list[tuple[str, Span]] = []
    for start in starts:
        i = bisect.bisect_right(spans, (start, len(shape) + 1)) - 1
        if i < 0 or not spans[i][0] <= start < spans[i][1]:
            out.append((TEXT, (0, 0)))
            continue
        prefix = shape[spans[i][0]:start]
        done = _address_done(html.unescape(prefix) if html_ else prefix)
        out.append((URL if done else ADDRESS, spans[i]))
    return out


def address_problem(url: str) -> str | None:
    """ADDRESS_MESSAGE when a subscriber's merge field in a URL as written in an issue file would be
    its whole address, scheme or host (for a URL field's validator); None when every field is in
    the path, query or fragment, or when there is none."""
    for m in EXPRESSION.finditer(url):
        try:
            field = parse_field(m.group(1))
        except MergeSyntaxError:
            continue  # reported as a malformed field
        if not field.system and not _address_done(EXPRESSION.sub("x", url[:m.start()])):
            return ADDRESS_MESSAGE
    return None


def _url_value(value: str) -> str:
    # Nothing but unreserved characters and %XX: no scheme, host, path or
    # query structure, and nothing HTML needs escaped in an attribute.
    return quote(value, safe="")


def _encoder(field: MergeField, context: str, *, html_: bool) -> Callable[[str], str]:
    if context == TEXT or (context == ADDRESS and field.system):
        return html.escape if html_ else str
    # ADDRESS is refused when the issue is built; a template that got here
    # anyway still cannot take a scheme or markup from a value.
    return _url_value


# --- the renderer's placeholders ------------------------------------------------------------------------


class Placeholders:
    """One render's stand-ins for merge fields, each remembering where in the issue it was made."""

    def __init__(self) -> None:
        self.key = secrets.token_hex(8)
        self.where: Any = None  # set by the renderer to the block being rendered
        self._made: list[tuple[MergeField, Any]] = []
        self._token = re.compile(f"zq{self.key}m(\\d+)qz")
        # A literal `{` before another or before a field would make a brace pair in the built email.
        self._brace = re.compile(f"\\{{(?=\\{{|zq{self.key}m)")

    def marker(self, name: str) -> str:
        """Another stand-in of this render (letters and digits), for the renderer's own use."""
        return f"zq{self.key}{name}qz"

    def hide(self, text: str) -> str:
        """Replace every `{{ … }}` in `text` by a token of this render."""
        def token(m: re.Match[str]) -> str:
            self._made.append((parse_field(m.group(1)), self.where))
            return f"zq{self.key}m{len(self._made) - 1}qz"
        return EXPRESSION.sub(token, text)

    def _field(self, m: re.Match[str]) -> MergeField:
        return self._made[int(m.group(1))][0]

    def fields(self, text: str) -> tuple[MergeField, ...]:
        """The distinct merge fields hidden in a rendered text, in order of appearance."""
        return tuple(dict.fromkeys(self._field(m) for m in self._token.finditer(text)))

    def restore(self, text: str, *, escape: bool) -> str:
        """Tokens back to canonical `{{ … }}` expressions (the built email and text part).

        In HTML the expression is escaped like any text (`default(&quot;x&quot;)`), so it is
        safe inside an attribute as well; `compile_template` unescapes it. Literal braces
        that would pair up are escaped: `&#123;` in HTML, LITERAL_BRACE in text.
        """
        text = self._brace.sub("&#123;" if escape else LITERAL_BRACE, text)

        def source(m: re.Match[str]) -> str:
            out = self._field(m).source()
            return html.escape(out, quote=True) if escape else out
        return self._token.sub(source, text)

    def resolve(self, page: str, values: Mapping[str, object]) -> str:
        """Tokens to values in an HTML page (the web version: no personal data, so defaults)."""
        matches = list(self._token.finditer(page))
        contexts = _contexts(page, [m.start() for m in matches], html_=True)
        out, last = [], 0
        for m, (context, _) in zip(matches, contexts, strict=True):
            field = self._field(m)
            out += [page[last:m.start()], _encoder(field, context, html_=True)(field.resolve(values))]
            last = m.end()
        out.append(page[last:])
        return "".join(out)

    def address_problems(self, page: str) -> Iterator[tuple[Any, str]]:
        """(where, the link as written) for each subscriber field that is a link's address or host."""
        matches = list(self._token.finditer(page))
        contexts = _contexts(page, [m.start() for m in matches], html_=True)
        for m, (context, (start, end)) in zip(matches, contexts, strict=True):
            field, where = self._made[int(m.group(1))]
            if context == ADDRESS and not field.system:
                yield where, html.unescape(self.restore(page[start:end], escape=False))


# --- the per-recipient step -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """A merge field in a built template, with how its value is written where it stands."""

    field: MergeField
    encode: Callable[[str], str]

    def value(self, values: Mapping[str, object]) -> str:
        return self.encode(self.field.resolve(values))


Segment = str | Slot


def compile_template(template: str, *, escape: bool) -> tuple[Segment, ...]:
    """Split a built template into literal text and slots, once per send.

    Filling it is then a join, the cheap per-recipient step (see `fill`): each
    slot already knows whether its value is HTML-escaped, left as it is or
    percent-encoded (inside a URL). `escape` says the template is HTML, where
    expressions are stored escaped.
    """
    matches = list(EXPRESSION.finditer(template))
    if not matches:
        return (template,)
    # Expressions hold spaces and quotes: judge the document with same-length letters in their place.
    shape: list[str] = []
    pieces: list[Segment] = []
    last = 0
    for m in matches:
        shape += [template[last:m.start()], "x" * (m.end() - m.start())]
        last = m.end()
    shape.append(template[last:])
    contexts = _contexts("".join(shape), [m.start() for m in matches], html_=escape)
    last = 0
    for m, (context, _) in zip(matches, contexts, strict=True):
        pieces.append(template[last:m.start()])
        inner = html.unescape(m.group(1)) if escape else m.group(1)
        if _LITERAL.match(inner):
            pieces.append("{")
        else:
            field = parse_field(inner)
            pieces.append(Slot(field, _encoder(field, context, html_=escape)))
        last = m.end()
    pieces.append(template[last:])
    return _joined(pieces)


def _joined(pieces: list[Segment]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for piece in pieces:
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        else:
            out.append(piece)
    return tuple(out)


def fill(segments: tuple[Segment, ...], values: Mapping[str, object]) -> list[str]:
    """The pieces of one recipient's text: literals as they are, slots filled."""
    return [s if s.__class__ is str else s.value(values) for s in segments]  # type: ignore[union-attr]


def substitute(template: str, values: Mapping[str, object], *, escape: bool) -> str:
    """Resolve every merge expression in a built template for one recipient (previews, tests)."""
    return "".join(fill(compile_template(template, escape=escape), values))
