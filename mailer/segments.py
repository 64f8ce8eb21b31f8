"""Segments (design §15): a reviewed rule file that narrows a list's subscribed, unsuppressed members.

`segments/NAME.yaml` is read with the issue files' YAML reader (anchors refused, keys
given twice reported, sizes capped), validated whole, every problem reported as
FILE:LINE:COL, then compiled to a bound SQLAlchemy expression over the members that
subscribers.subscribed_members() gives: a rule can only narrow them. Field names and
values only ever travel as bound parameters (never SQL text), so they may hold anything.

Every leaf compiles to an expression that is true or false, never NULL (a missing
field is false, not unknown), so `not` of a leaf is its exact complement: a person
without the field matches neither `is` nor `in`, and so matches their `not`.
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Subquery, and_, func, literal, not_, or_, select

from components import Problem
from components.source import Located, PathKey, read_source, shown_path
from subscribers import Database, display_address, get_list, subscribed_members

from .errors import MailerError
from .schema import deliveries, events, sends

# The kinds a rule may name -> the kind stored in `events` (None: the ledger's own `sent`).
EVENT_KINDS: dict[str, str | None] = {"sent": None, "delivered": "delivery", "bounced": "bounce",
                                      "complained": "complaint", "unsubscribed": "unsubscribe"}
OPERATORS = ("all", "any", "not", "field", "joined", "event")
TOP_KEYS = ("title", "where")
# Values of all `is` and `in` together: each is one bound parameter, and SQLite allows
# 32,766 per statement. A real segment names a handful.
MAX_VALUES = 5_000
MAX_ISSUE = 100  # sends.issue is VARCHAR(100)
# What trimming removes, on both sides of a comparison (SQL's trim() alone takes only spaces).
TRIMMED = " \t\r\n"


class SegmentError(MailerError):
    """Base of the segment errors."""


class SegmentInvalid(SegmentError):
    """The segment file has problems; every one is listed, as FILE:LINE:COL: where: what."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class SegmentNotFound(SegmentError):
    """No segments/NAME.yaml; the message names the segments there are."""


# --- the model ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldRule:
    name: str
    values: tuple[str, ...]  # trimmed
    op: str  # "is" (one value) or "in"


@dataclass(frozen=True)
class JoinedRule:
    """Joined the list (membership's subscribed_at) after and/or before a date (a whole UTC day) or a time."""

    after: dt.date | dt.datetime | None = None
    before: dt.date | dt.datetime | None = None


@dataclass(frozen=True)
class EventRule:
    kind: str  # a key of EVENT_KINDS
    issue: str  # the issue's slug


@dataclass(frozen=True)
class AllRule:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyRule:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class NotRule:
    rule: Rule


Rule = FieldRule | JoinedRule | EventRule | AllRule | AnyRule | NotRule


@dataclass(frozen=True)
class Segment:
    name: str  # the file name without .yaml
    title: str
    file: str  # as shown in messages
    where: Rule

    def describe(self) -> str:
        """The rule as readable text, one condition per line."""
        return "\n".join(_describe(self.where, ""))

    def members(self, conn: Connection, list_id: int) -> Select[Any]:
        """segment_members() as the sender asks for it (mailer.sending.Segmented)."""
        return segment_members(conn, self, list_id)


@dataclass(frozen=True)
class SegmentEntry:
    """One file of the segments folder, for `segments ls`: its segment, or its first problem."""

    name: str
    file: str
    title: str
    problem: str | None = None


# --- finding and loading --------------------------------------------------------------------------

