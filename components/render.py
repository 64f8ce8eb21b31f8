"""The build pipeline: validated issue -> Jinja2 -> MJML -> mjml-python -> premailer.

Rendered once per issue. Two outputs come from one render: the email (merge
fields left as `{{ … }}` for the sender) and the public web version (merge
fields resolved to their defaults, no unsubscribe link).

Every stand-in the render puts in the document (merge fields, image paths,
email-only and web-only regions) carries a key made for this render
(merge.Placeholders), so text in an issue can never forge or swallow one.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mjml
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
)
from markupsafe import Markup

from . import markdown, merge, plaintext
from .errors import IssueInvalid, Problem, RenderError
from .inline import inline_css
from .model import Block, Issue
from .theme import Theme, load_theme
from .validate import load_issue, published_name

# The placeholders of the render in progress, for Jinja's finalize hook (an
# environment is shared by every render of its theme, a render is not).
_ACTIVE: ContextVar[merge.Placeholders | None] = ContextVar("placeholders", default=None)


@dataclass(frozen=True)
class Footer:
    """What the sender adds to every issue; the theme gives defaults, config may override."""

    organisation: str
    postal_address: str
    reason: str


@dataclass(frozen=True)
class RenderedIssue:
    slug: str
    subject: str  # merge fields unresolved
    preheader: str
    html: str  # the email; merge fields as `{{ … }}`
    text: str  # the plain-text part; merge fields as `{{ … }}`
    web_html: str  # the public web version; no personal data
    assets: dict[str, Path]  # published name (images/x.png) -> source file
    mjml: str
    merge_fields: tuple[merge.MergeField, ...] = field(default=())

    @property
    def web_url_path(self) -> str:
        return f"/archive/{self.slug}/"


@dataclass
class Context:
    """What block templates may call, as `r`."""

    issue: Issue
    theme: Theme
    base_url: str
    placeholders: merge.Placeholders = field(default_factory=merge.Placeholders)
    # Each text block is needed as HTML and as text: parse its Markdown once.
    _parsed: dict[tuple[int, str], Any] = field(default_factory=dict)

    def _tokens(self, text: str) -> Any:
        key = (id(self.placeholders.where), text)
        if key not in self._parsed:
            self._parsed[key] = markdown.parse(self.placeholders.hide(text))
        return self._parsed[key]

    @property
    def c(self) -> Any:
        return self.theme.colors

    @property
    def numbered(self) -> bool:
        return any(b.component.numbers_sections for b in self.issue.blocks)

    @property
    def sections(self) -> list[Block]:
        return self.issue.sections

    # Both return Markup: their merge fields are hidden already, and braces that
    # Markdown decoded from entities (`&#123;`) are text, not fields to hide.
    def md(self, text: str) -> Markup:
        return Markup(markdown.to_html(self._tokens(text)))

    def md_text(self, text: str) -> Markup:
        # Hidden first, as for HTML: `{{ email }}` inside a link URL would stop
        # markdown-it from seeing the link at all.
        return Markup(markdown.to_text(self._tokens(text)))

    def asset(self, src: str) -> str:
        if src in self.issue.assets:
            return self.placeholders.marker("asset") + published_name(self.issue.source, self.issue.assets[src])
        return src

    def display_url(self, url: str) -> str:
        parts = urlsplit(url)
        return (parts.netloc.removeprefix("www.") + parts.path.rstrip("/")) or url


def _hide_merge(value: Any) -> Any:
    # Jinja calls this on every {{ }} output: merge fields in the issue's plain
    # fields become tokens before escaping, so nothing downstream can mangle
    # them. Markup is ours (Markdown output, macros) and hidden already. Outside
    # an issue render (the sign-up confirmation) nothing is a merge field.
    placeholders = _ACTIVE.get()
    if placeholders is None or not isinstance(value, str) or isinstance(value, Markup) or "{{" not in value:
        return value
    return placeholders.hide(value)


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    # Compiling the templates is most of a cold build; cache the bytecode
    # per user, as pip and pytest cache theirs. Unwritable: just compile.
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsletter" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return FileSystemBytecodeCache(str(folder))


@lru_cache(maxsize=16)
def _env(theme_name: str) -> Environment:
    """One environment per theme; HTML autoescaped, text macros opt out with {% autoescape false %}."""
    loaders: list[Any] = [PackageLoader("components", "templates")]
    theme_dir = load_theme(theme_name).templates_dir
    if theme_dir is not None:
        loaders.insert(0, FileSystemLoader(str(theme_dir)))  # a theme overrides built-ins
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=True,
        bytecode_cache=_bytecode_cache(),
        undefined=StrictUndefined,
        finalize=_hide_merge,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the package; skip a stat() per lookup
    )


def clear_template_cache() -> None:
    """Forget compiled templates and themes (the live preview calls this on a change)."""
    _env.cache_clear()
    load_theme.cache_clear()


def _macro(env: Environment, block: Block, name: str) -> Callable[..., str]:
    return getattr(env.get_template(f"blocks/{block.name}.mjml.j2").module, name)  # type: ignore[no-any-return]


def _body_mjml(blocks: tuple[Block, ...], env: Environment, r: Context) -> str:
    """Group runs of single-column blocks into one MJML section each (size: design §9)."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append('<mj-section padding="8px 0"><mj-column>\n' + "\n".join(run) + "\n</mj-column></mj-section>")
            run.clear()

    def visit(block: Block) -> None:
        r.placeholders.where = block
        fragment = str(_macro(env, block, "mjml")(block.fields, block, r)).strip()
        if block.component.layout == "section":
            flush()
            out.append(fragment)
        elif fragment:
            run.append(fragment)
        for child in block.children:
            visit(child)

    for block in blocks:
        visit(block)
    flush()
    return "\n".join(out)


