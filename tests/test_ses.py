"""Sending through SES, against moto's server over HTTP (a separate process), with a fault proxy.

Design §6: SES v2 SendEmail with Content.Raw; the rate from the account unless configured;
throttling retried with backoff; a permanent rejection fails one recipient only; a paused
account stops the send cleanly and resumably; message tags name the send and the subscriber.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from tests import ses_peer
from tests.ses_peer import (
    FROM,
    ISSUE,
    SECRET,
    FaultProxy,
    MotoServer,
    aws_env,
    cli_env,
    ledger,
    newsletter,
    parse,
    parts,
    subscriber_ids,
    to_address,
    write_subscribers,
)

# The SES peer's fixtures, used by name.
moto, ses, fault_proxy = ses_peer.moto, ses_peer.ses, ses_peer.fault_proxy

BASE_URL = "https://news.example.org"  # send through ses refuses a loopback or plain-http base URL


@pytest.fixture(scope="module")
def rendered() -> Any:
    """The example issue, rendered once (as `send` does once per send)."""
    from newsletter.config import Settings
    from newsletter.sending import checked_render
    return checked_render(ISSUE, Settings(), False)


@dataclass
class Send:
    db: Any
    send_id: int
    addresses: list[str]
    template: Any

    def run(self, **options: Any) -> Any:
        from mailer import run_send
        from mailer.ses import SesTransport
        from subscribers import Tokens
        options.setdefault("rate", 1000.0)
        options.setdefault("sleep", lambda s: None)
        return run_send(self.db, self.send_id, self.template, SesTransport(), Tokens(SECRET), BASE_URL,
                        **options)

    def rows(self) -> dict[str, dict[str, Any]]:
        """email -> its deliveries row."""
        return {r["email"]: r for r in ledger(str(self.db.engine.url.render_as_string(hide_password=False)))}

    def state(self) -> str:
        from sqlalchemy import select

        from mailer.schema import sends
        with self.db.begin() as conn:
            return str(conn.execute(select(sends.c.state).where(sends.c.id == self.send_id)).scalar_one())


@pytest.fixture
def make_send(db_url: str, tmp_path: Path, rendered: Any):
    """A list of `count` subscribers and a started send of the example issue to it."""
    import mailer
    from mailer import MessageTemplate
    from mailer.sending import plan_send, start_send
    from newsletter.config import Settings
    from newsletter.wiring import envelope
    from subscribers import create_list, import_csv, open_database

    opened = []

    def make(count: int) -> Send:
        db = open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
        opened.append(db)
        create_list(db, "news")
        addresses = write_subscribers(tmp_path / "people.csv", count)
        assert import_csv(db, tmp_path / "people.csv", "news").rejected == 0
        send_id = start_send(db, plan_send(db, rendered.slug, "news"), rendered.subject)
        template = MessageTemplate(rendered, envelope(Settings(from_address=FROM), "news"))
        return Send(db, send_id, addresses, template)

    yield make
    for db in opened:
        db.dispose()


def by_recipient(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """moto's raw messages grouped by the To header's address."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        out.setdefault(to_address(parse(m["raw_data"])), []).append(m)
    return out


# --- the account's quota ----------------------------------------------------------------------------


def test_quota_falls_back_to_v1_send_quota(ses: MotoServer) -> None:
    from botocore.exceptions import ClientError

    from mailer.ses import SesTransport
    from newsletter.config import Settings
    from newsletter.wiring import pace

    with pytest.raises(ClientError) as info:  # the premise: moto has no v2 GetAccount
        ses.client().get_account()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    transport = SesTransport()
    quota = transport.quota()
    assert (quota.max_rate, quota.max_24h, quota.sent_24h) == (1.0, 200.0, 0.0)
    assert quota.remaining == 200.0
    # The rate: --rate, else NEWSLETTER_SES_MAX_RATE, else the account's; the quota left is the account's.
    assert pace(Settings(transport="ses"), None, transport) == (1.0, 200.0)
    assert pace(Settings(transport="ses", ses_max_rate=50.0), None, transport) == (50.0, 200.0)
    assert pace(Settings(transport="ses", ses_max_rate=50.0), 7.0, transport) == (7.0, 200.0)


# --- the real command line, end to end --------------------------------------------------------------


