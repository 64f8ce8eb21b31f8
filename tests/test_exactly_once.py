"""Every message accounted for (design §6, §8): against moto over HTTP, on SQLite and PostgreSQL.

- An answer lost after SES accepted the message (a 500, a dropped connection) leaves the row
  unknown; neither we nor botocore send it again by ourselves.
- SES events carrying the message tags settle unknown rows; --retry-unknown resends only the rest.
- A recipient whose message cannot be made fails alone, with its reason; the send goes on.
- A send that ends exactly at the quota has finished.
- A send is bound to its content; the archive is never overwritten by another file.
"""
from __future__ import annotations

import json
import shutil
import threading
from typing import Any

import pytest
from sqlalchemy import select, update

from tests import ses_peer
from tests.ses_peer import FaultProxy, MotoServer
from tests.test_ses import by_recipient, make_send, rendered  # noqa: F401  (fixtures)

moto, ses, fault_proxy = ses_peer.moto, ses_peer.ses, ses_peer.fault_proxy


def delivery_event(message_id: str, tags: dict[str, str], recipient: str) -> str:
    """An SES event-publishing Delivery, as SNS puts it in SQS (the AWS docs' shape, trimmed)."""
    ses_event = {
        "eventType": "Delivery",
        "mail": {"timestamp": "2026-12-06T10:00:00.000Z", "source": "news@example.org",
                 "messageId": message_id, "destination": [recipient],
                 "tags": {k: [v] for k, v in tags.items()}},
        "delivery": {"timestamp": "2026-12-06T10:00:02.000Z", "recipients": [recipient],
                     "processingTimeMillis": 2000, "smtpResponse": "250 2.6.0 Message received"},
    }
    return json.dumps({"Type": "Notification", "MessageId": f"sns-{message_id}",
                       "TopicArn": "arn:aws:sns:eu-west-2:123456789012:ses-events",
                       "Message": json.dumps(ses_event), "Timestamp": "2026-12-06T10:00:03.000Z"})


def test_a_lost_answer_leaves_the_row_unknown_and_nobody_gets_two_copies(fault_proxy: FaultProxy, ses: MotoServer,
                                                                         make_send) -> None:  # noqa: F811
    send = make_send(12)
    lost_500, dropped = send.addresses[3], send.addresses[7]
    fault_proxy.lose_answer(lost_500, "500")
    fault_proxy.lose_answer(dropped, "drop")

    result = send.run()

    assert (result.sent, result.unknown, result.failed, result.stopped) == (10, 2, 0, None)
    assert fault_proxy.attempts(lost_500) == 1 and fault_proxy.attempts(dropped) == 1  # botocore did not resend
    grouped = by_recipient(ses.raw_messages())
    assert sorted(grouped) == send.addresses and all(len(v) == 1 for v in grouped.values())
    rows = send.rows()
    assert rows[lost_500]["state"] == "sending" and "may have been accepted" in rows[lost_500]["error"]
    assert rows[dropped]["state"] == "sending" and rows[dropped]["message_id"] is None
    assert send.state() == "finished"  # nothing left to send; two unknown
    # A plain run again sends nothing: unknown is never resent by itself.
    assert send.run().sent == 0 and len(ses.raw_messages()) == 12


def test_ses_events_settle_unknown_rows_and_retry_unknown_resends_only_the_rest(
        fault_proxy: FaultProxy, ses: MotoServer, make_send) -> None:  # noqa: F811
    from mailer import Policy, take
    send = make_send(8)
    settled, unsettled = send.addresses[1], send.addresses[5]
    fault_proxy.lose_answer(settled, "500")
    fault_proxy.lose_answer(unsettled, "drop")
    assert send.run().unknown == 2

    call = next(c for c in fault_proxy.calls if c.to == settled)
    assert call.message_id and call.tags["delivery_id"] and call.tags["send_id"] == str(send.send_id)
    applied = take(send.db, [delivery_event(call.message_id, call.tags, settled)], Policy(), "sqs")
    assert applied.stored == 1 and applied.malformed == 0
    rows = send.rows()
    assert rows[settled]["state"] == "sent" and rows[settled]["message_id"] == call.message_id
    assert rows[unsettled]["state"] == "sending"

    fault_proxy.clear()
    fault_proxy._lose.clear()
    again = send.run(retry_unknown=True)
    assert (again.total, again.sent) == (1, 1)
    assert fault_proxy.attempts(settled) == 1 and fault_proxy.attempts(unsettled) == 2
    assert {r["state"] for r in send.rows().values()} == {"sent"}


