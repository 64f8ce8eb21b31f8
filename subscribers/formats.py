"""The exports of the tools people move from, each read into one shape (design §14).

A reader is made from a file's header. Called on a row's cells it returns a
Row (the address as written, name, custom fields, what the person is to be
here and why) or a Reject (why the row cannot be imported). Every reader
feeds the one import path (csv_import.py), which normalises the address,
applies the never-re-subscribe guard and writes. A reader only decides what
the tool's own status means here:

    subscribed | unconfirmed | unsubscribed | suppressed | skipped

A row saying someone left or was removed there is never rejected for
anything but its address: a date or an attribute that cannot be read is
dropped, not the row, since dropping the row would lose the fact that they
left, and a later file could then subscribe them.

Where each layout comes from: tests/fixtures/imports/SOURCES.md.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .csv_files import restore
from .db import as_utc
from .errors import ImportFailed
from .people import field_name, full_name

SUBSCRIBED, UNCONFIRMED, UNSUBSCRIBED = "subscribed", "unconfirmed", "unsubscribed"
SUPPRESSED, SKIPPED = "suppressed", "skipped"
PLAIN_STATUSES = (SUBSCRIBED, UNCONFIRMED, UNSUBSCRIBED)
EMAIL_COLUMNS = ("email", "email_address", "e-mail", "e-mail_address")
TIME_COLUMNS = ("subscribed_at", "unsubscribed_at")


@dataclass(slots=True)
class Row:
    email: str  # as written; csv_import normalises it
    name: str
    fields: dict[str, Any]
    status: str = SUBSCRIBED
    reason: str = ""  # why not subscribed, in words the summary groups by: "unsubscribed in Mailchimp"
    times: dict[str, dt.datetime] | None = None  # subscribed_at, unsubscribed_at where the file gives them
    # Set by the import: the normalised address, and whether an earlier batch had it already.
    address: Any = None
    repeat: bool = False


class Reject(NamedTuple):
    kind: str  # the summary groups by it: "invalid address", "unknown status"
    message: str  # what the rejects file says about this row


Reader = Callable[[list[str]], "Row | Reject"]


@dataclass
class Header:
    """The header row: each column's name in field form, the first of repeated names winning."""
    cells: list[str]
    names: list[str]
    index: dict[str, int]  # name -> its first column
    repeats: list[str]  # names written more than once, as first written

    @classmethod
    def of(cls, cells: list[str]) -> Header:
        names = [field_name(c.lstrip("\ufeff")) for c in cells]
        index: dict[str, int] = {}
        repeats = []
        for i, name in enumerate(names):
            if not name:
                continue
            if name in index:
                if cells[index[name]].strip() not in repeats:
                    repeats.append(cells[index[name]].strip())
            else:
                index[name] = i
        return cls(cells, names, index, repeats)

    def has(self, *names: str) -> bool:
        return all(n in self.index for n in names)

    def first(self, names: Iterable[str]) -> int | None:
        return next((self.index[n] for n in names if n in self.index), None)


@dataclass(frozen=True)
class Options:
    double_opt_in: bool  # of the list imported into: decides what "unconfirmed" there becomes here


@dataclass(frozen=True)
class Format:
    name: str
    label: str  # as the tool spells itself
    required: tuple[str, ...]  # columns an export of the tool always has; also what `auto` needs
    signature: tuple[str, ...]  # `auto` picks the format when any one of these is there too
    make: Callable[[Header, Options], Reader]

    def recognised(self, header: Header) -> list[str]:
        """The columns that say a file is this tool's export (empty: it is not)."""
        if not header.has(*self.required):
            return []
        found = [header.cells[header.index[n]].strip() for n in self.signature if n in header.index]
        return found if found or not self.signature else []


# --- the pieces every reader uses -------------------------------------------------------------------------

def _field_columns(header: Header, used: Iterable[str], dropped: Iterable[str] = ()) -> list[tuple[int, str]]:
    """Every other column, once (a repeated name's later columns are left out), becomes a custom field."""
    skip = {*used, *dropped}
    return [(i, name) for name, i in header.index.items() if name not in skip]