def test_cli_send_through_ses_end_to_end(ses: MotoServer, tmp_path: Path) -> None:
    from subscribers import Tokens

    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    ses.create_configuration_set("newsletter-events")
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_MAX_RATE="50", NEWSLETTER_BASE_URL=BASE_URL,
                  NEWSLETTER_SES_CONFIGURATION_SET="newsletter-events", **aws_env(ses.url))
    addresses = write_subscribers(tmp_path / "people.csv", 10)
    newsletter(["lists", "create", "news"], env, tmp_path)
    newsletter(["subscribers", "import", str(tmp_path / "people.csv"), "--list", "news"], env, tmp_path)

    done = newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    assert "Sending at up to 50 messages/s" in done.stdout and "through ses" in done.stdout
    assert "Done: 10 sent, 0 failed, 0 skipped, 0 unknown." in done.stdout

    messages = ses.raw_messages()
    assert len(messages) == 10
    grouped = by_recipient(messages)
    assert sorted(grouped) == addresses and all(len(v) == 1 for v in grouped.values())
    ids = subscriber_ids(database_url)
    tokens = Tokens(SECRET)
    urls = set()
    for address, [accepted] in grouped.items():
        n = addresses.index(address) + 1
        # moto lists the destinations (twice, as it counts them): only this subscriber
        assert {parseaddr(d)[1] for d in accepted["destinations"]} == {address}
        message = parse(accepted["raw_data"])
        assert message["From"] == FROM
        assert message["Subject"] == f"First{n:03d}, your January news is here"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == "<news.example.org>"
        assert message["Feedback-ID"] == "2021-01:news:newsletter:example.org"  # Gmail's feedback loop
        match = re.fullmatch(rf"<{re.escape(BASE_URL)}/u/([A-Za-z0-9_.-]+)>", message["List-Unsubscribe"])
        assert match, message["List-Unsubscribe"]
        target = tokens.read_unsubscribe(match.group(1))
        assert target.subscriber_id == ids[address]
        url = match.group(0)[1:-1]
        urls.add(url)
        text, html = parts(message)
        assert f"Dear First{n:03d}," in text and f"Town{n:03d}" in text
        assert f"Town{n:03d}" in html
        assert url in html and url in text  # the footer link is the header's URL
        for other in range(1, 11):  # nobody else's merge fields leaked in
            if other != n:
                assert f"First{other:03d}" not in text
    assert len(urls) == 10

    rows = ledger(database_url)
    assert len(rows) == 10 and {r["state"] for r in rows} == {"sent"}
    assert {r["email"]: r["message_id"] for r in rows} == {a: grouped[a][0]["id"] for a in addresses}

    again = newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    assert "Nothing to send." in again.stdout
    assert len(ses.raw_messages()) == 10
    assert [r["state"] for r in ledger(database_url)] == ["sent"] * 10


def test_cli_tags_name_the_send_and_the_subscriber(fault_proxy: FaultProxy, ses: MotoServer,
                                                   tmp_path: Path) -> None:
    """EmailTags and ConfigurationSetName as SES receives them (moto does not keep them: the proxy does)."""
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    ses.create_configuration_set("newsletter-events")
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_MAX_RATE="50", NEWSLETTER_BASE_URL=BASE_URL,
                  NEWSLETTER_SES_CONFIGURATION_SET="newsletter-events", **aws_env(fault_proxy.url))
    addresses = write_subscribers(tmp_path / "people.csv", 6)
    newsletter(["lists", "create", "news"], env, tmp_path)
    newsletter(["subscribers", "import", str(tmp_path / "people.csv"), "--list", "news"], env, tmp_path)
    newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)

    calls = fault_proxy.calls
    assert sorted(c.to for c in calls) == addresses
    rows = {r["email"]: r for r in ledger(database_url)}
    for call in calls:
        row = rows[call.to]
        assert call.body.get("ConfigurationSetName") == "newsletter-events"
        assert call.tags == {"send": "2021-01_news", "send_id": str(row["send_id"]),
                             "delivery_id": str(row["id"]), "subscriber_id": str(row["subscriber_id"])}
        for name, value in call.tags.items():  # SES allows only these characters in tag names and values
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", name) and re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value)
        assert to_address(parse(call.raw)) == call.to
        assert row["message_id"] == call.message_id
    assert len(ses.raw_messages()) == 6


# --- faults, through the proxy ----------------------------------------------------------------------