def segment_files(folder: Path) -> dict[str, Path]:
    """NAME -> segments/NAME.yaml. Only names found here can be asked for, so NAME never walks a path."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.is_file()}


def find_segment(folder: Path, name: str) -> Segment:
    """Load segments/NAME.yaml; raises SegmentNotFound (naming the known ones) or SegmentInvalid."""
    files = segment_files(folder)
    if name not in files:
        known = ", ".join(files) if files else f"none: {folder}/ holds no .yaml file"
        close = difflib.get_close_matches(name, list(files), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SegmentNotFound(f"no segment {name!r}{hint}; known segments: {known}")
    return load_segment(files[name], str(files[name]))


def list_segments(folder: Path) -> list[SegmentEntry]:
    """Every segment file, sorted by name; a broken one comes with its first problem."""
    out = []
    for name, path in segment_files(folder).items():
        try:
            segment = load_segment(path, str(path))
        except SegmentInvalid as exc:
            out.append(SegmentEntry(name, str(path), "", str(exc.problems[0]) if exc.problems else str(exc)))
        else:
            out.append(SegmentEntry(name, str(path), segment.title))
    return out


def load_segment(path: Path, shown: str | None = None) -> Segment:
    """Read and validate a segment file; raises SegmentInvalid listing every problem with its place."""
    located = read_source(path, shown or str(path))
    problems = list(located.problems)
    segment = None
    if located.complete:
        checker = _Checker(located)
        where = checker.top(located.data)
        problems += checker.problems
        if where is not None:
            title = located.data.get("title") if isinstance(located.data, dict) else None
            segment = Segment(path.stem, title.strip() if isinstance(title, str) else "", located.file, where)
    if problems or segment is None:
        raise SegmentInvalid(problems or [Problem(located.file, 1, 1, "", "no rule could be read")])
    return segment


# --- validation -----------------------------------------------------------------------------------

_RULE_HELP = ("a rule is one of: `field: NAME` with `is: VALUE` or `in: [VALUES]`, `all: [RULES]`, "
              "`any: [RULES]`, `not: RULE`, `joined: {after: DATE}`, `event: {kind: KIND, issue: SLUG}`")


class _Checker:
    """Walks the file's data once, building the rule and collecting every problem."""

    def __init__(self, located: Located):
        self.loc = located
        self.problems: list[Problem] = []
        self.values = 0

    def say(self, path: PathKey, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.loc.problem(path, shown_path(path), message, at_key=at_key))

    def refused(self, path: PathKey) -> bool:
        """The reader already reported this value (a bad date, a tag) and read it as null."""
        return shown_path(path) in self.loc.unread

    def unknown_keys(self, data: dict[Any, Any], path: PathKey, allowed: tuple[str, ...], what: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                self.say((*path, str(key)), f"unknown key {str(key)!r} in {what}; {hint}"
                         f"known: {', '.join(allowed)}", at_key=True)

    def top(self, data: Any) -> Rule | None:
        if not isinstance(data, dict):
            self.say((), "a segment file is a mapping with `title:` and `where:` (a rule); " + _RULE_HELP)
            return None
        self.unknown_keys(data, (), TOP_KEYS, "a segment file")
        title = data.get("title")
        if title is not None and not isinstance(title, str) and not self.refused(("title",)):
            self.say(("title",), "the title is text")
        if "where" not in data:
            self.say((), "`where:` is missing: the rule that picks the members; " + _RULE_HELP)
            return None
        return self.rule(data["where"], ("where",))

    def rule(self, data: Any, path: PathKey) -> Rule | None:
        if not isinstance(data, dict) or not data:
            if not self.refused(path):
                self.say(path, _RULE_HELP)
            return None
        named = [k for k in data if k in OPERATORS]
        if "field" in data:
            named.remove("field")
            if named:
                self.say((*path, named[0]), f"`{named[0]}` beside `field`: one rule per item; put both in a "
                                            "list under `all:` (or `any:`)", at_key=True)
            self.unknown_keys(data, path, ("field", "is", "in", *named), "a field rule")
            return self.field_rule(data, path)
        if len(named) > 1:
            self.say((*path, named[1]), f"`{named[0]}` and `{named[1]}` in one item: one rule per item; put "
                                        "them in a list under `all:` (or `any:`)", at_key=True)
            return None
        if not named:
            if "is" in data or "in" in data:
                self.say(path, "`is` and `in` compare a field: add `field: NAME`")
            self.unknown_keys(data, path, (*OPERATORS, "is", "in"), "a rule")
            return None
        self.unknown_keys(data, path, (named[0],), f"a `{named[0]}` rule")
        return self.operator(named[0], data[named[0]], (*path, named[0]))

    def operator(self, name: str, data: Any, path: PathKey) -> Rule | None:
        if name in ("all", "any"):
            return self.group(name, data, path)
        if name == "not":
            if isinstance(data, list):
                self.say(path, "`not` takes one rule, not a list; to negate several, write `not: {any: [...]}` "
                               "(none of them) or `not: {all: [...]}` (not all of them)")
                return None
            inner = self.rule(data, path)
            return NotRule(inner) if inner is not None else None
        if name == "joined":
            return self.joined(data, path)
        return self.event(data, path)

    def group(self, name: str, data: Any, path: PathKey) -> Rule | None:
        if not isinstance(data, list):
            if not self.refused(path):
                self.say(path, f"`{name}` takes a list of rules, one per `- ` line")
            return None
        if not data:
            self.say(path, f"`{name}` is empty: give it at least one rule")
            return None
        rules = [self.rule(item, (*path, i)) for i, item in enumerate(data)]
        if any(r is None for r in rules):
            return None
        kept = tuple(r for r in rules if r is not None)
        return AllRule(kept) if name == "all" else AnyRule(kept)

    def field_rule(self, data: dict[Any, Any], path: PathKey) -> Rule | None:
        name = self.field_name(data.get("field"), (*path, "field"))
        if "is" in data and "in" in data:
            self.say((*path, "in"), "give `is` (one value) or `in` (a list), not both", at_key=True)
            return None
        if "is" in data:
            values = self.is_value(data["is"], (*path, "is"))
        elif "in" in data:
            values = self.in_values(data["in"], (*path, "in"))
        else:
            self.say(path, f"field {name or ''!r}: say what to compare with: `is: VALUE` or `in: [VALUES]`")
            return None
        if name is None or values is None:
            return None
        return FieldRule(name, values, "is" if "is" in data else "in")

    def field_name(self, value: Any, path: PathKey) -> str | None:
        if not isinstance(value, str) or not value.strip():
            if not self.refused(path):
                self.say(path, "`field` names a custom field, as text (e.g. `field: team`)")
            return None
        stored = _stored_field_name(value)
        if stored != value:
            self.say(path, f"field names are kept lower-case with underscores: write `field: {stored}`")
            return None
        return value

    def is_value(self, value: Any, path: PathKey) -> tuple[str, ...] | None:
        if isinstance(value, list):
            self.say(path, "`is` takes one value; for several, write `in: [A, B]`")
            return None
        text = self.compared(value, path, "is")
        return (text,) if text is not None else None

    def in_values(self, value: Any, path: PathKey) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            if isinstance(value, str):
                self.say(path, f"`in` takes a list; for one value write `is: {value}` (or `in: [{value}]`)")
            elif not self.refused(path):
                self.say(path, "`in` takes a list of values, e.g. `in: [Preston, Chorley]`")
            return None
        if not value:
            self.say(path, "`in` is empty: nobody could match; give at least one value")
            return None
        texts = [self.compared(v, (*path, i), "in") for i, v in enumerate(value)]
        return tuple(t for t in texts if t is not None) if None not in texts else None

    def compared(self, value: Any, path: PathKey, key: str) -> str | None:
        """A value to compare with: text only; YAML's other readings of a bare word are refused, not guessed."""
        if isinstance(value, str):
            self.values += 1
            if self.values == MAX_VALUES + 1:
                self.say(path, f"more than {MAX_VALUES:,} values in one segment")
            return value.strip(TRIMMED)
        if self.refused(path):
            return None
        if value is None:
            self.say(path, f"`{key}` has no value; write the text to compare with")
        elif isinstance(value, bool):
            self.say(path, f"YAML reads this as {str(value).lower()} (yes/no/on/off/true/false are booleans); "
                           "quote it to compare text: \"...\"")
        elif isinstance(value, (int, float, dt.date)):
            self.say(path, f"YAML reads this as a {'date' if isinstance(value, dt.date) else 'number'} "
                           f"({value}); values are compared as text: quote it, exactly as stored")
        else:
            self.say(path, "a value to compare with is text, not a list or mapping")
        return None

    def joined(self, data: Any, path: PathKey) -> Rule | None:
        if not isinstance(data, dict) or not ({"after", "before"} & set(data)):
            if not self.refused(path):
                self.say(path, "`joined` takes `after: DATE` and/or `before: DATE` (YYYY-MM-DD), e.g. "
                               "`joined: {after: 2025-01-01}`")
            if isinstance(data, dict):
                self.unknown_keys(data, path, ("after", "before"), "`joined`")
            return None
        self.unknown_keys(data, path, ("after", "before"), "`joined`")
        after = self.when(data["after"], (*path, "after")) if "after" in data else None
        before = self.when(data["before"], (*path, "before")) if "before" in data else None
        if ("after" in data and after is None) or ("before" in data and before is None):
            return None
        if after is not None and before is not None and _lower_bound(after) >= _upper_bound(before):
            self.say((*path, "before"), f"nobody can join after {_shown_when(after)} and before "
                                        f"{_shown_when(before)}: `before` must be later")
            return None
        return JoinedRule(after, before)

    def when(self, value: Any, path: PathKey) -> dt.date | dt.datetime | None:
        if isinstance(value, str):
            value = _parse_when(value.strip())
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                self.say(path, "a time needs its offset (e.g. 2025-01-01T09:00:00Z or +01:00); or give a date")
                return None
            return value
        if isinstance(value, dt.date):
            return value
        if not self.refused(path):
            self.say(path, "not a date: write YYYY-MM-DD (e.g. 2025-01-01), or a time with its offset")
        return None

    def event(self, data: Any, path: PathKey) -> Rule | None:
        if not isinstance(data, dict):
            if not self.refused(path):
                self.say(path, "`event` takes `kind:` and `issue:`, e.g. `event: {kind: delivered, issue: 2020-12}`")
            return None
        self.unknown_keys(data, path, ("kind", "issue"), "`event`")
        kind = self.event_kind(data.get("kind"), (*path, "kind"), "kind" in data)
        issue = self.issue(data.get("issue"), (*path, "issue"), "issue" in data)
        return EventRule(kind, issue) if kind is not None and issue is not None else None

    def event_kind(self, value: Any, path: PathKey, given: bool) -> str | None:
        if isinstance(value, str) and value in EVENT_KINDS:
            return value
        if not given:
            self.say(path[:-1], f"`event` needs `kind:` (one of {', '.join(EVENT_KINDS)})")
        elif not self.refused(path):
            close = difflib.get_close_matches(str(value), list(EVENT_KINDS), n=1, cutoff=0.75)
            hint = f"did you mean `{close[0]}`? " if close else ""
            self.say(path, f"unknown event kind {str(value)!r}; {hint}known: {', '.join(EVENT_KINDS)}")
        return None

    def issue(self, value: Any, path: PathKey, given: bool) -> str | None:
        # A slug is a file name: `2021` or `2020-12-01` are read by YAML as a number or a date.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            value = value.isoformat()
        if isinstance(value, str) and value.strip() and len(value.strip()) <= MAX_ISSUE:
            return value.strip()
        if not given:
            self.say(path[:-1], "`event` needs `issue:` (the issue's slug, e.g. 2020-12)")
        elif not self.refused(path):
            self.say(path, f"`issue` is an issue's slug (its file name without .yaml, at most {MAX_ISSUE} "
                           "characters)")
        return None


def _stored_field_name(key: str) -> str:
    # The form subscribers/ keeps custom field names in (subscribers/people.py field_name):
    # `Home Town` is stored as `home_town`, so a rule naming `Home Town` would match nobody.
    return "_".join(key.strip().lower().split())


def _parse_when(text: str) -> dt.date | dt.datetime | None:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
    except ValueError:
        return None


# --- compiling ------------------------------------------------------------------------------------

def _lower_bound(when: dt.date | dt.datetime) -> dt.datetime:
    """`after` a day: from the start of the next UTC day; after a time: that time."""
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC)
    return dt.datetime.combine(when + dt.timedelta(days=1), dt.time(), dt.UTC)


