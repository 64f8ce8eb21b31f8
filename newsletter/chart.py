"""`report --chart`: messages sent, delivered, bounced and complained about, over time."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .errors import NewsletterError

SERIES = [("sent", "sent", "#1f4e79"), ("delivered", "delivered", "#2e7d32"),
          ("bounced_hard", "hard bounces", "#c62828"), ("bounced_soft", "soft bounces", "#ef6c00"),
          ("complained", "complaints", "#6a1b9a")]


def draw_chart(timelines: dict[str, dict[str, list[Any]]], out: Path, slug: str) -> None:
    """One panel per send: cumulative counts against time, written atomically as a PNG."""
    if not timelines:
        raise NewsletterError(f"no send of {slug!r} yet: nothing to chart")
    import matplotlib
    matplotlib.use("Agg")  # no screen here, nor on a server
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(timelines), 1, figsize=(9, 3.6 * len(timelines)), squeeze=False)
    for ax, (title, series) in zip(axes[:, 0], timelines.items(), strict=True):
        _panel(ax, title, series)
    figure.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110)
        tmp.replace(out)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)


def _panel(ax: Any, title: str, series: dict[str, list[Any]]) -> None:
    for key, label, colour in SERIES:
        times = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in series.get(key, []) if t is not None]
        if times:
            ax.step(times, range(1, len(times) + 1), where="post", label=f"{label} ({len(times)})", color=colour)
    ax.set_title(title, loc="left")
    ax.set_ylabel("recipients")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=False)
    else:
        ax.text(0.5, 0.5, "nothing sent yet", ha="center", va="center", transform=ax.transAxes)
    ax.figure.autofmt_xdate()
