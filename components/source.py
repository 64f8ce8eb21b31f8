"""Load an issue file's YAML while remembering where every value came from.

Error messages must name `file:line:col`, so we build plain Python data
straight from the parser's events, beside a map from data path to position.
Building it ourselves is also where an issue file is kept harmless: YAML's
anchors and aliases are refused (an alias bomb expands a few hundred bytes
into billions of values), a key given twice is an error instead of the
last one silently winning, and every size is capped while reading, before
anything can grow. Problems that do not stop the reading (a duplicate key,
an alias, a string too long) are collected so that `check` can report them
with every other problem of the file (design §3).
"""
from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem

PathKey = tuple[str | int, ...]

# Caps on what one issue file may hold. The reference issue (issues/2020-12.yaml)
# is 25 KB, 430 YAML values, 10 levels deep, with 22 items in its longest list
# and 2,000 characters in its longest string: each cap is far above what a real
# issue needs and far below what hurts `check` or a mail client.
MAX_FILE_BYTES = 2 * 1024 * 1024  # 80 times the reference issue; Gmail clips an email at 102 KB anyway
# Characters in one value: twice Gmail's 102 KB clip, so no value this long can reach a reader whole;
# below it, check's gmail-clip error says more (it names the biggest blocks).
MAX_STRING = 200_000
MAX_ITEMS = 1_000  # entries in one list or mapping (1,000 blocks is fifty issues' worth)
MAX_NODES = 50_000  # YAML values in the whole file: counted while reading, so nothing is built past it
MAX_DEPTH = 40  # nesting levels; a section's image is about 8 deep, and our own walkers recurse
MAX_NUMBER = 100  # characters in a number: a 100,000-digit integer costs seconds to convert
MAX_PROBLEMS = 200  # reported by the reader; a generated hostile file could otherwise list 50,000

_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; an issue is far flatter"
DATE_HINT = "write a date as YYYY-MM-DD, e.g. 2024-05-14"

# Tags with a plain meaning; anything else (!!python/object, !!binary, custom tags) is refused.
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_PLAIN_AS_STRING = {"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}  # `<<` and `=` are just text here
_SEQ_TAG, _MAP_TAG = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}

# libyaml's parser is ten times faster than PyYAML's pure-Python one and gives the same events and marks.
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shown_path(path: PathKey) -> str:
    """A data path as errors show it: `blocks[3].section.blocks[1].image`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@dataclass
class Located:
    """Plain data from a YAML document plus the position of every node.

    `problems` are what the reader found; `complete` is False when it had to
    stop (a syntax error, a cap on the whole file), and `data` is then not the file.
    """

    file: str
    data: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    complete: bool = True
    unread: set[str] = field(default_factory=set)  # shown paths whose value was refused and read as null
    text: str = ""  # the file's text: where a problem inside a long value is (where_in)
    ends: dict[PathKey, tuple[int, int]] = field(default_factory=dict)  # where each scalar ends
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def where(self, path: PathKey) -> tuple[int, int]:
        """Line and column of the nearest known node at or above `path`."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return (1, 1)

    def key_where(self, path: PathKey) -> tuple[int, int]:
        """Position of the mapping key naming `path`, falling back to its value."""
        return self.key_marks.get(path) or self.where(path)

    def problem(self, path: PathKey, shown: str, message: str, *, at_key: bool = False, hint: str = "",
                rule: str = "invalid") -> Problem:
        line, col = self.key_where(path) if at_key else self.where(path)
        return Problem(self.file, line, col, shown, message, hint, rule)

    def where_in(self, path: PathKey, value: str, offset: int) -> tuple[int, int]:
        """Line and column of `value[offset]`, inside the string read at `path`.

        The value is not its source (indentation, folding, quotes and escapes
        come between), so the text from `offset` to the next space is looked
        up in the value's own stretch of the file, as often as it occurs before
        `offset`; if it cannot be found there, the value's start.
        """
        start, end = self.marks.get(path), self.ends.get(path)
        if start is None or end is None or not self.text or not 0 <= offset < len(value):
            return self.where(path)
        snippet = _snippet(value, offset)
        first, last = self._offset(start), self._offset(end)
        at = first - 1
        for _ in range(_occurrences(value, snippet, offset) + 1):
            at = self.text.find(snippet, at + 1, last)
            if at < 0:
                return start
        line = bisect.bisect_right(self._starts(), at)
        return line, at - self._starts()[line - 1] + 1

    def _starts(self) -> list[int]:
        if not self._line_starts:
            self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        return self._line_starts

    def _offset(self, place: tuple[int, int]) -> int:
        starts = self._starts()
        return (starts[place[0] - 1] if place[0] <= len(starts) else len(self.text)) + place[1] - 1