def _text(blocks: tuple[Block, ...], env: Environment, r: Context) -> str:
    parts = []
    for block in (b for top in blocks for b in top.walk()):
        r.placeholders.where = block
        part = str(_macro(env, block, "text")(block.fields, block, r)).strip("\n")
        if part.strip():
            parts.append(part)
    r.placeholders.where = None
    return "\n\n".join(parts)


def _regions(html: str, keep: str, p: merge.Placeholders) -> str:
    """Keep the email-only or the web-only parts of the page, drop the others."""
    region = re.compile(f"{p.marker('(email|web)')}(.*?){p.marker('end')}\\1", re.S)
    return region.sub(lambda m: m.group(2) if m.group(1) == keep else "", html)


@contextmanager
def _rendering(p: merge.Placeholders) -> Iterator[None]:
    token = _ACTIVE.set(p)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _address_problems(issue: Issue, p: merge.Placeholders, html: str) -> list[Problem]:
    """A subscriber's data as a link's address or host: refused, at the block that wrote it."""
    found = {}
    for where, url in p.address_problems(html):
        line, path = (where.line, where.path) if isinstance(where, Block) else (1, "")
        found[(line, path, url)] = Problem(issue.shown, line, 1, path, f"{merge.ADDRESS_MESSAGE} ({url})")
    return list(found.values())


def render_issue(issue: Issue | Path | str, *, base_url: str = "http://127.0.0.1:8025",
                 footer: Footer | None = None) -> RenderedIssue:
    """Render an issue (a validated Issue or the path of an issue file)."""
    if not isinstance(issue, Issue):
        issue = load_issue(issue)
    theme = load_theme(issue.fields.theme)
    base_url = base_url.rstrip("/")
    p = merge.Placeholders()
    r = Context(issue, theme, base_url, p)
    web_url = f"{base_url}/archive/{issue.slug}/"
    page = {
        "r": r, "t": theme, "c": theme.colors, "issue": issue.fields,
        "footer": footer or Footer(theme.organisation, theme.postal_address, theme.reason),
        "web_url": web_url, "archive_url": f"{base_url}/archive/", "unsubscribe_url": "{{ unsubscribe_url }}",
        "email_only": (p.marker("email"), p.marker("end") + "email"),
        "web_only": (p.marker("web"), p.marker("end") + "web"),
    }
    env = _env(theme.name)
    with _rendering(p):
        source = env.get_template("email.mjml.j2").render(body=Markup(_body_mjml(issue.blocks, env, r)), **page)
        css = env.get_template("email.css.j2").render(**page)
        text = env.get_template("email.txt.j2").render(body=Markup(_text(issue.blocks, env, r)), **page)
    inlined = _color_scheme(inline_css(_compile(source), css), env, theme)
    problems = _address_problems(issue, p, inlined)
    if problems:
        raise IssueInvalid(problems)
    asset = p.marker("asset")
    return RenderedIssue(
        slug=issue.slug, subject=issue.fields.subject, preheader=issue.fields.preheader,
        html=p.restore(_regions(inlined, "email", p), escape=True).replace(asset, web_url),
        text=plaintext.wrap_lines(p.restore(text, escape=False)),
        web_html=p.resolve(_regions(inlined, "web", p), {}).replace(asset, ""),
        assets={published_name(issue.source, f): f for f in issue.assets.values()},
        mjml=source,
        merge_fields=p.fields(inlined + text),
    )


def _color_scheme(html: str, env: Environment, theme: Any) -> str:
    """Declare light and dark (with the theme's dark palette), or light only.

    The dark rules get a <style> of their own: a client that rejects one rule
    in a block (Gmail drops whole blocks) must not lose the responsive layout.
    """
    if theme.colors_dark is None:
        head = '<meta name="color-scheme" content="light"><meta name="supported-color-schemes" content="light">'
    else:
        css = env.get_template("dark.css.j2").render(d=theme.colors_dark)
        head = ('<meta name="color-scheme" content="light dark">'
                '<meta name="supported-color-schemes" content="light dark">'
                f'<style type="text/css">{css}</style>')
    return html.replace("</head>", head + "</head>", 1)


def _compile(source: str) -> str:
    try:
        return mjml.mjml2html(source)  # type: ignore[no-any-return]
    except Exception as exc:  # MRML raises ValueError with a byte offset: a component bug
        raise RenderError(f"MJML could not compile the issue: {exc}") from exc