def _upper_bound(when: dt.date | dt.datetime) -> dt.datetime:
    """`before` a day: until the start of that UTC day; before a time: that time."""
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC)
    return dt.datetime.combine(when, dt.time(), dt.UTC)


def compile_rule(rule: Rule, members: Subquery, dialect: str) -> ColumnElement[bool]:
    """The rule as a boolean expression over `members` (subscribers.subscribed_members), every value bound."""
    if isinstance(rule, AllRule):
        return and_(*(compile_rule(r, members, dialect) for r in rule.rules))
    if isinstance(rule, AnyRule):
        return or_(*(compile_rule(r, members, dialect) for r in rule.rules))
    if isinstance(rule, NotRule):
        return not_(compile_rule(rule.rule, members, dialect))
    if isinstance(rule, FieldRule):
        return _field(rule, members, dialect)
    if isinstance(rule, JoinedRule):
        return _joined(rule, members)
    return _event(rule, members)


def _field(rule: FieldRule, members: Subquery, dialect: str) -> ColumnElement[bool]:
    """The field holds text equal, once trimmed, to one of the values. Numbers, booleans, null: no match."""
    if dialect == "postgresql":
        # -> and ->> take the key as a bound parameter; json_typeof is NULL for a missing key,
        # hence the coalesce: false, never NULL.
        node = members.c.fields[rule.name]
        return and_(func.coalesce(func.json_typeof(node), "") == "string",
                    func.btrim(node.as_string(), TRIMMED).in_(rule.values))
    # SQLite's JSON paths ('$."key"') cannot quote every key; json_each compares the key as a value.
    each = func.json_each(members.c.fields).table_valued("key", "value", "type")
    return select(literal(1)).select_from(each).where(
        each.c.key == rule.name, each.c.type == "text", func.trim(each.c.value, TRIMMED).in_(rule.values),
    ).exists()


