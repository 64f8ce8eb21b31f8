"""Addresses SES can and cannot send to (issue 11; design §9: SES does not support SMTPUTF8).

A non-ASCII local part (`zoë.brontë@example.org`) is refused wherever an address enters,
with the reason; an IDN domain (`jeff@臺網中心.tw`, `x@xn--bcher-kva.de`) is stored and sent
as punycode and shown in Unicode where people read it. Each way in is driven for real:
the CLI, a CSV import with --rejects, the sign-up form over HTTP (uvicorn), a proof through
the file transport, a send through moto's SES; and migration 0004 on SQLite and PostgreSQL
rewrites what was stored in Unicode before.
"""
from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import subscribers as subs
from newsletter.cli import main
from subscribers.schema import lists, memberships, signup_attempts, suppressions
from subscribers.schema import subscribers as people
from tests import ses_peer
from tests.ses_peer import ISSUE, aws_env, cli_env, ledger, newsletter, parse, to_address
from tests.test_sns import keys, web
from tests.test_web import SECRET, Site, assert_secure_html, confirm_link, server, site, snapshot

# Fixtures used by name: the SES peer, and the real HTTP server of tests/test_web.py.
moto, ses, fault_proxy = ses_peer.moto, ses_peer.ses, ses_peer.fault_proxy
__all__ = ["keys", "server", "site", "web"]

ZOE = "zoë.brontë@example.org"
JEFF, JEFF_ASCII = "jeff@臺網中心.tw", "jeff@xn--fiqq24b10vi0d.tw"
BUCHER, BUCHER_UNICODE = "x@xn--bcher-kva.de", "x@bücher.de"
SMTPUTF8 = "non-ASCII characters before the @"


def stored(db: Any) -> dict[str, str]:
    """email -> email_key of every subscriber."""
    with db.begin() as conn:
        return dict(conn.execute(sa.select(people.c.email, people.c.email_key)).all())


# --- the command line: add, show, import, test-send -------------------------------------------------


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    env = {"NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_FROM": "News <news@example.org>",
           "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"),
           "NEWSLETTER_BASE_URL": "https://news.example.org"}

    def invoke(*args: str) -> Result:
        result = CliRunner().invoke(main, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: show it
        return result
    return invoke


@pytest.fixture
def database(db_url: str) -> Iterator[Any]:
    db = subs.open_database(db_url)
    yield db
    db.dispose()


def test_add_refuses_a_non_ascii_local_part_and_stores_idn_domains_as_punycode(cli, database) -> None:
    assert cli("lists", "create", "news").exit_code == 0
    refused = cli("subscribers", "add", ZOE, "--list", "news")
    assert refused.exit_code == 1
    assert f"{ZOE!r} cannot be used: it has {SMTPUTF8} (ë); email to it cannot be sent" in refused.stderr
    assert "SMTPUTF8" in refused.stderr and "Traceback" not in refused.stderr

    for address in (JEFF, BUCHER):
        assert "added" in cli("subscribers", "add", address, "--list", "news").stdout
    # The Unicode spelling of a stored punycode domain is the same person.
    assert "unchanged" in cli("subscribers", "add", BUCHER_UNICODE, "--list", "news").stdout
    assert stored(database) == {JEFF_ASCII: JEFF_ASCII, BUCHER: BUCHER}


def test_show_reads_in_unicode_and_its_json_keeps_the_stored_ascii_form(cli) -> None:
    cli("lists", "create", "news")
    cli("subscribers", "add", BUCHER_UNICODE, "--list", "news", "--name", "Xaver")
    human = cli("subscribers", "show", BUCHER)
    assert human.exit_code == 0, human.output
    assert human.stdout.splitlines()[0] == f"{BUCHER_UNICODE} (Xaver) [sent as {BUCHER}]"
    as_json = json.loads(cli("subscribers", "show", BUCHER_UNICODE, "--json").stdout)
    assert as_json["email"] == BUCHER  # design §4: what is stored, sent to and exported
    missing = cli("subscribers", "show", "nobody@xn--bcher-kva.de")
    assert missing.exit_code == 1 and "no subscriber nobody@bücher.de" in missing.stderr


def test_import_rejects_a_non_ascii_local_part_with_its_reason(cli, database, tmp_path: Path) -> None:
    cli("lists", "create", "news")
    source = tmp_path / "people.csv"
    source.write_text(f"email,name\n{ZOE},Zoë\n{JEFF},Jeff\n{BUCHER},X\n{BUCHER_UNICODE},X again\n"
                      "ada@example.org,Ada\n", "utf-8")
    rejects = tmp_path / "rejects.csv"
    result = cli("subscribers", "import", str(source), "--list", "news", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert "3 added" in result.stdout and "1 rejected" in result.stdout

    with rejects.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["line"], r["email"], r["name"]) for r in rows] == [("2", ZOE, "Zoë")]
    assert rows[0]["reason"].startswith(f"it has {SMTPUTF8} (ë)") and "SMTPUTF8" in rows[0]["reason"]
    assert stored(database) == {JEFF_ASCII: JEFF_ASCII, BUCHER: BUCHER, "ada@example.org": "ada@example.org"}


