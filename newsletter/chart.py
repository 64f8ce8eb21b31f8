"""`report --chart`: messages sent, delivered, bounced and complained about, over time.

Read at a glance, so: per send, a title with its counts and its bounce and complaint rates (red when
past what makes SES review the account); two panels on one time axis in UTC clock time, labelled
once, under the lower panel; whole numbers of people on every axis, from 0; every line carried on
to the end so its last level can be read against the others; a marker on each event where there
are few, so a single bounce is a visible point rather than a line of no length.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import NewsletterError

# Two panels per send: volumes, then trouble, whose counts would vanish beside the volumes.
# (series, label, colour, line width): sent is drawn wider, so that where delivered covers it
# (everyone delivered) both still show.
VOLUME = [("sent", "sent", "#1f4e79", 3.0), ("delivered", "delivered", "#2e7d32", 1.6)]
TROUBLE = [("bounced_hard", "hard bounces", "#c62828", 1.8), ("bounced_soft", "soft bounces", "#ef6c00", 1.8),
           ("complained", "complaints", "#6a1b9a", 1.8)]
MARKERS_UP_TO = 20  # events in a series drawn with a marker each; past that, markers only blur the line
OVER = "#b71c1c"  # a title over SES's review limits


def draw_chart(timelines: dict[str, dict[str, list[Any]]], out: Path, slug: str,
               reports: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Per send, cumulative recipients against time, written atomically as a PNG.

    `reports` are the rows of `mailer.report` for the same sends, in the same order: their rates are
    SES's (suppression-list bounces left out). Without them the rates are read from the timelines.
    """
    figure = make_figure(timelines, slug, reports)
    import matplotlib.pyplot as plt

    tmp = out.with_name(f".{out.name}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110)
        tmp.replace(out)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)


def make_figure(timelines: dict[str, dict[str, list[Any]]], slug: str,
                reports: Sequence[Mapping[str, Any]] | None = None) -> Any:
    """The chart as a matplotlib Figure: per send a subfigure of two panels (volumes, then trouble)."""
    if not timelines:
        raise NewsletterError(f"no send of {slug!r} yet: nothing to chart")
    import matplotlib
    matplotlib.use("Agg")  # no screen here, nor on a server
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(10, 5.4 * len(timelines)), layout="constrained")
    # A subfigure per send: its title and its time axis take room in it alone.
    parts = figure.subfigures(len(timelines), 1, hspace=0.06, squeeze=False)[:, 0]
    for i, (part, (name, series)) in enumerate(zip(parts, timelines.items(), strict=True)):
        volume, trouble = part.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        report = reports[i] if reports is not None and i < len(reports) else None
        _send(volume, trouble, name, _utc(series), report)
    return figure


def _utc(series: dict[str, list[Any]]) -> dict[str, list[dt.datetime]]:
    # SQLite hands back naive datetimes; they are UTC, as everything the ledger stores.
    return {key: sorted(t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in times if t is not None)
            for key, times in series.items()}


def _send(volume: Any, trouble: Any, name: str, series: dict[str, list[dt.datetime]],
          report: Mapping[str, Any] | None) -> None:
    start, end = _span(series)
    _panel(volume, series, VOLUME, end, "nothing sent yet")
    _panel(trouble, series, TROUBLE, end, "no bounces or complaints")
    title, over = title_of(name, series, report)
    volume.set_title(title, loc="left", fontweight="bold", fontsize=11, color=OVER if over else "black")
    _time_axis(volume, trouble, start, end)


def _span(series: dict[str, list[dt.datetime]]) -> tuple[dt.datetime, dt.datetime]:
    times = [t for ts in series.values() for t in ts]
    if not times:
        now = dt.datetime.now(dt.UTC)
        return now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=1)
    first, last = min(times), max(times)
    pad = max((last - first) * 0.04, dt.timedelta(seconds=1)) if last > first else dt.timedelta(seconds=30)
    return first - pad, last + pad


