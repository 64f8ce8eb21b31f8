"""`report --chart`: messages sent, delivered, bounced and complained about, over time."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .errors import NewsletterError

# Two panels per send: volumes, then trouble, whose counts would vanish beside the volumes.
VOLUME = [("sent", "sent", "#1f4e79"), ("delivered", "delivered", "#2e7d32")]
TROUBLE = [("bounced_hard", "hard bounces", "#c62828"), ("bounced_soft", "soft bounces", "#ef6c00"),
           ("complained", "complaints", "#6a1b9a")]


def draw_chart(timelines: dict[str, dict[str, list[Any]]], out: Path, slug: str) -> None:
    """Per send, cumulative recipients against time (a shared time axis), written atomically as a PNG."""
    if not timelines:
        raise NewsletterError(f"no send of {slug!r} yet: nothing to chart")
    import matplotlib
    matplotlib.use("Agg")  # no screen here, nor on a server
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2 * len(timelines), 1, figsize=(9, 5.2 * len(timelines)), squeeze=False,
                                gridspec_kw={"height_ratios": [3, 2] * len(timelines)})
    for i, (title, series) in enumerate(timelines.items()):
        volume, trouble = axes[2 * i, 0], axes[2 * i + 1, 0]
        trouble.sharex(volume)
        _panel(volume, series, VOLUME, "nothing sent yet")
        _panel(trouble, series, TROUBLE, "no bounces or complaints")
        volume.set_title(title, loc="left", fontweight="bold")
        for ax in (volume, trouble):
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    figure.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110)
        tmp.replace(out)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)


def _panel(ax: Any, series: dict[str, list[Any]], lines: list[tuple[str, str, str]], empty: str) -> None:
    for key, label, colour in lines:
        times = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in series.get(key, []) if t is not None]
        if times:
            ax.step(times, range(1, len(times) + 1), where="post", label=f"{label} ({len(times)})", color=colour)
    ax.set_ylabel("recipients")
    ax.grid(True, alpha=0.3)
    ax.yaxis.get_major_locator().set_params(integer=True)  # people come whole
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=False)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="#666666")
