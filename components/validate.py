"""Whole-file validation: every problem is found and reported at once.

Each problem names `file:line:col` and a path such as
`blocks[3].section.blocks[1].image`, so an author can go straight to it;
a hint says how to fix it where the message alone would not (a colon in a
plain value, a misspelt block, a date). Merge fields that do not parse and
links without a scheme email can use are found here, inside Markdown too,
so that `check`, `build` and `preview` refuse them alike, at their line.

`read_issue` also keeps what did validate of a file with problems (a
`Reading`), so that `check` can lint that part in the same run instead of
reporting problems one fix at a time.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ValidationError

from .errors import ComponentError, IssueInvalid, Problem
from .fields import Image, is_remote
from .images import FORMATS, inspect
from .merge import EXPRESSION, KNOWN_FIELDS, MergeSyntaxError, parse_field
from .model import Block, Issue, IssueFields
from .registry import Component, components
from .source import DATE_HINT, Located, PathKey, read_source, shown_path
from .theme import theme_names

Place = tuple[int, int]


@dataclass(frozen=True)
class Reading:
    """An issue file as far as it could be read: its problems, and the part of it that validated.

    With no problems, `issue` is the whole issue. With problems, it is what
    validated (blocks with problems of their own left out, top-level fields
    in error at their defaults), for the checks that can judge a part; or
    None when nothing usable was read (a YAML syntax error, no blocks).
    """

    issue: Issue | None
    problems: list[Problem]
    left_out: frozenset[str] = frozenset()  # "blocks" and the top-level keys `issue` lacks
    places: dict[str, Place] = field(default_factory=dict)  # shown path -> where its key is

    @property
    def complete(self) -> bool:
        return not self.problems


def load_issue(path: Path | str) -> Issue:
    """Read and validate an issue file; raise IssueInvalid listing every problem."""
    reading = read_issue(path)
    if reading.problems or reading.issue is None:
        raise IssueInvalid(reading.problems)
    return reading.issue


def read_issue(path: Path | str) -> Reading:
    """Read and validate an issue file; every problem is returned, none raised."""
    path = Path(path)
    shown = str(path)
    located = read_source(path, shown)
    if not located.complete:
        return Reading(None, located.problems)
    found: list[Problem] = []
    state = _validate(located, path, found)
    # What the reader refused (an alias, a bad value) was read as null: the
    # validator's complaint at that same place would only repeat it.
    taken = {(p.line, p.col) for p in located.problems}
    problems = located.problems + [p for p in found if (p.line, p.col) not in taken and p.path not in located.unread]
    if not problems and state.issue is None:
        problems = [Problem(shown, 1, 1, "", "invalid issue")]
    left_out = state.left_out | ({"blocks"} if state.issue is None or state.dropped else set())
    problems.sort(key=lambda p: (p.line, p.col))
    return Reading(state.issue, problems, frozenset(left_out), state.places)


@dataclass
class _State:
    issue: Issue | None = None
    left_out: set[str] = field(default_factory=set)
    dropped: bool = False
    places: dict[str, Place] = field(default_factory=dict)


def _validate(loc: Located, path: Path, problems: list[Problem]) -> _State:
    state = _State()
    if loc.data is None:
        problems.append(Problem(loc.file, 1, 1, "", "the file is empty; an issue needs a subject and blocks"))
        return state
    if not isinstance(loc.data, dict):
        problems.append(loc.problem((), "", "the top level must be a mapping with subject and blocks"))
        return state
    state.places = {str(k): loc.key_where((str(k),)) for k in loc.data}
    problems += _control_characters(loc.data, (), loc)
    meta = _model(IssueFields, loc.data, (), "", loc, problems, coerced=False)
    if meta is None:
        meta, state.left_out = _fallback_meta(loc.data)
    if meta is not None and meta.theme not in theme_names():
        problems.append(loc.problem(("theme",), "theme", f"unknown theme {meta.theme!r} (known: "
                                    f"{', '.join(theme_names())})", hint=_did_you_mean(meta.theme, theme_names())))
        meta, state.left_out = meta.model_copy(update={"theme": "default"}), state.left_out | {"theme"}
    for key in ("subject", "preheader"):
        if isinstance(loc.data.get(key), str):
            problems += _text_problems(loc.data[key], (key,), key, loc, markdown=False)
    raw_blocks = loc.data.get("blocks")
    if not isinstance(raw_blocks, list):
        return state
    walker = _Walker(loc, path, problems)
    blocks = walker.blocks(raw_blocks, ("blocks",), "blocks", depth=0)
    state.places.update(walker.places)
    state.dropped = walker.dropped
    if meta is not None and blocks:
        state.issue = Issue(path.stem, path, loc.file, meta, tuple(blocks), walker.assets)
    return state


def _fallback_meta(data: dict[Any, Any]) -> tuple[IssueFields | None, set[str]]:
    """The top-level fields without those in error (at their defaults), for checking the rest."""
    try:
        return IssueFields.model_validate(data), set()
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    kept = {k: v for k, v in data.items() if k not in bad}
    kept.setdefault("subject", "(no subject)")
    kept.setdefault("blocks", [None])
    try:
        return IssueFields.model_validate(kept), bad
    except ValidationError:
        return None, bad


class _Walker:
    """Validates the block tree, numbering sections and collecting images."""

    def __init__(self, loc: Located, path: Path, problems: list[Problem]):
        self.loc, self.path, self.problems = loc, path, problems
        self.known = components()
        self.assets: dict[str, Path] = {}
        self.sections = 0
        self.places: dict[str, Place] = {}
        self.dropped = False  # a block with problems of its own was left out

    def blocks(self, items: list[Any], key: PathKey, shown: str, depth: int) -> list[Block]:
        out = []
        for i, item in enumerate(items):
            block = self.block(item, (*key, i), f"{shown}[{i}]", depth)
            if block is not None:
                out.append(block)
        return out

    def block(self, item: Any, key: PathKey, shown: str, depth: int) -> Block | None:
        self.places[shown] = self.loc.where(key)
        if not isinstance(item, dict) or len(item) != 1:
            self.problems.append(self.loc.problem(
                key, shown, "a block is a mapping with one key naming its component, e.g. `- text: Hello`"))
            self.dropped = True
            return None
        (name, value), = item.items()
        if name not in self.known:
            self.problems.append(self.loc.problem(
                (*key, str(name)), shown,
                f"unknown block type {name!r} (known: {', '.join(self.known)})", at_key=True,
                hint=_did_you_mean(str(name), list(self.known))))
            self.dropped = True
            return None
        component = self.known[name]
        here = (*key, name)
        shown = f"{shown}.{name}"
        self.places[shown] = self.loc.key_where(here)
        data = component.coerce(value)
        fields = _model(component.fields, data, here, shown, self.loc, self.problems,
                        coerced=data is not value)
        children: list[Block] = []
        nested_section = bool(component.children_field) and depth > 0
        if component.children_field and isinstance(data, dict):
            if nested_section:
                self.problems.append(self.loc.problem(here, shown, "sections cannot be nested", at_key=True))
            nested = data.get(component.children_field)
            if isinstance(nested, list):
                children = self.blocks(nested, (*here, component.children_field),
                                       f"{shown}.{component.children_field}", depth + 1)
        if fields is None:
            self.dropped = True
            return None
        text_problems = self._check_strings(value, here, shown, component)
        self._check_images(fields, here, shown)
        if nested_section or any(p.rule == "merge-field" for p in text_problems):  # the renderer cannot take it
            self.dropped = True
            return None
        number = None
        if component.children_field and depth == 0:
            self.sections += 1
            number = self.sections
        line = self.loc.key_where(here)[0]
        return Block(component, fields, shown, self.loc.file, line, tuple(children), number)

    def _check_strings(self, value: Any, here: PathKey, shown: str, component: Component) -> list[Problem]:
        """Merge fields in every string of the block as written, and links in its Markdown fields."""
        found = []
        prose = markdown_fields(component)
        for key, name, text in _strings(value, here, component.main_field, component.children_field):
            found += _text_problems(text, key, shown, self.loc, markdown=name in prose)
        self.problems += found
        return found

    def _check_images(self, fields: BaseModel, here: PathKey, shown: str) -> None:
        for image, sub in _images(fields, ()):
            if is_remote(image.src) or image.src in self.assets:
                continue
            found = resolve_asset(self.path, image.src)
            if isinstance(found, Path):
                checked = inspect(found, image.src)
                found = found if not isinstance(checked, str) else checked
            if isinstance(found, Path):
                self.assets[image.src] = found
            else:
                where = ".".join([shown, *sub]) if sub else shown
                self.problems.append(self.loc.problem(here, where, found, at_key=True))


def _images(value: Any, sub: tuple[str, ...]) -> list[tuple[Image, tuple[str, ...]]]:
    if isinstance(value, Image):
        return [(value, sub)]
    if isinstance(value, BaseModel):
        return [pair for k in type(value).model_fields for pair in _images(getattr(value, k), (*sub, k))]
    if isinstance(value, (list, tuple)):
        found = []
        for i, item in enumerate(value):
            found += _images(item, (*sub[:-1], f"{sub[-1]}[{i}]") if sub else (f"[{i}]",))
        return found
    return []


def resolve_asset(issue_path: Path, src: str) -> Path | str:
    """The file a relative image path names, or a message saying why not.

    Looked up in the issue's own folder (issues/<slug>/) first, then beside
    the issue file; it may never point outside the issues folder.
    """
    base = issue_path.parent.resolve()
    for folder in (base / issue_path.stem, base):
        candidate = (folder / src).resolve()
        if not candidate.is_relative_to(base):
            return f"image {src!r} points outside the issue's folder"
        if candidate.is_file():
            if candidate.suffix.lower() not in IMAGE_TYPES:
                return f"{src!r} is not an image email clients show (use {', '.join(IMAGE_TYPES)})"
            return candidate
    return f"image file not found: {src} (looked in {issue_path.parent / issue_path.stem} and {issue_path.parent})"


def published_name(issue_path: Path, file: Path) -> str:
    """Where an image is published, relative to the issue's web folder."""
    base = issue_path.parent.resolve()
    own = base / issue_path.stem
    rel = file.relative_to(own) if file.is_relative_to(own) else file.relative_to(base)
    return rel.as_posix() if rel.parts[0] == "images" else f"images/{rel.as_posix()}"