def title_of(name: str, series: Mapping[str, Sequence[Any]], report: Mapping[str, Any] | None) -> tuple[str, bool]:
    """The send, its counts and its rates; and whether a rate is past SES's review limit."""
    from mailer.reports import BOUNCE_LIMIT, COMPLAINT_LIMIT, rates

    row = dict(report) if report is not None else {key: len(series.get(key, ())) for key, *_ in VOLUME + TROUBLE}
    bounce, complaint = rates(report if isinstance(report, dict) else row)  # a SendReport keeps rated_bounces
    over = bounce > BOUNCE_LIMIT or complaint > COMPLAINT_LIMIT
    counts = f"{row['sent']:,} sent, {row['delivered']:,} delivered"
    flags = (f"bounce rate {bounce:.1%}{' (over 5%)' if bounce > BOUNCE_LIMIT else ''}, "
             f"complaint rate {complaint:.2%}{' (over 0.1%)' if complaint > COMPLAINT_LIMIT else ''}")
    return f"{name.replace(' -> ', ' → ')}: {counts}\n{flags}", over


def _panel(ax: Any, series: dict[str, list[dt.datetime]], lines: list[tuple[str, str, str, float]], end: dt.datetime,
           empty: str) -> None:
    from matplotlib.ticker import MaxNLocator

    top = 0
    for key, label, colour, width in lines:
        times = series.get(key, [])
        if not times:
            continue
        counts = list(range(1, len(times) + 1))
        # From 0 before the first event, and on to the end of the send's time so every level reads
        # against the others.
        xs, ys = [times[0], *times, end], [0, *counts, counts[-1]]
        ax.step(xs, ys, where="post", label=f"{label}: {len(times):,}", color=colour, linewidth=width)
        if len(times) <= MARKERS_UP_TO:
            ax.plot(times, counts, linestyle="none", marker="o", markersize=4.5, color=colour)
        top = max(top, len(times))
    ax.set_ylabel("people")
    ax.grid(True, alpha=0.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=2))  # people come whole
    ax.set_ylim(0, max(top, 1) * 1.12 + 0.2)
    if top:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside: it hides no point
    else:
        ax.set_yticks([0, 1])
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="#555555")


def _time_axis(volume: Any, trouble: Any, start: dt.datetime, end: dt.datetime) -> None:
    """One axis of clock time (UTC) for both panels, labelled once, under the lower one."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    volume.set_xlim(start, end)
    step = tick_step(end - start)
    spans_days = start.date() != end.date()
    pattern = "%d %b %H:%M" if spans_days else "%H:%M:%S" if step < dt.timedelta(minutes=1) else "%H:%M"
    # Matplotlib's dates are days since 1970-01-01 UTC: multiples of a step that divides a day fall
    # on round clock times.
    trouble.xaxis.set_major_locator(MultipleLocator(step / dt.timedelta(days=1)))
    trouble.xaxis.set_major_formatter(FuncFormatter(lambda x, _: mdates.num2date(x, tz=dt.UTC).strftime(pattern)))
    volume.tick_params(labelbottom=False)
    day = start.strftime("%a %d %b %Y") if not spans_days else f"{start:%d %b} – {end:%d %b %Y}"
    trouble.set_xlabel(f"time (UTC), {day}")


# Steps between time ticks: each divides the next larger unit, so ticks fall on round clock times.
TICK_STEPS = [dt.timedelta(seconds=s) for s in (1, 2, 5, 10, 15, 30)] + \
    [dt.timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30)] + \
    [dt.timedelta(hours=h) for h in (1, 2, 3, 6, 12)] + [dt.timedelta(days=d) for d in (1, 2, 7, 14, 28)]


def tick_step(span: dt.timedelta, most: int = 8) -> dt.timedelta:
    """The smallest round step that puts at most `most` ticks on the span."""
    longest = TICK_STEPS[-1]
    return next((step for step in TICK_STEPS if span / step <= most), longest * math.ceil(span / (most * longest)))


__all__ = ["TICK_STEPS", "draw_chart", "make_figure", "tick_step", "title_of"]
