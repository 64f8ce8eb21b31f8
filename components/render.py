"""The build pipeline: validated issue -> Jinja2 -> MJML -> mjml-python -> premailer.

Rendered once per issue. Two outputs come from one render: the email (merge
fields left as `{{ … }}` for the sender) and the public web version (merge
fields resolved to their defaults, no unsubscribe link).

Every stand-in the render puts in the document (merge fields, image paths,
email-only and web-only regions) carries a key made for this render
(merge.Placeholders), so text in an issue can never forge or swallow one.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
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
from .registry import components
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
    # Files the templates add to the issue's own images (social icons, a video's
    # thumbnail with its play mark): published name -> file, published alike.
    shipped: dict[str, Path] = field(default_factory=dict)

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

    def icon(self, name: str) -> str:
        """A picture shipped with the project (components/themes/icons/<name>.png), published with the issue."""
        published = f"icons/{name}.png"
        if published not in self.shipped:
            self.shipped[published] = icon_file(self.theme, name)
        return self.placeholders.marker("asset") + published

    def derived(self, src: str, tag: str, draw: Callable[[Path, Path], None]) -> str:
        """An image drawn from the issue's own image `src` (a play mark, a crop), published beside it.

        `draw(source, target)` writes it; it is cached on disk by the source's
        content and `tag`, so a rebuild redraws nothing. A remote `src` is used as it is.
        """
        if src not in self.issue.assets:
            return src
        source = self.issue.assets[src]
        stem, dot, suffix = published_name(self.issue.source, source).rpartition(".")
        published = f"{stem}-{tag}{dot}{suffix}"
        if published not in self.shipped:
            self.shipped[published] = derived_file(source, tag, draw)
        return self.placeholders.marker("asset") + published

    def heading_level(self, block: Block) -> int:
        """<h2> for a block at the top of the issue, <h3> inside a section: levels never skip."""
        return 2 if any(top is block for top in self.issue.blocks) else 3

    def display_host(self, url: str) -> str:
        return urlsplit(url).netloc.removeprefix("www.") or url

    def display_url(self, url: str) -> str:
        parts = urlsplit(url)
        return (parts.netloc.removeprefix("www.") + parts.path.rstrip("/")) or url


# After the preheader: invisible characters (combining grapheme joiner, zero-width
# non-joiner, no-break space) that inboxes show as nothing, so the preview ends
# with the preheader instead of running on into the email's first words.
PREHEADER_PADDING = Markup("&#847;&zwnj;&nbsp;" * 60)

ICONS_DIR = Path(__file__).parent / "themes" / "icons"


def icon_file(theme: Theme, name: str) -> Path:
    """A theme's own icons/<name>.png if it has one, else the project's."""
    own = theme.templates_dir / "icons" / f"{name}.png" if theme.templates_dir else None
    return own if own is not None and own.is_file() else ICONS_DIR / f"{name}.png"


def derived_file(source: Path, tag: str, draw: Callable[[Path, Path], None]) -> Path:
    """The cached result of `draw(source, target)`, keyed by the source's bytes and `tag`."""
    digest = hashlib.sha256(source.read_bytes() + b"\0" + tag.encode()).hexdigest()[:24]
    folder = _cache_folder("derived") or Path(tempfile.mkdtemp(prefix="newsletter-derived-"))
    target = folder / f"{digest}{source.suffix.lower()}"
    if not target.is_file():
        partial = folder / f".{digest}.{os.getpid()}{source.suffix.lower()}"
        draw(source, partial)
        partial.replace(target)  # atomic: a build running beside this one sees all of it or none
    return target


def _cache_folder(name: str) -> Path | None:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsletter" / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


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
    folder = _cache_folder("jinja")
    return FileSystemBytecodeCache(str(folder)) if folder is not None else None


def _escapes(name: str | None) -> bool:
    return not (name or "").endswith(".css.j2")


@lru_cache(maxsize=16)
def _env(theme_name: str) -> Environment:
    """One environment per theme.

    HTML is autoescaped (text and CSS macros opt out with {% autoescape false %});
    the stylesheets are not HTML: escaping turned `'Times New Roman'` into
    `&#39;Times New Roman&#39;`, and the inliner dropped the whole declaration.
    """
    loaders: list[Any] = [PackageLoader("components", "templates")]
    theme_dir = load_theme(theme_name).templates_dir
    if theme_dir is not None:
        loaders.insert(0, FileSystemLoader(str(theme_dir)))  # a theme overrides built-ins
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=_escapes,
        bytecode_cache=_bytecode_cache(),
        undefined=StrictUndefined,
        finalize=_hide_merge,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the package; skip a stat() per lookup
    )
    env.filters["font"] = font_attribute
    return env