def _fields(cells: list[str], columns: list[tuple[int, str]]) -> dict[str, Any]:
    out = {}
    for i, key in columns:
        if value := cells[i].strip():
            # What our own exports neutralised (csv_files.neutralise) comes back as it was.
            out[key] = restore(value) if value[0] == "'" else value
    return out


def _cell(cells: list[str], i: int | None) -> str:
    if i is None:
        return ""
    value = cells[i].strip()
    return restore(value) if value[:1] == "'" else value


_GO_TIME = re.compile(r"^(\S+ \S+?)(?: ([+-]\d\d)(\d\d))?(?: [A-Z]{3,5})?$")


def parse_time(text: str) -> dt.datetime | None:
    """ISO 8601, or the forms the tools write (`2024-03-01 10:20:30`, Go's `… +0000 UTC`); naive is UTC."""
    text = text.strip()
    if not text:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    match = _GO_TIME.match(text)  # listmonk: time.Time.String(), "2024-03-01 10:20:30.123456 +0000 UTC"
    if match is None:
        return None
    stamp = match.group(1) + (f"{match.group(2)}:{match.group(3)}" if match.group(2) else "")
    try:
        return as_utc(dt.datetime.fromisoformat(stamp))
    except ValueError:
        return None


def _times(cells: list[str], columns: dict[str, int | None]) -> dict[str, dt.datetime] | None:
    """The dates a tool gives, where they can be read; one that cannot is left out, never the row."""
    out = {}
    for key, i in columns.items():
        if i is not None and (stamp := parse_time(cells[i])) is not None:
            out[key] = stamp
    return out or None


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("true", "t", "yes", "y", "1")


# --- plain: the round-1 format, and what `subscribers export` writes ---------------------------------------

def _plain(header: Header, options: Options) -> Reader:
    email = header.first(EMAIL_COLUMNS)
    assert email is not None  # required
    name, status = header.index.get("name"), header.index.get("status")
    times = {c: header.index[c] for c in TIME_COLUMNS if c in header.index}
    fields = _field_columns(header, (header.names[email], "name", "status", *TIME_COLUMNS))

    if status is None and not times:
        def simple(cells: list[str]) -> Row | Reject:  # the commonest file: no status, no dates
            values = _fields(cells, fields)
            return Row(cells[email], _cell(cells, name) or full_name("", values), values)
        return simple

    def read(cells: list[str]) -> Row | Reject:
        said = _cell(cells, status).lower()
        if said and said not in PLAIN_STATUSES:
            return Reject("unknown status", f"unknown status {said!r} (known: {', '.join(PLAIN_STATUSES)})")
        stamps: dict[str, dt.datetime] | None = None  # most files have no dates: no dict a row
        for key, i in times.items():
            if text := cells[i].strip():
                stamp = parse_time(text)
                if stamp is None:
                    return Reject("bad date", f"{key}: {text!r} is not an ISO date and time")
                stamps = {**(stamps or {}), key: stamp}
        values = _fields(cells, fields)
        return Row(cells[email], _cell(cells, name) or full_name("", values), values, said or SUBSCRIBED, "",
                   stamps)
    return read


# --- Mailchimp: the subscribed, unsubscribed and cleaned exports of an audience ----------------------------

# Mailchimp's own bookkeeping, not the audience's merge fields: ratings, IPs, places, ids, campaigns.
MAILCHIMP_OWN = ("email_type", "member_rating", "optin_time", "optin_ip", "confirm_time", "confirm_ip",
                 "latitude", "longitude", "gmtoff", "dstoff", "timezone", "cc", "region", "last_changed",
                 "leid", "euid", "notes", "unsub_time", "unsub_campaign_title", "unsub_campaign_id",
                 "unsub_reason", "unsub_reason_other", "clean_time", "clean_campaign_title", "clean_campaign_id")
MAILCHIMP_CLEANED = "cleaned in Mailchimp (bounced)"
MAILCHIMP_UNSUBSCRIBED = "unsubscribed in Mailchimp"


