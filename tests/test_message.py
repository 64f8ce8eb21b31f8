"""One personal message per subscriber (design §6), parsed back as a mail client would.

Every message is made by mailer.MessageTemplate from a real rendered issue
(the example 2021-01, which has merge fields in its subject and text, and the
reference issue 2020-12), then parsed with the standard library's email
package. Header checks that matter to receivers (List-Unsubscribe for RFC 8058
one-click) look at the raw bytes, not at what the parser decodes.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import re
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

import mailer
from components import render_issue, substitute
from mailer import Envelope, MessageTemplate, Recipient
from subscribers import Tokens

from .conftest import ISSUES, REFERENCE

BASE = "https://news.example.org"
SENDER = "News <news@example.org>"
LIST_ID = "<members.example.org>"
EXAMPLE = ISSUES / "2021-01.yaml"


@pytest.fixture(scope="module")
def example():
    return render_issue(EXAMPLE, base_url=BASE)


@pytest.fixture(scope="module")
def reference():
    return render_issue(REFERENCE, base_url=BASE)


@pytest.fixture(scope="module")
def template(example):
    return MessageTemplate(example, Envelope(SENDER, LIST_ID))


def url_for(subscriber_id: int, list_id: int = 1) -> str:
    return f"{BASE}/u/{Tokens('k').unsubscribe(subscriber_id, list_id)}"


def recipient(email_: str = "sam@example.org", name: str = "Sam Jones", fields=None, sid: int = 7) -> Recipient:
    return Recipient(email_, name, fields or {}, url_for(sid), sid)


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def raw_headers(raw: bytes) -> dict[str, list[str]]:
    """The header block as sent: name -> raw values, folded lines joined (CRLF WSP removed)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    out: dict[str, list[str]] = {}
    for line in re.split(r"\r\n(?![ \t])", head):
        name, _, value = line.partition(":")
        out.setdefault(name.lower(), []).append(re.sub(r"\r\n[ \t]", " ", value.strip()))
    return out


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text, html) decoded, line ends normalised (CRLF is only the wire form)."""
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    body = message.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    return text, body


def assert_well_formed(raw: bytes) -> EmailMessage:
    """multipart/alternative, text then HTML, utf-8, QP/base64, short lines, no defects."""
    raw.decode("ascii")  # 7-bit clean: everything non-ASCII is encoded
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    subparts = list(message.iter_parts())
    assert [p.get_content_type() for p in subparts] == ["text/plain", "text/html"]
    for part in subparts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"].lower() in ("quoted-printable", "base64")
        assert not part.defects
    assert not message.defects
    return message


def assert_resolved(message: EmailMessage) -> None:
    text, body = parts(message)
    for where in (str(message["Subject"]), text, body):
        assert "{{" not in where and "}}" not in where
        assert "zqmf" not in where


# --- structure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["example", "reference"])
def test_every_message_is_well_formed_and_fully_resolved(which, request):
    rendered = request.getfixturevalue(which)
    template = MessageTemplate(rendered, Envelope(SENDER, LIST_ID))
    people = [
        recipient(),
        recipient("zoe@example.org", "Zoë Ünal", {"town": "Preston"}, 8),
        recipient("nobody@example.org", "", {}, 9),
        recipient("odd@example.org", "Odd Values", {"first_name": "<b>&\"", "town": "a=b\nc 🎉"}, 10),
    ]
    for person in people:
        message = assert_well_formed(template.personalise(person))
        assert_resolved(message)
        assert message["From"] == SENDER
        assert message["MIME-Version"] == "1.0"


def test_one_to_header_naming_only_the_subscriber(template):
    message = parse(template.personalise(recipient()))
    assert len(message.get_all("To")) == 1
    (address,) = message["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Sam Jones", "sam@example.org")
    for header in ("Cc", "Bcc", "Reply-To"):
        assert message[header] is None


def test_a_non_ascii_name_is_encoded_in_to(template):
    raw = template.personalise(recipient("zoe@example.org", "Zoë Ünal"))
    (to,) = raw_headers(raw)["to"]
    assert "=?utf-8?" in to.lower() and to.endswith("<zoe@example.org>")
    (address,) = parse(raw)["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Zoë Ünal", "zoe@example.org")


def test_a_name_with_no_name_gives_a_bare_address(template):
    (address,) = parse(template.personalise(recipient("a@example.org", ""))).get("To").addresses
    assert (address.display_name, address.addr_spec) == ("", "a@example.org")


def test_a_newline_in_a_name_cannot_add_headers(template):
    """Names come from CSV imports, where a quoted cell may hold a line break."""
    raw = template.personalise(recipient("eve@example.org", "Eve\nBcc: mallory@example.net"))
    message = parse(raw)
    assert message["Bcc"] is None
    assert len(message.get_all("To")) == 1
    (address,) = message["To"].addresses
    assert address.addr_spec == "eve@example.org"
    assert "mallory@example.net" not in {a.addr_spec for a in message["To"].addresses}


@pytest.mark.parametrize("name", ["Eve\x00 Null", "Bell\x07 Ringer\x7f", "Zoë\x00"])
def test_control_characters_in_a_name_never_reach_the_header(template, name):
    raw = template.personalise(recipient("eve@example.org", name))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", head)
    (address,) = parse(raw)["To"].addresses
    assert address.addr_spec == "eve@example.org"
    assert address.display_name == re.sub(r"[\x00-\x1f\x7f]", "", name)


# --- subject --------------------------------------------------------------------------------------

def test_subject_is_personalised(template):
    assert parse(template.personalise(recipient()))["Subject"] == "Sam, your January news is here"
    nobody = parse(template.personalise(recipient("x@example.org", "")))
    assert nobody["Subject"] == "Friends, your January news is here"
    first = parse(template.personalise(recipient(fields={"first_name": "Samantha"})))
    assert first["Subject"] == "Samantha, your January news is here"
    assert template.subject_for(recipient()) == "Sam, your January news is here"


def test_a_non_ascii_subject_is_rfc2047_encoded_and_decodes_right(template):
    raw = template.personalise(recipient("zoe@example.org", "Zoë Ünal"))
    (subject,) = raw_headers(raw)["subject"]
    assert subject.startswith("=?") and "Zoë" not in subject
    assert parse(raw)["Subject"] == "Zoë, your January news is here"
    emoji = parse(template.personalise(recipient(fields={"first_name": "Ana 🎉"})))
    assert emoji["Subject"] == "Ana 🎉, your January news is here"


def test_an_ascii_subject_is_sent_as_it_is(template):
    (subject,) = raw_headers(template.personalise(recipient()))["subject"]
    assert subject == "Sam, your January news is here"


@pytest.mark.parametrize("value", [
    "Ann\r\nBcc: mallory@example.net", "Ann\nX-Injected: 1", "Ann\rX-Injected: 1", "A\x0bB\x0cC", "A\tB", "A\x00B",
    "Ann\u2028X-Injected: 1", "x" * 2000,
])
def test_a_merge_value_cannot_add_header_lines_to_the_subject(template, value):
    """Only CRLF ends a header line on the wire, but parsers also split on lone CR, LF and others:
    whatever a value holds, the Subject stays one header of printable, short lines."""
    raw = template.personalise(recipient(fields={"first_name": value}))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n", head)
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    message = parse(raw)
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert len(message.get_all("Subject")) == 1
    assert message["Subject"].endswith(", your January news is here")
    assert raw_headers(raw).keys() >= {"subject", "to", "from"}


# --- list headers (RFC 2369, RFC 8058) --------------------------------------------------------------

def test_list_unsubscribe_is_exactly_the_url_in_angle_brackets(template):
    person = recipient()
    headers = raw_headers(template.personalise(person))
    assert headers["list-unsubscribe"] == [f"<{person.unsubscribe_url}>"]
    assert headers["list-unsubscribe-post"] == ["List-Unsubscribe=One-Click"]
    assert headers["list-id"] == [LIST_ID]


def test_a_long_list_unsubscribe_url_is_never_rfc2047_encoded(example):
    url = f"{BASE}/u/" + "A1b2-_." * 28 + "xyzw"  # 200+ characters, still one token
    assert len(url) > 200
    template = MessageTemplate(example, Envelope(SENDER, LIST_ID, "unsubscribe@example.org"))
    raw = template.personalise(Recipient("sam@example.org", "Sam", {}, url, 1))
    line = next(x for x in raw.split(b"\r\n") if x.lower().startswith(b"list-unsubscribe:"))
    assert b"=?" not in line
    value = raw_headers(raw)["list-unsubscribe"][0]
    assert "=?" not in value
    assert value.startswith(f"<{url}>, <mailto:unsubscribe@example.org")
    assert value.endswith(">")
    # a receiver finds the same two URIs
    uris = re.findall(r"<([^>]*)>", str(parse(raw)["List-Unsubscribe"]))
    assert uris[0] == url and uris[1].startswith("mailto:unsubscribe@example.org")


def test_without_a_mailto_there_is_only_the_https_url(template):
    value = raw_headers(template.personalise(recipient()))["list-unsubscribe"][0]
    assert "mailto:" not in value and value.count("<") == 1


def test_date_and_a_unique_message_id(template):
    ids = set()
    for i in range(50):
        raw = template.personalise(recipient(f"p{i}@example.org", f"P{i}", sid=i + 1))
        message = parse(raw)
        assert len(message.get_all("Message-ID")) == 1 and len(message.get_all("Date")) == 1
        when = parsedate_to_datetime(message["Date"])
        assert when.tzinfo is not None
        assert abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < 120
        msgid = message["Message-ID"]
        assert re.fullmatch(r"<[^<>@\s]+@example\.org>", msgid)
        ids.add(msgid)
    assert len(ids) == 50


# --- the body -------------------------------------------------------------------------------------

def test_first_name_comes_from_fields_or_the_first_word_of_the_name(template):
    text, body = parts(parse(template.personalise(recipient(name="Sam Jones"))))
    assert "Dear Sam," in text and "Dear Sam," in body
    text, body = parts(parse(template.personalise(recipient(name="Samuel Jones", fields={"first_name": "Sammy"}))))
    assert "Dear Sammy," in text and "Dear Sammy," in body
    assert "Samuel" not in text


def test_custom_fields_and_defaults(template):
    text, body = parts(parse(template.personalise(recipient(fields={"town": "Preston"}))))
    assert "spring in Preston." in re.sub(r"\s+", " ", text)
    assert "in Preston." in body
    text, body = parts(parse(template.personalise(recipient("x@example.org", "", {}))))
    assert "Dear friend," in text and "Dear friend," in body
    assert "spring in our town." in re.sub(r"\s+", " ", text)
    assert "in our town." in body
    # an empty value takes the default, like a missing one
    text, _ = parts(parse(template.personalise(recipient(fields={"town": ""}))))
    assert "spring in our town." in re.sub(r"\s+", " ", text)


def test_the_footer_link_is_the_header_url(template):
    person = recipient(sid=42)
    raw = template.personalise(person)
    text, body = parts(parse(raw))
    header_url = raw_headers(raw)["list-unsubscribe"][0][1:-1]
    assert header_url == person.unsubscribe_url
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', body)]
    assert header_url in hrefs
    assert f"Unsubscribe: {header_url}" in text
    assert Tokens("k").read_unsubscribe(header_url.rsplit("/", 1)[1]).subscriber_id == 42


def test_html_special_values_are_escaped_in_html_and_literal_in_text(template):
    nasty = '<b>&"'
    text, body = parts(parse(template.personalise(recipient(name="X Y", fields={"first_name": nasty,
                                                                                 "town": nasty}))))
    assert f"Dear {nasty}," in text
    assert nasty not in body
    assert "Dear &lt;b&gt;&amp;&quot;," in body
    assert "<b>&" not in body.replace("<b>&amp;", "")  # no raw injected tag


@pytest.mark.parametrize("value", ["two\nlines", "a = b == c=", "=3D", "🎉 Zoë", "trailing space ", "x" * 200])
def test_awkward_values_round_trip(template, value):
    text, body = parts(parse(template.personalise(recipient(fields={"town": value}))))
    assert f"spring in {value}." in text
    assert f"in {html.escape(value)}." in body


@pytest.mark.parametrize("person", [
    Recipient("sam@example.org", "Sam Jones", {"town": "Preston"}, url_for(1), 1),
    Recipient("zoe@example.org", "Zoë Ünal", {"first_name": "Zo", "town": "Ünal's <place> & \"co\""}, url_for(2), 2),
    Recipient("e@example.org", "", {"town": "line\nbreak = 🎉"}, url_for(3), 3),
    Recipient("n@example.org", "Nobody", {}, url_for(4), 4),
])
@pytest.mark.parametrize("which", ["example", "reference"])
def test_cheap_personalisation_equals_the_reference_substitution(which, person, request):
    rendered = request.getfixturevalue(which)
    template = MessageTemplate(rendered, Envelope(SENDER, LIST_ID))
    text, body = parts(parse(template.personalise(person)))
    values = person.values()
    assert body == substitute(rendered.html, values, escape=True)
    assert text == substitute(rendered.text, values, escape=False)


def test_reference_issue_message_carries_the_link_and_no_merge_syntax(reference):
    template = MessageTemplate(reference, Envelope(SENDER, LIST_ID))
    person = recipient()
    raw = template.personalise(person)
    message = assert_well_formed(raw)
    assert message["Subject"] == "LVRN News: December 2020"
    text, body = parts(message)
    assert person.unsubscribe_url in re.findall(r'href="([^"]*)"', body)
    assert person.unsubscribe_url in text
    assert "Trauma informed" in body and "Trauma informed" in text


def test_proof_recipient_with_only_an_address(template):
    url = f"{BASE}/u/{Tokens('k').proof()}"
    message = assert_well_formed(template.personalise(Recipient("proof@example.org", unsubscribe_url=url)))
    assert_resolved(message)
    assert message["Subject"] == "Friends, your January news is here"


# --- the sender -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sender", ["", "News <>", "not an address", "news", "@", "a@b@c", "News news@example.org"])
def test_a_bad_sender_is_refused(example, sender):
    with pytest.raises(mailer.MailerError):
        MessageTemplate(example, Envelope(sender, LIST_ID))


@pytest.mark.parametrize("sender", ["news@example.org", "News <news@example.org>", "Zoë's News <news@example.org>"])
def test_good_senders_are_accepted(example, sender):
    raw = MessageTemplate(example, Envelope(sender, LIST_ID)).personalise(recipient())
    (address,) = parse(raw)["From"].addresses
    assert address.addr_spec == "news@example.org"