# C0 controls (but tab, LF, CR) and the non-characters are not text: MJML
# cannot parse them, and no reader would want them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _control_characters(value: Any, path: PathKey, loc: Located) -> list[Problem]:
    if isinstance(value, str):
        bad = _CONTROL.search(value)
        if bad:
            return [loc.problem(path, shown_path(path), f"contains the control character U+{ord(bad.group()):04X}")]
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _control_characters(v, (*path, str(k)), loc)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _control_characters(v, (*path, i), loc)]
    return []


IMAGE_TYPES = tuple(FORMATS)


def _strings(value: Any, key: PathKey, name: str | None, skip: str | None) -> list[tuple[PathKey, str | None, str]]:
    """Every string of a block's value as written, with its data path and the name of its field."""
    if isinstance(value, str):
        return [(key, name, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != skip for s in _strings(v, (*key, str(k)), str(k), None)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, (*key, i), name, None)]
    return []


# The fields a block template renders as Markdown: `r.md(f.text)` and `r.md_text(f.text)` name them.
_MD_CALL = re.compile(r"\br\.md(?:_text)?\(\s*(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\s*\)")
_TEMPLATES = Path(__file__).parent / "templates" / "blocks"


@lru_cache(maxsize=64)
def markdown_fields(component: Component) -> frozenset[str]:
    """Names of the component's Markdown fields: its module's MARKDOWN_FIELDS, else read off its template."""
    declared = getattr(component.module, "MARKDOWN_FIELDS", None)
    if declared is not None:
        return frozenset(declared)
    try:
        template = (_TEMPLATES / f"{component.name}.mjml.j2").read_text("utf-8")
    except OSError:
        return frozenset()
    return frozenset(_MD_CALL.findall(template))


