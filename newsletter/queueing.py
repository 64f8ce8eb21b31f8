"""Sends handed to a worker (design §12): `send --at` and the console's "Send", one path for both.

Neither sends anything: they check and build the issue as `send` does (checked_render), freeze
nothing, and leave a `scheduled` send that `newsletter worker` (or `serve --with-worker`) starts at
its time. "Now" is a `queued` send (design §12), unless it has an expiry window: then it is one
scheduled for now, so the window works for it as for a later one.
Also the console's test send, through the same calls as `test-send`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import NewsletterError


@dataclass(frozen=True)
class Scheduled:
    send_id: int
    at: dt.datetime  # UTC
    expires_at: dt.datetime | None  # UTC; a worker later than this sends nothing


@dataclass(frozen=True)
class Planned:
    """What a send of an issue would do, before anything is written."""

    rendered: Any  # components.RenderedIssue
    plan: Any  # mailer.Plan: the recipient count and the list's members by status


def window(settings: Settings, at: str | None, expires: str | None,
           now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime | None]:
    """When a send is due (a time as people write it, or now) and the end of its window."""
    from .jobs import parse_duration, parse_when
    when = parse_when(at, settings) if at else (now or dt.datetime.now(dt.UTC))
    return when, (when + parse_duration(expires) if expires else None)


def schedule_rendered(settings: Settings, db: Any, plan: Any, rendered: Any, issue_path: Path, at: str | None,
                      expires: str | None, force: bool) -> Scheduled:
    """Make the send of a built, checked issue wait for a worker (at `at`, or now)."""
    from mailer import schedule_issue
    when, until = window(settings, at, expires)
    send_id = schedule_issue(db, plan, rendered, when, until, str(issue_path.resolve()), force=force,
                             queued=at is None and until is None)
    return Scheduled(send_id, when, until)


def plan_issue(settings: Settings, db: Any, issue_path: Path, list_name: str, segment_name: str | None,
               force: bool) -> Planned:
    """Build and check the issue as `send` does, and plan its send to the list (or segment)."""
    from mailer import plan_send

    from .jobs import load_segment
    from .sending import checked_render
    rendered = checked_render(issue_path, settings, force)
    segment = load_segment(segment_name) if segment_name else None
    return Planned(rendered, plan_send(db, rendered.slug, list_name, segment))


def unusable_base_url(settings: Settings) -> str | None:
    """Why a worker would refuse every send with this base URL (`send`'s rule), or None.

    A worker has no --force: what the ses transport refuses, it refuses when it starts the send.
    """
    from .sending import checked_base_url
    return checked_base_url(settings, True)


def queue_send(settings: Settings, db: Any, issue_path: Path, list_name: str, segment_name: str | None,
               at: str | None, expires: str | None, force: bool) -> tuple[Scheduled, Planned]:
    """Everything `send --at` does before it returns: refusals first, then the scheduled send."""
    from .sending import require
    problem = unusable_base_url(settings)
    if problem is not None:
        raise NewsletterError(problem)
    require(settings, "from_address", "secret")
    window(settings, at, expires)  # a bad time or duration is refused before the issue is built
    planned = plan_issue(settings, db, issue_path, list_name, segment_name, force)
    return schedule_rendered(settings, db, planned.plan, planned.rendered, issue_path, at, expires,
                             force), planned


def accepted_render(settings: Settings, issue_path: Path, accepted: str | None) -> Any:
    """A worker's build of a send's issue: checked as `send` checks it, unless it is the very email
    the send was scheduled (or started) with. That one was checked then, or sent anyway on purpose
    (`--force`, the console's "Send anyway"); a worker has no --force of its own to repeat it."""
    from components import load_issue
    from mailer import content_hash

    from .build import render_configured
    from .sending import checked_render
    if accepted is not None:
        rendered = render_configured(load_issue(issue_path), settings)
        if content_hash(rendered) == accepted:
            return rendered
    return checked_render(issue_path, settings, False)


def send_estimate(settings: Settings, sender: Any, to_send: int, rate: float | None = None) -> str:
    """How long the send will take at the account's rate and quota (design §12), as `send` says it."""
    from .jobs import estimate
    from .wiring import pace
    try:
        per_second, quota_left = pace(settings, rate, sender)
    except Exception as exc:  # noqa: BLE001  (SES unreachable: the send can still be queued)
        return f"unknown (cannot ask SES for its rate: {exc})"
    return estimate(to_send, per_second, quota_left, None)


@dataclass(frozen=True)
class Proofs:
    sent: list[tuple[str, str]]  # (address, message id) each
    warning: str | None  # the base URL is not one SES mail may carry (sent anyway: forced)


def send_test(settings: Settings, sender: Any, issue_path: Path, addresses: list[str], force: bool) -> Proofs:
    """`test-send`: proofs of the issue to any address, outside the ledger."""
    from mailer import MessageTemplate, send_proofs
    from subscribers import normalise

    from .sending import checked_base_url, checked_render, require
    from .wiring import envelope, tokens
    warning = checked_base_url(settings, force)
    require(settings, "from_address", "secret")
    targets = [normalise(a).email for a in addresses]
    rendered = checked_render(issue_path, settings, force)
    ids = send_proofs(MessageTemplate(rendered, envelope(settings, "proofs")), sender,
                      tokens(settings), settings.base_url, targets)
    return Proofs(list(zip(targets, ids, strict=True)), warning)
