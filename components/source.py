"""Load YAML while remembering where every value came from.

Error messages must name `file:line:col`, so we compose the node graph
ourselves (yaml.compose keeps marks) and build plain Python data beside a
map from data path to position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem

PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data from a YAML document plus the position of every node."""

    file: str
    data: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathKey) -> tuple[int, int]:
        """Line and column of the nearest known node at or above `path`."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return (1, 1)

    def key_where(self, path: PathKey) -> tuple[int, int]:
        """Position of the mapping key naming `path`, falling back to its value."""
        return self.key_marks.get(path) or self.where(path)

    def problem(self, path: PathKey, shown: str, message: str, *, at_key: bool = False) -> Problem:
        line, col = self.key_where(path) if at_key else self.where(path)
        return Problem(self.file, line, col, shown, message)


# libyaml's composer is ten times faster than PyYAML's pure-Python one and
# keeps the same marks; scalars are still constructed by SafeConstructor.
_Composer = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: PathKey, loaded: Located, loader: yaml.constructor.SafeConstructor) -> Any:
    loaded.marks[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            child = (*path, str(key))
            loaded.key_marks[child] = _pos(key_node)
            result[key] = _build(value_node, child, loaded, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), loaded, loader) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # e.g. `date: 2020-13-45`: name the line, not just the reason
        raise yaml.MarkedYAMLError(problem=f"invalid value {node.value!r}: {exc}",
                                   problem_mark=node.start_mark) from None


def load_yaml(text: str, file: str) -> Located | Problem:
    """Parse one YAML document; a syntax error comes back as a Problem, never raised."""
    loaded = Located(file=file, data=None)
    loader = yaml.constructor.SafeConstructor()
    try:
        node = yaml.compose(text, Loader=_Composer)
        if node is not None:
            _resolve_merge_keys(node, loader)
            loaded.data = _build(node, (), loaded, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or "invalid YAML"
        if "\t" in text and "tab" in reason.lower() or "found character '\\t'" in str(exc):
            reason = "tabs are not allowed in YAML indentation; use spaces"
        return Problem(file, line, col, "", f"YAML syntax error: {reason}")
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        return Problem(file, 1, 1, "", f"YAML error: {exc}")
    return loaded


def _resolve_merge_keys(node: yaml.Node, loader: yaml.constructor.SafeConstructor) -> None:
    # `<<:` merges are a YAML feature authors use for repeated blocks; let
    # PyYAML flatten them before we walk the graph.
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        for _, value in node.value:
            _resolve_merge_keys(value, loader)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _resolve_merge_keys(item, loader)


def read_source(path: Path, shown: str) -> Located | Problem:
    """Read an issue file: missing, binary or non-UTF-8 input is a Problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Problem(shown, 1, 1, "", f"cannot read file: {exc.strerror or exc}")
    if b"\x00" in raw:
        return Problem(shown, 1, 1, "", "not a text file (binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return Problem(shown, line, 1, "", "not valid UTF-8 text")
    return load_yaml(text, shown)