def _mailchimp(header: Header, options: Options) -> Reader:
    email, name = header.index["email_address"], header.index.get("name")  # older audiences: one Name field
    cleaned, left = header.index.get("clean_time"), header.index.get("unsub_time")
    times = {"subscribed_at": header.first(("confirm_time", "optin_time")), "unsubscribed_at": left}
    fields = _field_columns(header, ("email_address", "name"), MAILCHIMP_OWN)

    def status(cells: list[str]) -> tuple[str, str]:
        # Each export is one kind; a file joining kinds says it per row. A row of such a file
        # with neither date is taken as having left: never subscribed on a guess.
        if cleaned is not None and (cells[cleaned].strip() or left is None or not cells[left].strip()):
            return SUPPRESSED, MAILCHIMP_CLEANED
        if left is not None:
            return UNSUBSCRIBED, MAILCHIMP_UNSUBSCRIBED
        return SUBSCRIBED, ""

    def read(cells: list[str]) -> Row | Reject:
        values = _fields(cells, fields)
        return Row(cells[email], full_name(_cell(cells, name), values), values, *status(cells), _times(cells, times))
    return read


# --- listmonk: Subscribers > Export -------------------------------------------------------------------------

LISTMONK_STATUSES = {
    "enabled": (SUBSCRIBED, ""),
    # Disabled by an admin there: not to be mailed, so not subscribed here, and not put back by a later file.
    "disabled": (UNSUBSCRIBED, "disabled in listmonk"),
    "blocklisted": (SUPPRESSED, "blocklisted in listmonk"),
}


def _listmonk(header: Header, options: Options) -> Reader:
    email, name, status = header.index["email"], header.index.get("name"), header.index["status"]
    attributes = header.index.get("attributes")
    times = {"subscribed_at": header.index.get("created_at")}
    fields = _field_columns(header, ("email", "name", "status", "attributes"), ("uuid", "created_at", "updated_at"))

    def read(cells: list[str]) -> Row | Reject:
        said = cells[status].strip().lower()
        if said not in LISTMONK_STATUSES:
            return Reject("unknown status", f"unknown listmonk status {said!r} "
                                            f"(known: {', '.join(LISTMONK_STATUSES)})")
        values = _fields(cells, fields)
        if attributes is not None:
            values.update(attributes_as_fields(cells[attributes]))
        return Row(cells[email], _cell(cells, name), values, *LISTMONK_STATUSES[said], _times(cells, times))
    return read


def attributes_as_fields(text: str) -> dict[str, Any]:
    """listmonk's `attributes` (a JSON object) as fields: its keys in field form, strings kept as they are.

    Anything else (not JSON, not an object) is kept whole as the field `attributes`, not lost.
    """
    text = text.strip()
    if not text or text == "{}":
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {"attributes": text}
    out = {}
    for key, item in value.items():
        if (name := field_name(str(key))) and item not in ("", None):
            out[name] = item if isinstance(item, (str, dict, list)) else json.dumps(item)
    return out


# --- Sendy: View all subscribers > Export (Sendy 4 onward writes a header row) ------------------------------

SENDY_OWN = ("joined", "last_activity", "added_via", "opt-in_method", "ip_address", "country", "country_code",
             "signed_up_from", "gdpr")


def _sendy(header: Header, options: Options) -> Reader:
    email, name, status = header.index["email"], header.index.get("name"), header.index["status"]
    fields = _field_columns(header, ("email", "name", "status"), SENDY_OWN)
    unconfirmed = (UNCONFIRMED, "unconfirmed in Sendy") if options.double_opt_in else \
        (SKIPPED, "unconfirmed in Sendy (the list is single opt-in)")
    statuses = {
        "active": (SUBSCRIBED, ""),
        "unsubscribed": (UNSUBSCRIBED, "unsubscribed in Sendy"),
        "bounced": (SUPPRESSED, "bounced in Sendy"),
        "marked as spam": (SUPPRESSED, "marked as spam in Sendy"),
        "unconfirmed": unconfirmed,
    }

    def read(cells: list[str]) -> Row | Reject:
        said = " ".join(cells[status].split()).lower()
        if said not in statuses:
            return Reject("unknown status", f"unknown Sendy status {cells[status].strip()!r} "
                                            "(known: Active, Unsubscribed, Bounced, Marked as spam, Unconfirmed)")
        return Row(cells[email], _cell(cells, name), _fields(cells, fields), *statuses[said])
    return read