def test_test_send_refuses_a_non_ascii_local_part_and_sends_idn_domains_as_punycode(cli, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    refused = cli("test-send", str(ISSUE), "--to", ZOE)
    assert refused.exit_code == 1 and SMTPUTF8 in refused.stderr and "Traceback" not in refused.stderr
    assert not outbox.exists() or not any(outbox.rglob("*.eml"))

    sent = cli("test-send", str(ISSUE), "--to", JEFF, "--to", BUCHER_UNICODE)
    assert sent.exit_code == 0, sent.output
    messages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in outbox.rglob("*.eml")]
    assert sorted(str(m["To"]) for m in messages) == sorted([JEFF_ASCII, BUCHER])


# --- the sign-up form over real HTTP -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["josé@example.org", ZOE])
def test_sign_up_with_a_non_ascii_local_part_is_a_400_form_with_the_reason(site: Site, address: str) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    before = snapshot(site.db)
    answer = site.http.sign_up("news", address)
    assert answer.status == 400 and site.switch.raised == []
    assert_secure_html(answer)
    assert 'role="alert"' in answer.text and '<form method="post"' in answer.text
    text = answer.main()
    assert f"{address!r} cannot be used: it has {SMTPUTF8}" in text and "SMTPUTF8" in text
    assert f'value="{address}"' in answer.text  # what was typed comes back to be corrected
    assert snapshot(site.db) == before and site.mail.sent == []