def _joined(rule: JoinedRule, members: Subquery) -> ColumnElement[bool]:
    at = members.c.subscribed_at
    parts: list[ColumnElement[bool]] = [at.is_not(None)]  # no date: no match (and so a match of `not`)
    if rule.after is not None:
        bound = _lower_bound(rule.after)
        parts.append(at > bound if isinstance(rule.after, dt.datetime) else at >= bound)
    if rule.before is not None:
        parts.append(at < _upper_bound(rule.before))
    return and_(*parts)


def _event(rule: EventRule, members: Subquery) -> ColumnElement[bool]:
    of_issue = select(literal(1)).select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
    who = deliveries.c.subscriber_id == members.c.subscriber_id
    stored = EVENT_KINDS[rule.kind]
    if stored is None:  # sent: the ledger says this person's message of that issue was accepted
        return of_issue.where(who, sends.c.issue == rule.issue, deliveries.c.state == "sent").exists()
    # Events are attributed to the ledger row of the message they are about (mailer/policy.py).
    return (select(literal(1))
            .select_from(events.join(deliveries, deliveries.c.id == events.c.delivery_id)
                         .join(sends, sends.c.id == deliveries.c.send_id))
            .where(who, sends.c.issue == rule.issue, events.c.kind == stored).exists())


# --- members --------------------------------------------------------------------------------------