# --- Substack: Subscribers > Export ---------------------------------------------------------------------------

# Substack puts a placeholder address in place of someone who asked to be deleted.
SUBSTACK_DELETED = "@deletion-request.substack.com"
SUBSTACK_OWN = ("stripe_customer_id", "stripe_connected_customer_id")


def _substack(header: Header, options: Options) -> Reader:
    email, disabled = header.index["email"], header.index.get("email_disabled")
    name = header.index.get("name")
    times = {"subscribed_at": header.index.get("created_at")}
    fields = _field_columns(header, ("email", "name", "email_disabled", "created_at"), SUBSTACK_OWN)

    def read(cells: list[str]) -> Row | Reject:
        address = cells[email]
        values = _fields(cells, fields)
        stamps = _times(cells, times)
        if address.strip().lower().endswith(SUBSTACK_DELETED):
            return Row(address, "", {}, SKIPPED, "deletion requested in Substack")
        if disabled is not None and _truthy(cells[disabled]):
            return Row(address, _cell(cells, name), values, UNSUBSCRIBED, "email turned off in Substack", stamps)
        # A free reader (active_subscription false or empty) is as subscribed as a paying one.
        return Row(address, _cell(cells, name), values, SUBSCRIBED, "", stamps)
    return read


FORMATS = {f.name: f for f in (
    Format("mailchimp", "Mailchimp", ("email_address",),
           ("member_rating", "optin_time", "confirm_time", "leid", "euid", "unsub_time", "clean_time"), _mailchimp),
    Format("listmonk", "listmonk", ("email", "status"), ("uuid", "attributes"), _listmonk),
    Format("sendy", "Sendy", ("email", "status"),
           ("joined", "last_activity", "opt-in_method", "signed_up_from", "added_via", "gdpr"), _sendy),
    Format("substack", "Substack", ("email",), ("email_disabled", "active_subscription"), _substack),
)}
PLAIN = Format("plain", "plain CSV", (), (), _plain)
NAMES = ("auto", "plain", *FORMATS)


@dataclass(frozen=True)
class Choice:
    format: Format
    why: str  # for the summary: how it was chosen


def choose(header: Header, wanted: str, path: Any) -> Choice:
    """The format to read the file with; ImportFailed (nothing imported) when it is not the one asked for."""
    if wanted not in NAMES:
        raise ImportFailed(f"unknown format {wanted!r} (known: {', '.join(NAMES)})")
    found = [(f, cols) for f in FORMATS.values() if (cols := f.recognised(header))]
    if wanted == "auto":
        if found:
            chosen, columns = found[0]
            return Choice(chosen, f"recognised by its columns {', '.join(columns)}")
        _need_email(header, path)
        return Choice(PLAIN, "no other tool's columns found")
    if wanted == "plain":
        if found:
            other, columns = found[0]
            raise ImportFailed(f"{path}: this looks like a {other.label} export (columns {', '.join(columns)}), "
                               f"not a plain CSV; import it with --format {other.name} (or auto), so that "
                               f"{other.label}'s statuses are kept")
        _need_email(header, path)
        return Choice(PLAIN, "as asked")
    chosen = FORMATS[wanted]
    missing = [n for n in chosen.required if n not in header.index]
    if missing or not chosen.recognised(header):
        needs = ", ".join(chosen.required + ((f"one of {', '.join(chosen.signature)}",) if chosen.signature else ()))
        others = [f.name for f, _ in found if f is not chosen]
        hint = f"; it looks like a {FORMATS[others[0]].label} export" if others else ""
        raise ImportFailed(f"{path}: not a {chosen.label} export: it needs the columns {needs} "
                           f"(it has: {', '.join(c.strip() for c in header.cells)}){hint}")
    return Choice(chosen, "as asked")


def _need_email(header: Header, path: Any) -> None:
    if header.first(EMAIL_COLUMNS) is None:
        raise ImportFailed(f"{path}: no email column (columns: {', '.join(c.strip() for c in header.cells)})")