def _text_problems(text: str, key: PathKey, shown: str, loc: Located, *, markdown: bool) -> list[Problem]:
    found = [(offset, message, hint, "merge-field") for offset, message, hint in merge_problems(text)]
    if markdown:
        found += [(offset, message, hint, "link") for offset, message, hint in link_problems(text)]
    return [Problem(loc.file, *loc.where_in(key, text, offset), shown, message, hint, rule)
            for offset, message, hint, rule in found]


# --- merge fields --------------------------------------------------------------------------------------

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)?"
_KNOWN = r"(?:" + "|".join(KNOWN_FIELDS) + r"|fields\.[A-Za-z_][A-Za-z0-9_-]*)\b"
_DEFAULT = r"""(?:\|\s*default\s*\(\s*(?:"[^"]*"|'[^']*')\s*\)\s*)?"""
# `{{ first_name }` and `{ first_name }}`: one brace short. The second only for a field that exists,
# since a lone brace is common in text.
_CLOSE_SHORT = re.compile(r"(?<!\{)\{\{(?P<inner>\s*" + _NAME + r"\s*" + _DEFAULT + r")\}(?!\})")
_OPEN_SHORT = re.compile(r"(?<![{\w$])\{(?P<inner>\s*" + _KNOWN + r"\s*" + _DEFAULT + r")\}\}")
# `{{ first_name,` never closed; `{{ brace` is text.
_UNCLOSED = re.compile(r"\{\{\s*" + _KNOWN)