def test_a_message_that_cannot_be_made_fails_alone(ses: MotoServer, make_send) -> None:  # noqa: F811
    from subscribers.schema import subscribers
    send = make_send(6)
    victim = send.addresses[2]
    # An address stored before addresses were checked for SMTPUTF8 (round 1 accepted it).
    with send.db.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.email == victim)
                     .values(email="zoë.brontë@example.com", email_key="zoë.brontë@example.com"))

    result = send.run()

    assert (result.sent, result.failed, result.stopped) == (5, 1, None)
    row = send.rows()["zoë.brontë@example.com"]
    assert row["state"] == "failed" and "SMTPUTF8" in row["error"]
    assert len(ses.raw_messages()) == 5 and send.state() == "finished"


def test_a_send_ending_exactly_at_the_quota_has_finished(ses: MotoServer, make_send) -> None:  # noqa: F811
    send = make_send(5)
    result = send.run(quota_left=5.0)
    assert (result.sent, result.stopped) == (5, None)
    assert send.state() == "finished"


def test_a_send_one_short_of_the_quota_stops_resumably(ses: MotoServer, make_send) -> None:  # noqa: F811
    from mailer import SendStopped
    send = make_send(5)
    with pytest.raises(SendStopped, match="quota"):
        send.run(quota_left=4.0)
    assert sorted(r["state"] for r in send.rows().values()) == ["pending"] + ["sent"] * 4
    assert send.run().sent == 1


# --- content binding and the archive -----------------------------------------------------------------


def test_resuming_with_other_content_is_refused_unless_forced(make_send, rendered: Any) -> None:  # noqa: F811
    from mailer import ContentChanged, content_hash, plan_send, start_send
    send = make_send(3)
    real = content_hash(rendered)
    plan = plan_send(send.db, rendered.slug, "news")
    assert start_send(send.db, plan, rendered.subject, real) == send.send_id  # binds an unbound send
    draft = "0" * 64
    # Nobody mailed yet (a scheduled send whose file was edited before its time): it takes the new content.
    assert start_send(send.db, plan, "edited", draft) == send.send_id
    assert start_send(send.db, plan, rendered.subject, real) == send.send_id
    from mailer.schema import deliveries
    with send.db.begin() as conn:  # one message went out with the real content
        first = conn.execute(select(deliveries.c.id).where(deliveries.c.send_id == send.send_id).limit(1)).scalar()
        conn.execute(update(deliveries).where(deliveries.c.id == first).values(state="sent"))
    with pytest.raises(ContentChanged, match="other content"):
        start_send(send.db, plan, "DRAFT - do not send", draft)
    assert start_send(send.db, plan, rendered.subject, real) == send.send_id
    assert start_send(send.db, plan, "DRAFT", draft, force=True) == send.send_id


def test_the_archive_keeps_the_first_content_and_concurrent_publishers_agree(db_url: str, rendered: Any) -> None:  # noqa: F811
    import mailer
    from mailer import ArchiveConflict, archived_page, content_hash, publish
    from mailer.schema import archive
    from subscribers import open_database
    db = open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    try:
        real = content_hash(rendered)
        outcomes: list[Any] = []

        def go() -> None:
            try:
                outcomes.append(publish(db, rendered, real))
            except Exception as exc:  # what must not happen: a unique violation
                outcomes.append(exc)
        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes, key=str) == [False, False, False, True], outcomes
        page = archived_page(db, rendered.slug)
        assert page == rendered.web_html

        with pytest.raises(ArchiveConflict, match="different issue under the slug"):
            publish(db, rendered, "f" * 64)
        assert publish(db, rendered, "f" * 64, force=True) is False
        assert archived_page(db, rendered.slug) == page
        with db.begin() as conn:
            assert conn.execute(select(archive.c.content_hash)).scalar_one() == real
            # Published in round 1, before content was recorded: the first send since records it.
            conn.execute(update(archive).values(content_hash=None))
        assert publish(db, rendered, real) is False
        with db.begin() as conn:
            assert conn.execute(select(archive.c.content_hash)).scalar_one() == real
    finally:
        db.dispose()