def test_throttling_is_retried_and_sends_once(fault_proxy: FaultProxy, ses: MotoServer, make_send) -> None:
    send = make_send(5)
    victim = send.addresses[2]
    fault_proxy.throttle(victim, 2)
    waits: list[float] = []

    result = send.run(sleep=waits.append)

    assert (result.sent, result.failed, result.stopped) == (5, 0, None)
    assert fault_proxy.attempts(victim) == 3  # two 429s, then accepted
    assert [c.fault[0] if c.fault else 200 for c in fault_proxy.calls if c.to == victim] == [429, 429, 200]
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.75 and 0.5 <= waits[1] <= 1.5  # backoff with jitter
    grouped = by_recipient(ses.raw_messages())
    assert sorted(grouped) == send.addresses and all(len(v) == 1 for v in grouped.values())
    rows = send.rows()
    assert rows[victim]["state"] == "sent" and rows[victim]["attempts"] == 3 and rows[victim]["error"] is None
    assert rows[victim]["message_id"] == grouped[victim][0]["id"]
    assert send.state() == "finished"


def test_endless_throttling_stops_resumably_without_failing_anyone(fault_proxy: FaultProxy, ses: MotoServer,
                                                                    make_send) -> None:
    from mailer import SendStopped
    send = make_send(3)
    victim = send.addresses[0]
    fault_proxy.throttle(victim, 10_000)

    try:
        result = send.run()
    except SendStopped:
        result = None
    rows = send.rows()
    # A run that cannot finish must say so (run_send's contract): the CLI would otherwise print
    # "Done" and exit 0 with a recipient never sent.
    assert result is None, (f"run_send returned {result} without raising SendStopped while {victim} "
                            f"is still {rows[victim]['state']!r}")
    assert rows[victim]["state"] == "pending"  # throttling is never a permanent failure
    assert "TooManyRequests" in rows[victim]["error"]
    assert [rows[a]["state"] for a in send.addresses[1:]] == ["sent", "sent"]
    assert send.state() == "stopped"
    fault_proxy.clear()
    assert send.run().sent == 1
    grouped = by_recipient(ses.raw_messages())
    assert sorted(grouped) == send.addresses and all(len(v) == 1 for v in grouped.values())


def test_rejection_fails_only_that_recipient(fault_proxy: FaultProxy, ses: MotoServer, make_send) -> None:
    send = make_send(5)
    victim = send.addresses[1]
    fault_proxy.reject(victim, "Address blacklisted.")

    result = send.run()

    assert (result.sent, result.failed, result.stopped) == (4, 1, None)
    assert fault_proxy.attempts(victim) == 1  # a permanent rejection is not retried
    rows = send.rows()
    assert rows[victim]["state"] == "failed" and rows[victim]["message_id"] is None
    assert "MessageRejected" in rows[victim]["error"] and "Address blacklisted." in rows[victim]["error"]
    others = [a for a in send.addresses if a != victim]
    assert all(rows[a]["state"] == "sent" and rows[a]["error"] is None for a in others)
    grouped = by_recipient(ses.raw_messages())
    assert sorted(grouped) == others and all(len(v) == 1 for v in grouped.values())
    assert send.state() == "finished"
    assert send.run().sent == 0 and len(ses.raw_messages()) == 4  # a failed recipient is not retried by a rerun


def test_sending_paused_stops_cleanly_and_resumes(fault_proxy: FaultProxy, ses: MotoServer, make_send) -> None:
    from mailer import SendStopped
    send = make_send(12)
    fault_proxy.pause_after(3)

    with pytest.raises(SendStopped, match="SendingPaused"):
        send.run(workers=4)

    rows = send.rows()
    states = [r["state"] for r in rows.values()]
    assert "sending" not in states and "failed" not in states  # claimed rows went back to pending
    assert states.count("sent") == 3 and states.count("pending") == 9
    accepted = ses.raw_messages()
    assert sorted(m["id"] for m in accepted) == sorted(r["message_id"] for r in rows.values() if r["state"] == "sent")
    assert send.state() == "stopped"

    fault_proxy.clear()
    result = send.run(workers=4)
    assert (result.sent, result.failed, result.stopped) == (9, 0, None)
    grouped = by_recipient(ses.raw_messages())
    assert sorted(grouped) == send.addresses and all(len(v) == 1 for v in grouped.values())
    rows = send.rows()
    assert {r["state"] for r in rows.values()} == {"sent"}
    assert {a: rows[a]["message_id"] for a in send.addresses} == {a: grouped[a][0]["id"] for a in send.addresses}
    assert send.state() == "finished"