def _snippet(value: str, offset: int) -> str:
    """The text at `offset` up to a space, a quote or a backslash (what quoting or folding may change)."""
    end = offset
    while end < len(value) and end - offset < 40 and not value[end].isspace() and value[end] not in "\"'\\":
        end += 1
    return value[offset:max(end, offset + 1)]


def _occurrences(value: str, snippet: str, before: int) -> int:
    count, at = 0, value.find(snippet)
    while 0 <= at < before:
        count, at = count + 1, value.find(snippet, at + 1)
    return count


class _Stop(Exception):
    """The reader cannot go on; carries the problem that says why."""

    def __init__(self, problem: Problem):
        self.problem = problem


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Reader:
    """Turns parser events into plain data, refusing what an issue file must not hold."""

    def __init__(self, text: str, located: Located):
        self.parser = _Parser(text)
        self.loc = located
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()
        self.nodes = 0
        self.muted = 0  # while reading a key, or a value given twice: record no positions

    def report(self, mark: Any, path: PathKey, message: str, hint: str = "") -> None:
        if len(self.loc.problems) < MAX_PROBLEMS:
            self.loc.problems.append(Problem(self.loc.file, *_pos(mark), shown_path(path), message, hint))
        elif len(self.loc.problems) == MAX_PROBLEMS:
            self.loc.problems.append(Problem(self.loc.file, *_pos(mark), "",
                                             f"more than {MAX_PROBLEMS} problems; fix these first"))

    def unread(self, path: PathKey) -> None:
        if not self.muted:
            self.loc.unread.add(shown_path(path))

    def stop(self, mark: Any, path: PathKey, message: str) -> None:
        raise _Stop(Problem(self.loc.file, *_pos(mark), shown_path(path), message))

    def document(self) -> Any:
        self.parser.get_event()  # StreamStart
        if self.parser.check_event(yaml.StreamEndEvent):
            return None
        self.parser.get_event()  # DocumentStart
        data = self.value((), 0)
        self.parser.get_event()  # DocumentEnd
        if not self.parser.check_event(yaml.StreamEndEvent):
            self.stop(self.parser.peek_event().start_mark, (),
                      "an issue file holds one YAML document; a second one starts here (remove the `---`)")
        return data

    def value(self, path: PathKey, depth: int) -> Any:
        event = self.parser.get_event()
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.stop(event.start_mark, path, f"the file holds more than {MAX_NODES} YAML values; "
                                              "an issue is far smaller (is it generated?)")
        if not self.muted:
            self.loc.marks[path] = _pos(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            self.report(event.start_mark, path, f"alias *{event.anchor}: anchors and aliases (&name, *name) "
                                                "are not allowed in issue files; write the value out")
            return self.unread(path)
        if event.anchor is not None:
            self.report(event.start_mark, path, f"anchor &{event.anchor}: anchors and aliases (&name, *name) "
                                                "are not allowed in issue files; write the value out")
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event, path)
        if depth >= MAX_DEPTH:
            self.stop(event.start_mark, (), _TOO_DEEP)
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
        self.tag(event, kind, _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG, path)
        if kind is yaml.SequenceNode:
            return self.sequence(event, path, depth)
        return self.mapping(event, path, depth)

    def tag(self, event: Any, kind: type, expected: str, path: PathKey) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            implicit = event.implicit if kind is yaml.ScalarNode else True
            tag = self.resolver.resolve(kind, event.value if kind is yaml.ScalarNode else None, implicit)
            return "tag:yaml.org,2002:str" if tag in _PLAIN_AS_STRING else tag
        if tag != expected and not (kind is yaml.ScalarNode and tag in _SCALAR_TAGS):
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            self.report(event.start_mark, path, f"the YAML tag {shown} is not allowed in issue files; "
                                                "write a plain value")
            return ""  # read as plain text, so the rest of the value is still checked
        return tag

    def scalar(self, event: Any, path: PathKey) -> Any:
        if not self.muted:
            self.loc.ends[path] = _pos(event.end_mark)
        tag = self.tag(event, yaml.ScalarNode, "", path)
        if len(event.value) > MAX_STRING:
            self.report(event.start_mark, path, f"{len(event.value):,} characters; a value can hold at most "
                                                f"{MAX_STRING:,} (split it, or link to the full text)")
            return event.value
        if not tag:
            return event.value
        if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER:
            self.report(event.start_mark, path, f"a number of {len(event.value):,} characters; quote it "
                                                "if it is meant as text")
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError, yaml.YAMLError) as exc:
            # e.g. `date: 2020-13-45`: name the line, not just the reason
            self.report(event.start_mark, path, f"invalid value {_short(event.value)}: {exc}",
                        DATE_HINT if tag.endswith(":timestamp") else "")
            return self.unread(path)

    def sequence(self, start: Any, path: PathKey, depth: int) -> list[Any]:
        items: list[Any] = []
        while not self.parser.check_event(yaml.SequenceEndEvent):
            item = self.value((*path, len(items)), depth + 1)
            if len(items) == MAX_ITEMS:
                self.report(start.start_mark, path, f"more than {MAX_ITEMS:,} items in one list")
            items.append(item)
        self.parser.get_event()
        return items[:MAX_ITEMS]  # the rest was read (and counted) but is never checked

    def mapping(self, start: Any, path: PathKey, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first: dict[Any, tuple[int, int]] = {}  # where each key was given
        while not self.parser.check_event(yaml.MappingEndEvent):
            key_mark = self.parser.peek_event().start_mark
            with self.muffled():
                key = _hashable(self.value(path, depth + 1))
            child = (*path, str(key))
            if key in first:  # reported, and the first value kept: the one a reviewer reads first
                self.report(key_mark, child, _twice(first[key], _pos(key_mark)))
                with self.muffled():
                    self.value(child, depth + 1)
                continue
            first[key] = _pos(key_mark)
            if len(first) == MAX_ITEMS + 1:
                self.report(start.start_mark, path, f"more than {MAX_ITEMS:,} keys in one mapping")
            if len(first) > MAX_ITEMS:
                with self.muffled():
                    self.value(child, depth + 1)
                continue
            if not self.muted:
                self.loc.key_marks[child] = first[key]
            result[key] = self.value(child, depth + 1)
        self.parser.get_event()
        return result

    @contextmanager
    def muffled(self) -> Iterator[None]:
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1


def _twice(first: tuple[int, int], second: tuple[int, int]) -> str:
    if first[0] == second[0]:
        return f"given twice, on line {first[0]} (columns {first[1]} and {second[1]})"
    return f"given twice, at lines {first[0]} and {second[0]}"


def _hashable(key: Any) -> Any:
    # A key may itself be a list or mapping (`? [a, b]`); it can only be wrong
    # in an issue file, so keep it as text for the message that says so.
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def load_yaml(text: str, file: str) -> Located:
    """Read one YAML document; every problem comes back in `problems`, none is raised."""
    loaded = Located(file=file, data=None, text=text)
    if len(text) > MAX_FILE_BYTES:
        return _stopped(loaded, Problem(file, 1, 1, "", _TOO_BIG))
    reader = _Reader(text, loaded)
    try:
        loaded.data = reader.document()
    except _Stop as stop:
        return _stopped(loaded, stop.problem)
    except yaml.MarkedYAMLError as exc:
        return _stopped(loaded, _syntax_problem(exc, text, file))
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, such as U+0007
        line, col = _line_col(text, exc.position)
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return _stopped(loaded, Problem(file, line, col, "", f"contains {what}, a control character or "
                                        "non-character YAML does not allow"))
    except yaml.YAMLError as exc:
        return _stopped(loaded, Problem(file, 1, 1, "", f"YAML error: {exc}"))
    finally:
        reader.parser.dispose()
    return loaded


def _stopped(loaded: Located, problem: Problem) -> Located:
    loaded.problems.append(problem)
    loaded.complete = False
    return loaded


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = _pos(mark) if mark else (1, 1)
    reason = exc.problem or "invalid YAML"
    if "found character '\\t'" in str(exc) or ("\t" in text and "tab" in reason.lower()):
        reason = "tabs are not allowed in YAML indentation; use spaces"
    if "maximum nesting depth" in reason:  # libyaml's own limit, met while scanning ahead of us
        return Problem(file, line, col, "", _TOO_DEEP)
    return Problem(file, line, col, "", f"YAML syntax error: {reason}", _syntax_hint(reason, text, line))


# `heading: Race report: Preston 10K`: the key, then a plain value holding ": ".
_PLAIN_PAIR = re.compile(r"""^(?P<key>\s*(?:-\s+)?[^\s:#'"{\[][^:#]*?:)\s+(?P<value>[^'"{\[|>].*?)(?:\s+#.*)?$""")


def _syntax_hint(reason: str, text: str, line: int) -> str:
    """The usual fix for the YAML errors authors meet: a colon, comma or brace inside an unquoted value."""
    lines = text.split("\n")
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    if "mapping values are not allowed" in reason:
        pair = _PLAIN_PAIR.match(source)
        if pair:
            quoted = json.dumps(pair.group("value"), ensure_ascii=False)  # a JSON string is valid YAML
            return f'a value holding ": " must be quoted: {pair.group("key").strip()} {quoted}'
        return 'a value holding ": " must be quoted: title: "Race report: Preston 10K"'
    if "expected ',' or '}'" in reason or "expected ',' or ']'" in reason:
        return 'inside { } or [ ], quote a value that holds ":", "," or a bracket: {title: "Race: 10K"}'
    return ""


def _line_col(text: str, position: int) -> tuple[int, int]:
    # libyaml counts bytes of the UTF-8 text, PyYAML's own reader characters.
    before = text.encode("utf-8")[:position].decode("utf-8", "ignore") if _Parser is not yaml.SafeLoader \
        else text[:position]
    position = len(before)
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


_TOO_BIG = (f"the file is over {MAX_FILE_BYTES // 1024 // 1024} MB, the most an issue file may be "
            "(the reference issue is 25 KB)")


def read_source(path: Path, shown: str) -> Located:
    """Read an issue file: missing, oversized, binary or non-UTF-8 input is a problem, never raised."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # bounded: the path may name a huge file or a device
    except OSError as exc:
        return _stopped(Located(shown, None), Problem(shown, 1, 1, "", f"cannot read file: {exc.strerror or exc}"))
    if len(raw) > MAX_FILE_BYTES:
        return _stopped(Located(shown, None), Problem(shown, 1, 1, "", _TOO_BIG))
    if b"\x00" in raw:
        return _stopped(Located(shown, None), Problem(shown, 1, 1, "", "not a text file (binary data)"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _stopped(Located(shown, None), Problem(shown, line, 1, "", "not valid UTF-8 text"))
    return load_yaml(text, shown)