def test_sign_up_with_an_idn_domain_stores_and_mails_punycode_and_shows_unicode(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    answer = site.http.sign_up("news", JEFF)
    assert answer.status == 200, answer.text
    assert "j**f@臺網中心.tw" in answer.main()
    assert stored(site.db) == {JEFF_ASCII: JEFF_ASCII}

    [(raw, to, _)] = site.mail.sent
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert to == JEFF_ASCII and str(message["To"]).endswith(JEFF_ASCII)
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert JEFF in body  # the confirmation names the address as its owner writes it

    confirmed = site.http.get(confirm_link(message))  # type: ignore[arg-type]
    assert confirmed.status == 200 and "j**f@臺網中心.tw will get Example News" in confirmed.main()

    # The punycode spelling signs up the same person: no second row.
    assert site.http.sign_up("news", "JEFF@XN--FIQQ24B10VI0D.TW").status == 200
    assert stored(site.db) == {JEFF_ASCII: JEFF_ASCII}


def test_unsubscribe_pages_show_the_unicode_domain(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News")
    subs.add_subscriber(site.db, "xaver@xn--bcher-kva.de", "news")
    with site.db.begin() as conn:
        person = conn.execute(sa.select(people.c.id)).scalar_one()
        list_id = conn.execute(sa.select(lists.c.id)).scalar_one()
    token = subs.Tokens(SECRET).unsubscribe(person, list_id)
    page = site.http.get(f"/u/{token}")
    assert page.status == 200 and "Stop sending Example News to x***r@bücher.de ?" in page.main()
    left = site.http.post(f"/u/{token}", b"List-Unsubscribe=One-Click")
    assert left.status == 200 and "x***r@bücher.de will get no more issues" in left.main()


# --- migration 0004: what was stored in Unicode ------------------------------------------------------


def _at_0003(url: str) -> Any:
    """A database migrated to 0003 (with the mailer's ledger), as the code before 0004 left it."""
    from alembic import command

    import mailer
    from subscribers.db import _alembic_config
    db = subs.open_database(url, migrate=False, extra_migrations=(mailer.MIGRATIONS,))
    config = _alembic_config(db)
    command.upgrade(config, "0003")
    command.upgrade(config, "m0001")
    return db


def _upgrade_to_0004(db: Any) -> None:
    from alembic import command

    from subscribers.db import _alembic_config
    command.upgrade(_alembic_config(db), "0004")


NOW = datetime(2026, 11, 1, tzinfo=UTC)
SENDS = sa.table("sends", sa.column("id"), sa.column("issue"), sa.column("list_name"), sa.column("subject"),
                 sa.column("state"), sa.column("created_at"))
DELIVERIES = sa.table("deliveries", sa.column("id"), sa.column("send_id"), sa.column("subscriber_id"),
                      sa.column("state"), sa.column("attempts"), sa.column("updated_at"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _seed(conn: Any) -> dict[str, int]:
    """Rows as 0003's code stored them: email-validator's Unicode domain, key lower-cased."""
    news = conn.execute(lists.insert().values(name="news", title="News", created_at=NOW)).inserted_primary_key[0]
    other = conn.execute(lists.insert().values(name="other", title="Other", created_at=NOW)).inserted_primary_key[0]

    def person(email_address: str, key: str, name: str = "", fields: dict[str, str] | None = None,
               **on: str) -> int:
        new_id = conn.execute(people.insert().values(
            email=email_address, email_key=key, name=name, fields=fields or {}, created_at=NOW, updated_at=NOW,
        )).inserted_primary_key[0]
        for list_name, status in on.items():
            conn.execute(memberships.insert().values(
                list_id=news if list_name == "news" else other, subscriber_id=new_id, status=status, source="admin",
                subscribed_at=NOW, unsubscribed_at=NOW if status == "unsubscribed" else None, updated_at=NOW))
        return int(new_id)

    ids = {
        "jeff": person(JEFF, JEFF, "Jeff", news="subscribed"),
        "x": person("X@bücher.de", "x@bücher.de", news="subscribed"),
        "zoe": person(ZOE, ZOE, "Zoë", news="subscribed"),
        "zoe_idn": person("zoë@bücher.de", "zoë@bücher.de", news="subscribed"),
        "ada": person("ada@example.org", "ada@example.org", news="subscribed"),
        # One person twice: once in Unicode (left "news"), once in ASCII, written by hand.
        "ana_unicode": person("ana@mañana.com", "ana@mañana.com", "", {"city": "Leeds", "team": "red"},
                              news="unsubscribed"),
        "ana_ascii": person("Ana@xn--maana-pta.com", "ana@xn--maana-pta.com", "Ana", {"team": "blue"},
                            news="subscribed", other="subscribed"),
    }
    send = conn.execute(SENDS.insert().values(issue="2020-12", list_name="news", subject="s", state="finished",
                                              created_at=NOW).returning(SENDS.c.id)).scalar_one()
    later = conn.execute(SENDS.insert().values(issue="2021-01", list_name="news", subject="s", state="finished",
                                               created_at=NOW).returning(SENDS.c.id)).scalar_one()
    for send_id, who in ((send, "ana_unicode"), (send, "ana_ascii"), (later, "ana_unicode"), (send, "jeff")):
        conn.execute(DELIVERIES.insert().values(send_id=send_id, subscriber_id=ids[who], state="sent", attempts=1,
                                                updated_at=NOW))
    ids["send"], ids["later"] = int(send), int(later)
    suppress = [("bounced@bücher.de", _sha("bounced@bücher.de"), "bounce"),
                (None, _sha("gone@bücher.de"), "forgotten"),  # `forget`: only the hash is left
                ("dup@bücher.de", _sha("dup@bücher.de"), "first"),
                ("dup@xn--bcher-kva.de", _sha("dup@xn--bcher-kva.de"), "second, by hand"),
                (ZOE, _sha(ZOE), "complaint")]
    for address, digest, reason in suppress:
        conn.execute(suppressions.insert().values(email=address, email_hash=digest, reason=reason, source="admin",
                                                  created_at=NOW))
    conn.execute(signup_attempts.insert().values(bucket="address", key_hash=_sha("x@bücher.de"), at=NOW))
    return ids


def test_migration_0004_stores_idn_domains_in_ascii_and_merges_one_person(db_url: str) -> None:
    db = _at_0003(db_url)
    try:
        with db.begin() as conn:
            ids = _seed(conn)
        _upgrade_to_0004(db)
        _check_people(db, ids)
        _check_merge(db, ids)
        _check_suppressions(db)
    finally:
        db.dispose()


def _check_people(db: Any, ids: dict[str, int]) -> None:
    with db.begin() as conn:
        rows = {r.id: (r.email, r.email_key) for r in conn.execute(sa.select(people.c.id, people.c.email,
                                                                               people.c.email_key))}
    assert rows[ids["jeff"]] == (JEFF_ASCII, JEFF_ASCII)
    assert rows[ids["x"]] == ("X@xn--bcher-kva.de", BUCHER)
    assert rows[ids["ada"]] == ("ada@example.org", "ada@example.org")
    # Cannot be sent to at all: left as they were, for the sender to fail with a reason.
    assert rows[ids["zoe"]] == (ZOE, ZOE) and rows[ids["zoe_idn"]] == ("zoë@bücher.de", "zoë@bücher.de")
    # The code after 0004 finds everyone, in either spelling.
    assert subs.show(db, BUCHER_UNICODE)["email"] == "X@xn--bcher-kva.de"
    assert subs.show(db, JEFF_ASCII)["name"] == "Jeff"
    assert subs.show(db, ZOE)["name"] == "Zoë"  # found to show, unsubscribe or forget
    assert subs.unsubscribe(db, "zoë@xn--bcher-kva.de") == ["news"]


def _check_merge(db: Any, ids: dict[str, int]) -> None:
    with db.begin() as conn:
        anas = conn.execute(sa.select(people).where(people.c.email_key == "ana@xn--maana-pta.com")).all()
        assert [a.id for a in anas] == [ids["ana_ascii"]]  # kept: the row with the most memberships
        assert (anas[0].email, anas[0].name, anas[0].fields) == ("Ana@xn--maana-pta.com", "Ana",
                                                                   {"city": "Leeds", "team": "blue"})
        deliveries = {(r.send_id, r.subscriber_id) for r in conn.execute(sa.select(DELIVERIES))}
    # The ledger follows the person; where both were in one send, the dropped row's entry is unlinked.
    assert deliveries == {(ids["send"], ids["ana_ascii"]), (ids["later"], ids["ana_ascii"]),
                          (ids["send"], ids["jeff"]), (ids["send"], None)}
    shown = {m["list"]: m["status"] for m in subs.show(db, "ana@mañana.com")["lists"]}
    assert shown == {"news": "unsubscribed", "other": "subscribed"}  # leaving wins: nobody is re-subscribed
    with pytest.raises(subs.NotAllowed, match="unsubscribed from 'news'"):
        subs.add_subscriber(db, "ana@xn--maana-pta.com", "news")


def _check_suppressions(db: Any) -> None:
    with db.begin() as conn:
        rows = {r.email_hash: (r.email, r.reason) for r in conn.execute(sa.select(suppressions))}
        assert conn.execute(sa.select(signup_attempts.c.key_hash)).scalar() == subs.normalise(BUCHER).hash
        for address, reason in (("bounced@xn--bcher-kva.de", "bounce"), ("gone@bücher.de", "forgotten"),
                                ("DUP@xn--bcher-kva.de", "first"), (ZOE, "complaint")):
            assert subs.suppression_of(conn, subs.normalise(address, held=True)) == reason, address
    assert sorted(rows.values(), key=lambda r: r[1]) == [
        ("bounced@xn--bcher-kva.de", "bounce"), (ZOE, "complaint"), ("dup@xn--bcher-kva.de", "first"),
        (None, "forgotten")]
    with pytest.raises(subs.NotAllowed, match="suppressed"):
        subs.add_subscriber(db, "gone@bücher.de", "news")


# --- a real send through moto's SES -----------------------------------------------------------------


def test_a_send_through_ses_goes_to_the_punycode_addresses(fault_proxy: ses_peer.FaultProxy,
                                                            ses: ses_peer.MotoServer, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_MAX_RATE="50",
                  NEWSLETTER_BASE_URL="https://news.example.org", **aws_env(fault_proxy.url))
    newsletter(["lists", "create", "news"], env, tmp_path)
    for address in (JEFF, BUCHER, "ada@example.org"):
        newsletter(["subscribers", "add", address, "--list", "news"], env, tmp_path)

    done = newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    assert re.search(r"\b3 sent, 0 failed\b", done.stdout), done.stdout
    expected = sorted([JEFF_ASCII, BUCHER, "ada@example.org"])
    # SendEmail's Destination and the To: header of the message SES received: ASCII only.
    assert sorted(c.to for c in fault_proxy.accepted()) == expected
    for call in fault_proxy.accepted():
        assert to_address(parse(call.raw)) == call.to
    received = ses.raw_messages()
    assert sorted(to_address(parse(m["raw_data"])) for m in received) == expected
    for message in received:
        [to_line] = re.findall(r"^To: (.*)$", message["raw_data"], re.M)
        assert to_line.strip() in expected  # plain ASCII, no encoded-word
    assert all(parseaddr(d)[1] in expected for m in received for d in m["destinations"])
    assert sorted(r["email"] for r in ledger(database_url) if r["state"] == "sent") == expected
