"""A list's welcome issue (design §12): whoever joins through the sign-up form gets it once, by a worker.

Through a real web app on uvicorn (tests/test_web.py's server) on SQLite and PostgreSQL, the
worker's library loop, and the `lists set` command.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import mailer
import subscribers as subs
from mailer.worker import run_due
from tests.ses_peer import ISSUE, cli_env, newsletter
from tests.test_crash import setup_list
from tests.test_jobs import REFERENCE, outbox_count, preparer
from tests.test_sns import keys, web  # noqa: F401  (fixtures)
from tests.test_web import Site, confirm_link, ids, server, site, status  # noqa: F401  (fixtures)

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def welcomes(site: Site, tmp_path: Path, rendered) -> int:  # noqa: F811
    """Let a worker run what is due; how many welcome messages went out."""
    files = mailer.make_transport("file", outbox=str(tmp_path / "outbox"))
    ran = run_due(site.db, preparer(rendered, files), now=lambda: NOW)
    assert all(r.outcome in ("finished", "skipped") for r in ran), ran
    return sum(r.result.sent for r in ran if r.result)


def test_double_opt_in_welcomes_once_after_confirming_and_never_again(site: Site, tmp_path: Path) -> None:  # noqa: F811
    from newsletter.config import Settings
    from newsletter.sending import checked_render
    rendered = checked_render(REFERENCE, Settings(base_url="https://news.example.org"), True)
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    mailer.set_welcome(site.db, "news", rendered, str(REFERENCE))
    assert mailer.welcome_of(site.db, "news") == rendered.slug

    site.http.sign_up("news", "newbie@example.org")
    assert welcomes(site, tmp_path, rendered) == 0  # not before confirming
    [message] = site.mail.messages("newbie@example.org")
    assert site.http.get(confirm_link(message)).status == 200
    assert welcomes(site, tmp_path, rendered) == 1
    assert outbox_count(tmp_path / "outbox") == {"newbie@example.org": 1}

    # Leaves, comes back through the form and confirms again: subscribed, not welcomed again.
    subs.unsubscribe(site.db, "newbie@example.org", "news")
    site.http.sign_up("news", "newbie@example.org")
    [_, again] = site.mail.messages("newbie@example.org")
    assert site.http.get(confirm_link(again)).status == 200
    assert status(site.db, "newbie@example.org", "news") == "subscribed"
    assert welcomes(site, tmp_path, rendered) == 0
    # Nor by a later welcome issue of the same list.
    other = checked_render(ISSUE, Settings(base_url="https://news.example.org"), True)
    mailer.set_welcome(site.db, "news", other, str(ISSUE))
    subscriber_id, list_id = ids(site.db, "newbie@example.org", "news")
    assert not mailer.welcome_newcomer(site.db, list_id, subscriber_id)
    assert welcomes(site, tmp_path, other) == 0
    assert outbox_count(tmp_path / "outbox") == {"newbie@example.org": 1}


def test_single_opt_in_welcomes_at_sign_up_and_no_welcome_stops_it(site: Site, tmp_path: Path) -> None:  # noqa: F811
    from newsletter.config import Settings
    from newsletter.sending import checked_render
    rendered = checked_render(REFERENCE, Settings(base_url="https://news.example.org"), True)
    subs.create_list(site.db, "news", "Example News")
    subs.add_subscriber(site.db, "imported@example.org", "news")  # added by an admin: no welcome
    mailer.set_welcome(site.db, "news", rendered, str(REFERENCE))
    site.http.sign_up("news", "first@example.org")
    assert welcomes(site, tmp_path, rendered) == 1
    assert mailer.clear_welcome(site.db, "news")
    site.http.sign_up("news", "second@example.org")
    assert welcomes(site, tmp_path, rendered) == 0
    assert outbox_count(tmp_path / "outbox") == {"first@example.org": 1}


def test_lists_set_through_the_cli(db_url: str, tmp_path: Path) -> None:
    setup_list(db_url, tmp_path, 1)
    env = cli_env(db_url)
    done = newsletter(["lists", "set", "news", "--title", "Club News", "--welcome", str(REFERENCE)], env, tmp_path)
    assert "title 'Club News'" in done.stdout and "gets '2020-12' once" in done.stdout
    assert "no welcome issue from now on" in newsletter(["lists", "set", "news", "--no-welcome"], env,
                                                        tmp_path).stdout
    for args, code, message in ((["lists", "set", "nope", "--title", "x"], 1, "no list named"),
                                (["lists", "set", "news"], 2, "nothing to change"),
                                (["lists", "set", "news", "--welcome", str(REFERENCE), "--no-welcome"], 2,
                                 "do not go together")):
        refused = newsletter(args, env, tmp_path, check=False)
        assert refused.returncode == code and message in refused.stderr, (args, refused.stderr)


def test_a_removed_list_takes_its_welcome_with_it(site: Site, tmp_path: Path) -> None:  # noqa: F811
    from mailer.welcome import remove_list
    from newsletter.config import Settings
    from newsletter.sending import checked_render
    rendered = checked_render(REFERENCE, Settings(base_url="https://news.example.org"), True)
    subs.create_list(site.db, "news", "Example News")
    mailer.set_welcome(site.db, "news", rendered, str(REFERENCE))
    remove_list(site.db, "news")
    subs.create_list(site.db, "news", "Example News, again")  # the same row comes back
    assert mailer.welcome_of(site.db, "news") is None
    site.http.sign_up("news", "first@example.org")
    assert welcomes(site, tmp_path, rendered) == 0