def merge_problems(text: str) -> list[tuple[int, str, str]]:
    """Every merge field in `text` that does not parse: (offset, message, hint)."""
    found = []
    masked = text
    for short, missing in ((_CLOSE_SHORT, "closing"), (_OPEN_SHORT, "opening")):
        for m in short.finditer(masked):
            found.append((m.start(), f"{m.group()} is missing its {missing} brace",
                          f"write {{{{{m.group('inner')}}}}}"))
            masked = masked[:m.start()] + " " * len(m.group()) + masked[m.end():]
    for m in EXPRESSION.finditer(masked):
        try:
            parse_field(m.group(1))
        except MergeSyntaxError as exc:
            nested = m.group(1).find("{{")
            if nested < 0:
                found.append((m.start(), str(exc), ""))
                continue
            head = m.group()[:nested + 2].split("\n")[0].rstrip()
            head = head if len(head) <= 30 else head[:29] + "…"
            found.append((m.start(), f"{head} is not closed before the next {{{{",
                          "close it with }}, or write &#123;&#123; for braces meant as text"))
    rest = EXPRESSION.sub(lambda m: " " * len(m.group()), masked)
    for m in _UNCLOSED.finditer(rest):
        found.append((m.start(), f"{m.group()} is not closed", f"end it with }}}}: {m.group()} }}}}"))
    return sorted(found)


# --- links in Markdown ---------------------------------------------------------------------------------

LINK_SCHEMES = ("https", "http", "mailto")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.I)
_STAND_IN = re.compile(r"mergefield(\d+)x")
_FIELD = re.compile(r"\{\{[^{}\n]*\}\}")  # a merge field that may parse (merge_problems says which do not)
_EMAIL = re.compile(r"^[^@\s/:]+@[^@\s/:]+\.[^@\s/:]+$")
_FILE_TYPES = frozenset({"html", "htm", "php", "asp", "aspx", "jsp", "pdf", "png", "jpg", "jpeg", "gif", "txt",
                         "doc", "docx", "xls", "xlsx", "csv", "zip", "mp3", "mp4"})  # `results.html` is a file
_DOMAIN = re.compile(r"^(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?:[/?#:].*)?$")


@lru_cache(maxsize=1)
def _link_parser() -> Any:
    from markdown_it import MarkdownIt
    md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable("table")
    # The renderer's parser drops a javascript: link to plain text without a word; this one keeps every
    # link, to name the ones that may not go out.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    return md


def link_problems(text: str) -> list[tuple[int, str, str]]:
    """Every link of Markdown `text` that is not https:, http: or mailto: (offset, message, hint)."""
    fields: list[str] = []

    def hide(m: re.Match[str]) -> str:  # as the renderer does: `{{ email }}` would stop the link parsing
        fields.append(m.group())
        return f"mergefield{len(fields) - 1}x"

    hidden = _FIELD.sub(hide, text)
    if "](" not in hidden and "<" not in hidden:
        return []
    found, at = [], 0
    for href, shown in _links(_link_parser().parse(hidden)):
        written = _STAND_IN.sub(lambda m: fields[int(m.group(1))], unquote(href))
        shown = _STAND_IN.sub(lambda m: fields[int(m.group(1))], shown.replace(href, written))
        offset = text.find(written, at)
        offset = offset if offset >= 0 else max(text.find(shown, at), 0)
        at = max(at, offset)
        problem = _link_problem(written, href)
        if problem is not None:
            message, hint = problem
            fixed = fixed_url(written)
            if fixed and not urlsplit(written).scheme:  # show the whole link, mended
                hint = f"write {shown.replace(written, fixed, 1)}"
            found.append((offset, f"link {shown} {message}", hint))
    return found


def _links(tokens: list[Any]) -> list[tuple[str, str]]:
    """(href, the link as written: [label](href) or <a href=…>) for every link, in order."""
    out: list[tuple[str, str]] = []
    for token in tokens:
        if token.type == "html_block":
            out += [(h, f'<a href="{h}">') for h in _hrefs(token.content)]
        for child in token.children or ():
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                label = f"<{href}>" if child.info == "auto" else f"[{_label(token.children, child)}]({href})"
                out.append((href, label))
            elif child.type == "html_inline":
                out += [(h, f'<a href="{h}">') for h in _hrefs(child.content)]
    return out