# --- the command line: a draft under the same slug, four senders at once ------------------------------


def test_a_draft_under_the_same_slug_neither_resumes_the_send_nor_replaces_the_archive(db_url: str,
                                                                                      tmp_path) -> None:
    from tests.ses_peer import ISSUE, cli_env, ledger, newsletter
    from tests.test_crash import copies, setup_list
    setup_list(db_url, tmp_path, 12)
    setup_list(db_url, tmp_path, 3, "staff")
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    draft = drafts / ISSUE.name
    draft.write_text(ISSUE.read_text("utf-8").replace("subject:", 'subject: "DRAFT - do not send" #', 1), "utf-8")
    shutil.copytree(ISSUE.parent / ISSUE.stem, drafts / ISSUE.stem)  # its images
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    # Half the send goes back to pending, as if it had stopped there.
    from sqlalchemy import create_engine, text
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE deliveries SET state = 'pending', message_id = NULL WHERE id % 2 = 0"))
    engine.dispose()
    before = copies(outbox)

    refused = newsletter(["send", str(draft), "--list", "news", "--yes"], env, tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "started with other content" in refused.stderr and "--force" in refused.stderr
    assert copies(outbox) == before

    other_list = newsletter(["send", str(draft), "--list", "staff", "--yes"], env, tmp_path, check=False)
    assert other_list.returncode == 1 and "different issue under the slug" in other_list.stderr
    assert copies(outbox) == before
    assert not [r for r in ledger(db_url) if r["state"] == "pending" and r["send_id"] != 1]

    resumed = newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    assert "Done: 6 sent" in resumed.stdout
    subjects = {p.read_bytes().split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0] for p in outbox.rglob("*.eml")}
    assert not any(b"DRAFT" in s for s in subjects)
    assert json.loads(newsletter(["report", ISSUE.stem, "--json"], env, tmp_path).stdout)[0]["sent"] == 12

    forced = newsletter(["send", str(draft), "--list", "staff", "--yes", "--force"], env, tmp_path)
    assert "Done: 3 sent" in forced.stdout
    import mailer
    from subscribers import open_database
    db = open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    try:
        assert "DRAFT" not in (mailer.archived_page(db, ISSUE.stem) or "DRAFT")  # the archive kept the real one
    finally:
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_four_senders_started_at_once_share_one_send_on_postgresql(db_url: str, tmp_path) -> None:
    import subprocess

    from tests.ses_peer import ISSUE, NEWSLETTER, cli_env, ledger
    from tests.test_crash import copies, setup_list
    addresses = setup_list(db_url, tmp_path, 120)
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    command = [str(NEWSLETTER), "send", str(ISSUE), "--list", "news", "--yes", "--rate", "300"]
    processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for p, (out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, (out, err)
    assert copies(outbox) == {a: 1 for a in addresses}
    rows = ledger(db_url)
    assert len(rows) == 120 and {r["state"] for r in rows} == {"sent"} and len({r["send_id"] for r in rows}) == 1


def test_a_late_outcome_does_not_unsettle_a_row_an_ses_event_settled(make_send) -> None:  # noqa: F811
    from mailer import ledger
    from mailer.schema import deliveries
    send = make_send(2)
    run_id = ledger.begin_run(send.db, send.send_id)
    (row_id, _), _ = ledger.claim(send.db, send.send_id, run_id, 2)
    writer = ledger.Writer(send.db)  # what a sending thread writes through
    assert writer.record_and_mark(None, row_id, run_id)
    with send.db.begin() as conn:  # SES's Delivery event arrives before the lost answer is recorded
        conn.execute(update(deliveries).where(deliveries.c.id == row_id).values(state="sent", message_id="ses-1"))
    late = ledger.Outcome(row_id, "sending", error="no answer from SES")
    writer.record([late])
    writer.close()
    ledger.record(send.db, [late])  # and the run's own path
    with send.db.begin() as conn:
        state, message_id = conn.execute(select(deliveries.c.state, deliveries.c.message_id)
                                         .where(deliveries.c.id == row_id)).one()
    assert (state, message_id) == ("sent", "ses-1")
    ledger.end_run(send.db, run_id)
