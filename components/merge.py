"""Merge fields: `{{ first_name | default("friend") }}` and friends.

Merge fields are resolved per recipient at send time, never at build time.
While an issue is rendered, every merge expression is swapped for an opaque
alphanumeric token, because Markdown, MJML, lxml and premailer each rewrite
braces, quotes and spaces (lxml URL-escapes `{{ x }}` inside href). After the
last step the tokens are swapped back: into the canonical expression for the
email, into the default value for the public web version.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Fields every subscriber has, plus the per-message ones the mailer fills.
SUBSCRIBER_FIELDS = ("first_name", "last_name", "name", "email")
SYSTEM_FIELDS = ("unsubscribe_url", "web_url")
KNOWN_FIELDS = SUBSCRIBER_FIELDS + SYSTEM_FIELDS

EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_SHAPE = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)?)\s*
        (?:\|\s*default\s*\(\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*\)\s*)?$""",
    re.X,
)
# Letters and digits only: survives Markdown, HTML escaping and URL quoting.
TOKEN_RE = re.compile(r"zqmf([a-z2-7]+)fmqz")


class MergeSyntaxError(ValueError):
    """A `{{ … }}` that is not a merge field we understand."""


@dataclass(frozen=True)
class MergeField:
    name: str  # "first_name", "email", "fields.team"
    default: str | None = None

    @property
    def known(self) -> bool:
        return self.name in KNOWN_FIELDS or self.name.startswith("fields.")

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


def token(field: MergeField) -> str:
    """The opaque stand-in for a merge field: stateless, so any render can undo it."""
    return "zqmf" + base64.b32encode(field.source().encode()).decode().rstrip("=").lower() + "fmqz"


def _field_of(match: re.Match[str]) -> MergeField:
    encoded = match.group(1).upper()
    encoded += "=" * (-len(encoded) % 8)
    return parse_field(EXPRESSION.match(base64.b32decode(encoded).decode()).group(1))  # type: ignore[union-attr]


def hide(text: str) -> str:
    """Replace every `{{ … }}` in `text` by its token."""
    return EXPRESSION.sub(lambda m: token(parse_field(m.group(1))), text)


def tokens_in(text: str) -> tuple[MergeField, ...]:
    """The distinct merge fields hidden in a rendered text, in order of appearance."""
    return tuple(dict.fromkeys(_field_of(m) for m in TOKEN_RE.finditer(text)))


def restore(text: str, *, escape: bool) -> str:
    """Tokens back to canonical `{{ … }}` expressions (the built email and text).

    In HTML the expression is escaped like any text (`default(&quot;x&quot;)`),
    so it is safe inside an attribute as well; `substitute` unescapes it.
    """
    def source(m: re.Match[str]) -> str:
        out = _field_of(m).source()
        return html.escape(out, quote=True) if escape else out
    return TOKEN_RE.sub(source, text)


def resolve(text: str, values: Mapping[str, object], *, escape: bool) -> str:
    """Tokens to values (the web version resolves them with no personal data)."""
    def value(m: re.Match[str]) -> str:
        out = _field_of(m).resolve(values)
        return html.escape(out) if escape else out
    return TOKEN_RE.sub(value, text)


Segment = str | MergeField


def compile_template(template: str, *, escape: bool) -> tuple[Segment, ...]:
    """Split a built template into literal text and merge fields, once per send.

    Filling it is then a join, the cheap per-recipient step (see `fill`).
    `escape` says the template is HTML, where expressions are stored escaped.
    """
    out: list[Segment] = []
    last = 0
    for m in EXPRESSION.finditer(template):
        out.append(template[last:m.start()])
        out.append(parse_field(html.unescape(m.group(1)) if escape else m.group(1)))
        last = m.end()
    out.append(template[last:])
    return tuple(out)


def fill(segments: tuple[Segment, ...], values: Mapping[str, object], *, escape: bool) -> list[str]:
    """The pieces of one recipient's text: literals as they are, fields resolved."""
    if escape:
        return [s if isinstance(s, str) else html.escape(s.resolve(values)) for s in segments]
    return [s if isinstance(s, str) else s.resolve(values) for s in segments]


def substitute(template: str, values: Mapping[str, object], *, escape: bool) -> str:
    """Resolve every merge expression in a built template for one recipient.

    This is the cheap per-recipient step: a regex pass, no Jinja or MJML.
    """
    def value(m: re.Match[str]) -> str:
        out = parse_field(html.unescape(m.group(1)) if escape else m.group(1)).resolve(values)
        return html.escape(out) if escape else out
    return EXPRESSION.sub(value, template)
