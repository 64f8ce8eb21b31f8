"""Whole-file validation: every problem is found and reported at once.

Each problem names `file:line:col` and a path such as
`blocks[3].section.blocks[1].image`, so an author can go straight to it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ComponentError, IssueInvalid, Problem
from .fields import Image, is_remote, strings_in
from .images import FORMATS, inspect
from .merge import MergeSyntaxError, fields_in
from .model import Block, Issue, IssueFields
from .registry import Component, components
from .source import Located, PathKey, read_source, shown_path
from .theme import theme_names


def load_issue(path: Path | str) -> Issue:
    """Read and validate an issue file; raise IssueInvalid listing every problem."""
    path = Path(path)
    shown = str(path)
    located = read_source(path, shown)
    if not located.complete:
        raise IssueInvalid(located.problems)
    found: list[Problem] = []
    issue = _validate(located, path, found)
    # What the reader refused (an alias, a bad value) was read as null: the
    # validator's complaint at that same place would only repeat it.
    taken = {(p.line, p.col) for p in located.problems}
    problems = located.problems + [p for p in found if (p.line, p.col) not in taken and p.path not in located.unread]
    if problems or issue is None:
        raise IssueInvalid(problems or [Problem(shown, 1, 1, "", "invalid issue")])
    return issue


def _validate(loc: Located, path: Path, problems: list[Problem]) -> Issue | None:
    if loc.data is None:
        problems.append(Problem(loc.file, 1, 1, "", "the file is empty; an issue needs a subject and blocks"))
        return None
    if not isinstance(loc.data, dict):
        problems.append(loc.problem((), "", "the top level must be a mapping with subject and blocks"))
        return None
    problems += _control_characters(loc.data, (), loc)
    meta = _model(IssueFields, loc.data, (), "", loc, problems, coerced=False)
    if meta is not None and meta.theme not in theme_names():
        problems.append(loc.problem(("theme",), "theme",
                                    f"unknown theme {meta.theme!r} (known: {', '.join(theme_names())})"))
    for key in ("subject", "preheader"):
        if isinstance(loc.data.get(key), str):
            _check_merge(loc.data[key], (key,), key, loc, problems)
    raw_blocks = loc.data.get("blocks")
    if not isinstance(raw_blocks, list):
        return None
    walker = _Walker(loc, path, problems)
    blocks = walker.blocks(raw_blocks, ("blocks",), "blocks", depth=0)
    if meta is None or problems:
        return None
    return Issue(path.stem, path, loc.file, meta, tuple(blocks), walker.assets)


class _Walker:
    """Validates the block tree, numbering sections and collecting images."""

    def __init__(self, loc: Located, path: Path, problems: list[Problem]):
        self.loc, self.path, self.problems = loc, path, problems
        self.known = components()
        self.assets: dict[str, Path] = {}
        self.sections = 0

    def blocks(self, items: list[Any], key: PathKey, shown: str, depth: int) -> list[Block]:
        out = []
        for i, item in enumerate(items):
            block = self.block(item, (*key, i), f"{shown}[{i}]", depth)
            if block is not None:
                out.append(block)
        return out

    def block(self, item: Any, key: PathKey, shown: str, depth: int) -> Block | None:
        if not isinstance(item, dict) or len(item) != 1:
            self.problems.append(self.loc.problem(
                key, shown, "a block is a mapping with one key naming its component, e.g. `- text: Hello`"))
            return None
        (name, value), = item.items()
        if name not in self.known:
            self.problems.append(self.loc.problem(
                (*key, str(name)), shown,
                f"unknown block type {name!r} (known: {', '.join(self.known)})", at_key=True))
            return None
        component = self.known[name]
        here = (*key, name)
        shown = f"{shown}.{name}"
        data = component.coerce(value)
        fields = _model(component.fields, data, here, shown, self.loc, self.problems,
                        coerced=data is not value)
        children: list[Block] = []
        if component.children_field and isinstance(data, dict):
            if depth > 0:
                self.problems.append(self.loc.problem(here, shown, "sections cannot be nested", at_key=True))
            nested = data.get(component.children_field)
            if isinstance(nested, list):
                children = self.blocks(nested, (*here, component.children_field),
                                       f"{shown}.{component.children_field}", depth + 1)
        if fields is None:
            return None
        self._check_strings(fields, here, shown, component)
        self._check_images(fields, here, shown)
        number = None
        if component.children_field and depth == 0:
            self.sections += 1
            number = self.sections
        line = self.loc.key_where(here)[0]
        return Block(component, fields, shown, self.loc.file, line, tuple(children), number)

    def _check_strings(self, fields: BaseModel, here: PathKey, shown: str, component: Component) -> None:
        values = {k: getattr(fields, k) for k in type(fields).model_fields if k != component.children_field}
        for text in strings_in(values):
            _check_merge(text, here, shown, self.loc, self.problems)

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


def _check_merge(text: str, key: PathKey, shown: str, loc: Located, problems: list[Problem]) -> None:
    try:
        fields_in(text)
    except MergeSyntaxError as exc:
        problems.append(loc.problem(key, shown, str(exc)))


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
        known = ", ".join(_known_keys(model, parents))
        return loc.problem((*key, *data_loc), where, f"unknown key {last!r} (known: {known})", at_key=True)
    message = str(error["msg"]).removeprefix("Value error, ")
    target = f"{where}.{last}" if isinstance(last, str) and last else f"{where}[{last}]"
    return loc.problem((*key, *data_loc), target.lstrip("."), message)


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
