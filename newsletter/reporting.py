"""The human form of `newsletter report`: a table, one row per send."""
from __future__ import annotations

from typing import Any

COLUMNS = [("list", "list"), ("recipients", "recipients"), ("sent", "sent"), ("failed", "failed"),
           ("pending", "pending"), ("delivered", "delivered"), ("bounced_hard", "hard bounces"),
           ("bounced_soft", "soft bounces"), ("complained", "complaints"), ("unsubscribed", "unsubscribed")]


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key in ("delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed") and row["sent"]:
        return f"{value} ({value / row['sent']:.1%})"
    return str(value)


def _align(column: int, cell: str, width: int) -> str:
    return cell.ljust(width) if column == 0 else cell.rjust(width)


def report_table(rows: list[dict[str, Any]]) -> str:
    """Plain columns (readable in a terminal, a log or an email); rates are against sent."""
    table = [[title for _, title in COLUMNS]] + [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(_align(i, cell, w) for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in table]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
