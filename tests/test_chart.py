"""`report --chart` (newsletter/chart.py): a real send with SES events, drawn; what makes it readable checked.

The send is a real `newsletter send` (file transport) through the command line; its events are SES
notifications (the AWS documentation's examples in tests/fixtures/ses/) dated after each message's
ledger time and applied by mailer.take, as the poller and the webhook feed them. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from matplotlib.text import Text
from PIL import Image
from sqlalchemy import column, select, table

import mailer
import subscribers as subs
from mailer.reports import report, timeline
from mailer.schema import deliveries
from newsletter.chart import OVER, TICK_STEPS, draw_chart, make_figure, tick_step, title_of
from newsletter.errors import NewsletterError

from .conftest import FIXTURES, ISSUES

SLUG = "2021-01"
PEOPLE = [f"reader{i}@example.org" for i in range(9)]
HARD, ON_LIST, SOFT, COMPLAINS = PEOPLE[1], PEOPLE[2], PEOPLE[4], PEOPLE[6]
_people = table("subscribers", column("id"), column("email"))


# The same command-line and database fixtures as the report's tests.
from tests.test_report import clean_env, cli, db  # noqa: E402,F401


def _notification(name: str, email: str, message_id: str, sent: dt.datetime, after: dt.timedelta,
                  **fields: Any) -> str:
    payload = json.loads((FIXTURES / "ses" / name).read_text("utf-8"))
    kind = payload["notificationType"].lower()
    payload[kind].update(timestamp=_stamp(sent + after), **fields)
    payload["mail"].update(messageId=message_id, destination=[email], timestamp=_stamp(sent))
    return json.dumps(payload)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _bounce(email: str, mid: str, sent: dt.datetime, after: dt.timedelta, kind: str, subtype: str) -> str:
    person = {"emailAddress": email, "action": "failed", "status": "5.1.1" if kind == "Permanent" else "4.2.2",
              "diagnosticCode": "smtp; 550 5.1.1" if kind == "Permanent" else "smtp; 452 4.2.2"}
    return _notification("notification-bounce-dsn.json", email, mid, sent, after, bounceType=kind,
                         bounceSubType=subtype, feedbackId=str(uuid.uuid4()), bouncedRecipients=[person])


@pytest.fixture
def sent(cli, db, tmp_path: Path) -> list[dt.datetime]:
    """Nine people sent the issue for real; two hard bounces (one on SES's suppression list), a soft
    bounce minutes later, a complaint two hours later, the others delivered within seconds."""
    folder = tmp_path / "issues"
    folder.mkdir()
    shutil.copy(ISSUES / f"{SLUG}.yaml", folder / f"{SLUG}.yaml")
    shutil.copytree(ISSUES / SLUG, folder / SLUG)
    subs.create_list(db, "members")
    for email in PEOPLE:
        subs.add_subscriber(db, email, "members")
    result = cli("send", str(folder / f"{SLUG}.yaml"), "--list", "members", "--yes", "--rate", "10000", "--force")
    assert result.exit_code == 0 and "9 sent, 0 failed" in result.stdout, result.output
    with db.begin() as conn:
        rows = {e: (m, t if t.tzinfo else t.replace(tzinfo=dt.UTC)) for e, m, t in conn.execute(
            select(_people.c.email, deliveries.c.message_id, deliveries.c.sent_at)
            .select_from(deliveries.join(_people, _people.c.id == deliveries.c.subscriber_id)))}
    bodies = []
    for email in PEOPLE:
        mid, at = rows[email]
        if email == HARD:
            bodies.append(_bounce(email, mid, at, dt.timedelta(seconds=40), "Permanent", "General"))
        elif email == ON_LIST:
            bodies.append(_bounce(email, mid, at, dt.timedelta(seconds=2), "Permanent", "OnAccountSuppressionList"))
        elif email == SOFT:
            bodies.append(_bounce(email, mid, at, dt.timedelta(minutes=7), "Transient", "MailboxFull"))
        else:
            bodies.append(_notification("notification-delivery.json", email, mid, at, dt.timedelta(seconds=3),
                                        recipients=[email]))
        if email == COMPLAINS:
            bodies.append(_notification("notification-complaint-feedback.json", email, mid, at,
                                        dt.timedelta(hours=2), complainedRecipients=[{"emailAddress": email}],
                                        feedbackId=str(uuid.uuid4())))
    applied = mailer.take(db, bodies, mailer.Policy(), "test")
    assert applied is not None and not applied.errors and not applied.unattributed
    return sorted(t for _, t in rows.values())


def test_report_chart_writes_a_png(cli, sent, tmp_path):
    out = tmp_path / "chart.png"
    result = cli("report", SLUG, "--chart", str(out))
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] == 1100 and image.size[1] > 500
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".chart")] == []  # no temporary left


@pytest.fixture
def figure(db, sent):
    import matplotlib.pyplot as plt
    made = make_figure(timeline(db, SLUG), SLUG, report(db, SLUG))
    made.canvas.draw()
    yield made
    plt.close(made)


def _panels(figure) -> tuple[Any, Any]:
    [part] = figure.subfigs
    volume, trouble = part.axes
    return volume, trouble


def test_the_axes_count_whole_people_from_zero(figure):
    for ax in _panels(figure):
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_ylim()[0] == 0 and ax.get_ylabel() == "people"
    volume, trouble = _panels(figure)
    assert max(volume.get_yticks()) >= 9 and 0 < max(trouble.get_yticks()) <= 3


def test_one_time_axis_in_clock_time_labelled_once(figure, sent):
    volume, trouble = _panels(figure)
    assert volume.get_xlim() == trouble.get_xlim()  # shared
    assert [t.get_text() for t in volume.get_xticklabels() if t.get_visible() and t.get_text()] == []
    labels = [t.get_text() for t in trouble.get_xticklabels() if t.get_visible() and t.get_text()]
    assert len(labels) >= 3 and all(re.fullmatch(r"\d\d:\d\d", label) for label in labels), labels
    assert trouble.get_xlabel() == f"time (UTC), {sent[0]:%a %d %b %Y}"
    step = tick_step(dt.timedelta(hours=2)) / dt.timedelta(days=1)
    assert all(abs(t / step - round(t / step)) < 1e-6 for t in trouble.get_xticks())  # on round clock times


def test_single_events_are_points_and_every_series_is_named_with_its_count(figure):
    volume, trouble = _panels(figure)
    points = [len(line.get_xdata()) for line in trouble.get_lines() if line.get_marker() == "o"]
    assert sorted(points) == [1, 1, 2]  # the soft bounce, the complaint, the two hard bounces
    legend = [t.get_text() for ax in (volume, trouble) for t in ax.get_legend().get_texts()]
    assert legend == ["sent: 9", "delivered: 6", "hard bounces: 2", "soft bounces: 1", "complaints: 1"]


def test_the_title_has_the_sends_rates_as_ses_counts_them(figure, db):
    volume, _ = _panels(figure)
    # One of the two hard bounces is SES's own, to an address on its suppression list: not in its rate.
    assert volume.get_title(loc="left") == ("2021-01 → members: 9 sent, 6 delivered\n"
                                            "bounce rate 11.1% (over 5%), complaint rate 11.11% (over 0.1%)")
    [title] = [t for t in figure.findobj(Text) if t.get_text().startswith("2021-01 → members")]
    assert title.get_color() == OVER  # past SES's review limits: red
    without_reports = make_figure(timeline(db, SLUG), SLUG)
    try:
        assert "bounce rate 22.2%" in without_reports.subfigs[0].axes[0].get_title(loc="left")
    finally:
        import matplotlib.pyplot as plt
        plt.close(without_reports)


def test_a_clean_send_has_a_plain_title():
    series = {"sent": [0] * 200, "delivered": [0] * 199, "bounced_hard": [0], "complained": []}
    title, over = title_of("2021-01 -> members", series, None)
    assert title == "2021-01 → members: 200 sent, 199 delivered\nbounce rate 0.5%, complaint rate 0.00%"
    assert over is False


@pytest.mark.parametrize("span, step", [
    (dt.timedelta(seconds=4), dt.timedelta(seconds=1)),
    (dt.timedelta(minutes=13), dt.timedelta(minutes=2)),
    (dt.timedelta(hours=2), dt.timedelta(minutes=15)),
    (dt.timedelta(hours=26), dt.timedelta(hours=6)),
    (dt.timedelta(days=400), dt.timedelta(days=56)),
])
def test_time_ticks_fall_on_round_steps(span, step):
    assert tick_step(span) == step and span / tick_step(span) <= 8
    assert all(dt.timedelta(days=1) % s == dt.timedelta(0) for s in TICK_STEPS if s < dt.timedelta(days=1))


def test_a_send_with_no_events_yet_says_so_and_nothing_is_charted_without_a_send(tmp_path):
    now = dt.datetime(2026, 12, 6, 23, 58, tzinfo=dt.UTC)
    out = tmp_path / "c.png"
    draw_chart({"2021-01 -> members": {"sent": [now], "delivered": [], "bounced_hard": [], "bounced_soft": [],
                                       "complained": []}}, out, SLUG)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NewsletterError, match="no send of '2021-01' yet"):
        draw_chart({}, tmp_path / "d.png", SLUG)
    assert not (tmp_path / "d.png").exists()
