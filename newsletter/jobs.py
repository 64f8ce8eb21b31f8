"""The edge of sends as jobs: times and durations as people write them, how long a send takes, and a
segment file by name. What a worker makes of a due send is in worker.py."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import NewsletterError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, settings: Settings) -> dt.datetime:
    """ISO 8601; a time without an offset is in NEWSLETTER_TIMEZONE (design §12)."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise NewsletterError(f"--at {text!r} is not a time: write it as ISO 8601, e.g. 2026-12-01T09:00 "
                              f"(in {settings.timezone}) or 2026-12-01T09:00+00:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(settings.timezone))
    return when.astimezone(dt.UTC)


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `15m`, `2h`, `1d`."""
    found = _DURATION.match(text)
    if not found or int(found.group(1)) == 0:
        raise NewsletterError(f"--expires {text!r} is not a duration: write e.g. 90s, 15m, 2h or 1d")
    return dt.timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def estimate(to_send: int, rate: float, quota_left: float | None, max_24h: float | None) -> str:
    """How long a send takes at the account's rate, and over how many days when the quota is short."""
    seconds = to_send / rate if rate else 0
    text = f"about {_span(seconds)} at {rate:g} messages/s"
    if quota_left is not None and to_send > quota_left:
        per_day = max_24h if max_24h and max_24h > 0 else quota_left
        if per_day <= 0:
            return text + "; the SES 24-hour quota is used up now: it starts when the window has room"
        days = 1 + -(-(to_send - quota_left) // per_day)
        text += (f"; the SES 24-hour quota has room for {quota_left:,.0f} now, so it spreads over about "
                 f"{days:.0f} days (a worker resumes it as the window allows)")
    return text


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def load_segment(name: str) -> Any:
    """segments/NAME.yaml, as mailer.segments reads it."""
    from mailer.segments import find_segment
    return find_segment(Path("segments"), name)
