"""The smtp transport against a real SMTP server on loopback (aiosmtpd)."""
from __future__ import annotations

import email
import email.policy
import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.ses_peer import ISSUE, cli_env, newsletter
from tests.test_crash import setup_list


class Inbox:
    """Keeps every message the server accepts, with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{controller.port}"
    controller.stop()


def test_send_through_a_local_relay(smtp_server, tmp_path: Path) -> None:
    inbox, url = smtp_server
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    addresses = setup_list(database_url, tmp_path, 8)
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="smtp", NEWSLETTER_SMTP_URL=url)
    done = newsletter(["send", str(ISSUE), "--list", "news", "--yes", "--rate", "100"], env, tmp_path)
    assert "8 sent" in done.stdout
    assert sorted(r for _, rcpts, _ in inbox.messages for r in rcpts) == sorted(addresses)
    for sender, rcpts, raw in inbox.messages:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert sender == "news@example.org"
        assert message["To"].addresses[0].addr_spec == rcpts[0]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    again = newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    assert "Nothing to send" in again.stdout and len(inbox.messages) == 8


def test_an_unreachable_relay_stops_the_send_resumably(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    setup_list(database_url, tmp_path, 3)
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="smtp", NEWSLETTER_SMTP_URL=f"smtp://127.0.0.1:{_free_port()}")
    done = newsletter(["send", str(ISSUE), "--list", "news", "--yes", "--rate", "1000"], env, tmp_path,
                      check=False, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "resume" in done.stderr