def font_attribute(family: str) -> Markup:
    """A theme's font list for an MJML attribute, as written: MJML does not decode `&#39;`
    (`Georgia, &#39;Times New Roman&#39;` became `Georgia, &#39`), so quotes stay quotes,
    single ones inside the attribute's double; nothing that could end the attribute or tag."""
    return Markup(re.sub(r'[<>&;{}\\]', "", family.replace('"', "'")))


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
        "preheader_padding": PREHEADER_PADDING,
    }
    env = _env(theme.name)
    styles = Styles(env, styled_components(issue), r)
    with _rendering(p):
        body = Markup(_body_mjml(issue.blocks, env, r))
        source = env.get_template("email.mjml.j2").render(body=body, phone_css=styles.phone(), **page)
        css = env.get_template("email.css.j2").render(blocks_css=styles.inline(), **page)
        text = env.get_template("email.txt.j2").render(body=Markup(_text(issue.blocks, env, r)), **page)
    inlined = _color_scheme(inline_css(_compile(source), css), env, theme, styles)
    problems = _address_problems(issue, p, inlined)
    if problems:
        raise IssueInvalid(problems)
    asset = p.marker("asset")
    return RenderedIssue(
        slug=issue.slug, subject=issue.fields.subject, preheader=issue.fields.preheader,
        html=p.restore(_regions(inlined, "email", p), escape=True).replace(asset, web_url),
        text=plaintext.wrap_lines(p.restore(text, escape=False)),
        web_html=p.resolve(_regions(inlined, "web", p), {}).replace(asset, ""),
        assets={**{published_name(issue.source, f): f for f in issue.assets.values()}, **r.shipped},
        mjml=source,
        merge_fields=p.fields(inlined + text),
    )


def _color_scheme(html: str, env: Environment, theme: Any, styles: Styles) -> str:
    """Declare light and dark (with the theme's dark palette), or light only.

    The dark rules get a <style> of their own: a client that rejects one rule
    in a block (Gmail drops whole blocks) must not lose the responsive layout.
    """
    if theme.colors_dark is None:
        head = '<meta name="color-scheme" content="light"><meta name="supported-color-schemes" content="light">'
    else:
        d = theme.colors_dark
        css = env.get_template("dark.css.j2").render(d=d, blocks_dark=lambda fg, bg: styles.dark(d, fg, bg))
        head = ('<meta name="color-scheme" content="light dark">'
                '<meta name="supported-color-schemes" content="light dark">'
                f'<style type="text/css">{css}</style>')
    return html.replace("</head>", head + "</head>", 1)


def styled_components(issue: Issue) -> list[str]:
    """The components whose CSS the issue needs: those it uses, and those their templates borrow from."""
    known = components()
    wanted: set[str] = set()
    todo = [b.name for b in issue.walk()]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(known[name].css_from)
    return [name for name in known if name in wanted]  # registry order: the same CSS for the same blocks


@dataclass
class Styles:
    """Each component's CSS lives in its own template, as macros beside `mjml` and `text`:

    - `css(r)`: rules premailer inlines into the email,
    - `phone(r)`: rules inside the phone-width @media query (not inlinable),
    - `dark(d, fg, bg)`: dark-mode rules, written twice by dark.css.j2 (`fg`/`bg`
      are the Outlook apps' [data-ogsc]/[data-ogsb] prefixes, or empty).

    Only the components an issue uses add theirs, so a short issue carries
    a short stylesheet.
    """

    env: Environment
    names: list[str]
    r: Context

    def _join(self, macro: str, *args: Any) -> Markup:
        out = []
        for name in self.names:
            found = getattr(self.env.get_template(f"blocks/{name}.mjml.j2").module, macro, None)
            if found is not None:
                rules = str(found(*args)).strip()
                if rules:
                    out.append(rules)
        return Markup("\n".join(out))

    def inline(self) -> Markup:
        return self._join("css", self.r)

    def phone(self) -> Markup:
        return self._join("phone", self.r)

    def dark(self, d: Any, fg: str, bg: str) -> Markup:
        return self._join("dark", d, fg, bg)


def _compile(source: str) -> str:
    try:
        return mjml.mjml2html(source)  # type: ignore[no-any-return]
    except Exception as exc:  # MRML raises ValueError with a byte offset: a component bug
        raise RenderError(f"MJML could not compile the issue: {exc}") from exc