def segment_members(conn: Connection, segment: Segment, list_id: int) -> Select[Any]:
    """A SELECT of the subscriber ids of the list's subscribed, unsuppressed members in the segment, by id.

    Like subscribers.subscribed_ids(): a sender freezes it into the ledger, e.g. with
    `.add_columns(...)` and `deliveries.insert().from_select(...)`, in the same transaction as `conn`.
    """
    members = subscribed_members(conn, list_id)
    return (select(members.c.subscriber_id).where(compile_rule(segment.where, members, conn.dialect.name))
            .order_by(members.c.subscriber_id))


def count_members(conn: Connection, segment: Segment, list_id: int) -> int:
    members = segment_members(conn, segment, list_id).order_by(None).subquery()
    return int(conn.execute(select(func.count()).select_from(members)).scalar_one())


def segment_addresses(db: Database, segment: Segment, list_name: str) -> list[str]:
    """The addresses (as people read them) of the list's members in the segment, in id order."""
    with db.begin(read_only=True) as conn:
        members = subscribed_members(conn, get_list(conn, list_name).id)
        query = (select(members.c.email).where(compile_rule(segment.where, members, conn.dialect.name))
                 .order_by(members.c.subscriber_id))
        return [display_address(e) for e in conn.execute(query).scalars()]


def segment_count(db: Database, segment: Segment, list_name: str) -> int:
    """How many of the list's subscribed, unsuppressed members the segment picks (`segments show --count`)."""
    with db.begin(read_only=True) as conn:
        return count_members(conn, segment, get_list(conn, list_name).id)


# --- describing -----------------------------------------------------------------------------------

_EVENT_TEXT = {"sent": ("was sent issue", ""), "delivered": ("had issue", " delivered"),
               "bounced": ("bounced on issue", ""), "complained": ("complained about issue", ""),
               "unsubscribed": ("unsubscribed through issue", "")}


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _shown_when(when: dt.date | dt.datetime) -> str:
    return when.isoformat() if isinstance(when, dt.datetime) else f"{when.isoformat()} (UTC)"


def _describe(rule: Rule, indent: str) -> list[str]:
    if isinstance(rule, (AllRule, AnyRule)):
        head = "all of:" if isinstance(rule, AllRule) else "any of:"
        lines = [indent + head]
        for inner in rule.rules:
            first, *rest = _describe(inner, indent + "    ")
            lines += [indent + "  - " + first.lstrip(), *rest]
        return lines
    if isinstance(rule, NotRule):
        first, *rest = _describe(rule.rule, indent + "    ")
        return [indent + "not: " + first.lstrip(), *rest]
    return [indent + _leaf(rule)]


def _leaf(rule: FieldRule | JoinedRule | EventRule) -> str:
    if isinstance(rule, FieldRule):
        if rule.op == "is":
            return f"field {rule.name} is {_quoted(rule.values[0])}"
        return f"field {rule.name} is one of {', '.join(_quoted(v) for v in rule.values)}"
    if isinstance(rule, JoinedRule):
        parts = [f"after {_shown_when(rule.after)}" if rule.after is not None else "",
                 f"before {_shown_when(rule.before)}" if rule.before is not None else ""]
        return "joined the list " + " and ".join(p for p in parts if p)
    before, after = _EVENT_TEXT[rule.kind]
    return f"{before} {rule.issue}{after}"