def _label(children: list[Any], opening: Any) -> str:
    parts, inside = [], False
    for child in children:
        if child is opening:
            inside = True
        elif inside and child.type == "link_close":
            break
        elif inside:
            parts.append(child.content)
    return "".join(parts)


def _hrefs(html: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in _HREF.finditer(html)]


def _link_problem(written: str, href: str) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for a link email cannot use, None for a good one.

    A merge field as a link's whole address is left to the renderer, which
    knows which fields may be one ({{ unsubscribe_url }}) and says why the
    others may not.
    """
    if _STAND_IN.match(href.strip()):
        return None
    bare = _STAND_IN.sub("x", href).strip()
    scheme = urlsplit(bare).scheme.lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", bare) else ""
    if scheme in ("http", "https") and not urlsplit(bare).netloc:
        return "has no host", f"write {scheme}://example.org/page"
    if scheme in LINK_SCHEMES:
        return None
    if scheme:
        return f"uses {scheme}:, which a link in an email may not: use https://, http:// or mailto:", ""
    return "has no scheme: an email's links must start with https://, http:// or mailto:", link_hint(written)


def fixed_url(url: str) -> str | None:
    """What a link with no scheme probably meant: an address, or a web page; None if it is not clear."""
    url = url.strip()
    if _EMAIL.match(url):
        return f"mailto:{url}"
    host = re.split(r"[/?#]", url, maxsplit=1)[0]
    if _DOMAIN.match(url) and host.rsplit(".", 1)[-1].lower() not in _FILE_TYPES:
        return f"https://{url}"
    return None


def link_hint(url: str) -> str:
    fixed = fixed_url(url)
    if fixed is None:
        return "a relative link has nowhere to go from an inbox: write the page's full https:// address"
    return f"{'an email address takes mailto: ' if fixed.startswith('mailto:') else ''}write {fixed}"


def _did_you_mean(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _model(model: type[BaseModel], data: Any, key: PathKey, shown: str, loc: Located,
           problems: list[Problem], *, coerced: bool) -> Any:
    if not isinstance(data, dict):
        problems.append(loc.problem(key, shown, f"expected a mapping of fields, got {_kind(data)}"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(_problem(error, model, key, shown, loc, coerced))
        return None


def _problem(error: Any, model: type[BaseModel], key: PathKey, shown: str, loc: Located, coerced: bool) -> Problem:
    err_loc = tuple(str(p) if isinstance(p, str) else p for p in error["loc"])
    data_loc = err_loc[1:] if coerced and err_loc else err_loc
    kind = error["type"]
    parents, last = err_loc[:-1], (err_loc[-1] if err_loc else "")
    where = shown + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parents)
    where = where.lstrip(".")
    if kind == "missing":
        return loc.problem((*key, *data_loc[:-1]), where, f"{last} is required", at_key=True)
    if kind == "extra_forbidden":
        known = _known_keys(model, parents)
        return loc.problem((*key, *data_loc), where, f"unknown key {last!r} (known: {', '.join(known)})",
                           at_key=True, hint=_did_you_mean(str(last), known))
    message = str(error["msg"]).removeprefix("Value error, ")
    target = f"{where}.{last}" if isinstance(last, str) and last else f"{where}[{last}]"
    message, hint = _explained(kind, message, error.get("input"))
    return loc.problem((*key, *data_loc), target.lstrip("."), message, hint=hint)


_DMY = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")


def _explained(kind: str, message: str, value: Any) -> tuple[str, str]:
    """A validator's message in an author's terms, and how to fix it."""
    if kind.startswith("date") and isinstance(value, str):
        dmy = _DMY.match(value)
        day, month = (int(dmy.group(1)), int(dmy.group(2))) if dmy else (0, 0)
        if dmy and month <= 12 and day <= 31:  # 14/05/2024: day first, as written outside the US
            return (f"{value!r} is not a date in the form YYYY-MM-DD",
                    f"write {dmy.group(3)}-{month:02d}-{day:02d}")
        return f"{value!r} is not a date in the form YYYY-MM-DD", DATE_HINT
    if kind.startswith("date"):
        return message, DATE_HINT
    if message.startswith("link must be") and isinstance(value, str):
        hint = link_hint(value) if "relative URL" in message else ""
        return f"{message} ({value.strip()!r})", hint
    return message, ""


def _known_keys(model: type[BaseModel], parents: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in parents:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(part)
        current = _inner_model(info.annotation) if info else None
    return list(current.model_fields) if current is not None else []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


__all__ = ["load_issue", "resolve_asset", "published_name", "ComponentError"]
