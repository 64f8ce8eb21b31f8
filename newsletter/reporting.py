"""The human form of `newsletter report`: a table, one row per send; who may have missed it; who is in a state."""
from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any

COLUMNS = [("list", "list"), ("recipients", "recipients"), ("sent", "sent"), ("failed", "failed"),
           ("pending", "pending"), ("unknown", "unknown"), ("skipped", "skipped"), ("delivered", "delivered"),
           ("bounced_hard", "hard bounces"), ("bounced_soft", "soft bounces"), ("complained", "complaints"),
           ("unsubscribed", "unsubscribed")]
# The states of people who may not have the issue, and what each means for the sender.
MISSED = {
    "failed": "failed: refused for good (each with its reason); never retried by themselves",
    "unknown": "unknown: handed to SES or not, nobody knows yet; SES events settle them; "
               "`send --retry-unknown` resends the rest",
    "pending": "pending: not sent yet; running the same `newsletter send` again resumes",
}


def _cell(row: Mapping[str, Any], key: str) -> str:
    value = row[key]
    if key in ("delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed") and row["sent"]:
        return f"{value} ({value / row['sent']:.1%})"
    return str(value)


def _align(column: int, cell: str, width: int) -> str:
    return cell.ljust(width) if column == 0 else cell.rjust(width)


def report_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain columns (readable in a terminal, a log or an email); rates are against sent."""
    table = [[title for _, title in COLUMNS]] + [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(_align(i, cell, w) for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in table]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def who_missed_it(rows: Sequence[Mapping[str, Any]], slug: str) -> list[str]:
    """How many may not have the issue (failed + unknown + pending), and the commands that list them."""
    counts = {state: sum(row[state] for row in rows) for state in MISSED}
    total = sum(counts.values())
    if not total:
        return ["Everyone on the ledger was sent the issue or left before their turn."]
    parts = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines = [f"{total} {'person' if total == 1 else 'people'} may have missed this issue: {parts}."]
    if len(rows) > 1:
        lines += [f"  {row['list']}: " + ", ".join(f"{row[s]} {s}" for s in MISSED) for row in rows
                  if any(row[s] for s in MISSED)]
    lines.append("To see who:")
    lines += [f"  newsletter report {shlex.quote(slug)} --recipients {state}" for state, n in counts.items() if n]
    lines += [MISSED[state] for state, n in counts.items() if n]
    return lines


# --- report SLUG --recipients STATE (without --csv) --------------------------------------------------

RECIPIENT_COLUMNS = ("email", "list", "state", "reason", "message id", "updated")
_WIDEST = 48  # a longer cell overflows its column rather than widening every line
_SAMPLE = 500  # column widths are set from the first rows: the rest are streamed, never held


def recipients_table(people: Iterable[Any], show_address: Any = str) -> Iterator[str]:
    """Lines of a plain table of `mailer.reports.RecipientRow`s, streamed; `show_address` renders an email."""
    rows = (_recipient_cells(person, show_address) for person in people)
    first = list(islice(rows, _SAMPLE))
    if not first:
        return
    widths = [min(_WIDEST, max(len(title), *(len(r[i]) for r in first)))
              for i, title in enumerate(RECIPIENT_COLUMNS)]
    yield _line(RECIPIENT_COLUMNS, widths)
    yield "  ".join("-" * w for w in widths)
    for cells in chain(first, rows):
        yield _line(cells, widths)


def _recipient_cells(person: Any, show_address: Any) -> tuple[str, ...]:
    email = show_address(person.email) if person.email else "(forgotten)"
    cells = (email, person.list, person.state, person.reason, person.message_id, person.updated_at[:19])
    return tuple(_printable(c) for c in cells)


def _printable(text: str) -> str:
    """No control characters reach the terminal (an SES reason or an address could carry escapes)."""
    return "".join(c if c.isprintable() else " " for c in text)


def _line(cells: Iterable[str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
