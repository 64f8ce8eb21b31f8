"""Issue 12: hostile text in issue files and hostile subscriber data in messages (merge fields, markers).

- Braces an author escaped (`&#123;&#123; 7*7 &#125;&#125;`, `\\{\\{`), which Markdown and the HTML
  sanitiser decode to `{{`, are literal text in the email, the text part and the web version: never a
  traceback, never a merge field, never evaluated (`{{ 7*7 }}` never becomes 49).
- Text holding the renderer's own stand-ins (the fixed `zqmf…fmqz`, `zqassetprefixqz`, region markers of
  earlier versions) renders as that text: each render's stand-ins carry a random key.
- A subscriber's data is never a link's address: a merge field as a whole link target, image src, or in a
  URL's scheme or host is an error at its line from build and check; in a path or query it is
  percent-encoded per recipient, so a sign-up named `javascript:alert(document.domain)` gets no such href.

Each case runs on the library, and the main ones through the real `newsletter build`, `check` and `send`
(file transport, SQLite and PostgreSQL).
"""
from __future__ import annotations

import email
import email.policy
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from components import IssueInvalid, RenderedIssue, check_issue, load_issue, render_issue, substitute
from components.merge import ADDRESS_MESSAGE
from mailer import Envelope, MessageTemplate, Recipient
from tests.ses_peer import cli_env, newsletter

HOSTILE_NAME = "javascript:alert(document.domain)"
KEYED_MARKER = re.compile(r"zq[0-9a-f]{16}")  # any render's own stand-in
OLD_EMAIL_TOKEN = "zqmfpn5sazlnmfuwyid5pufmqz"  # what the fixed-marker renderer made of {{ email }}
OLD_MARKERS = f"{OLD_EMAIL_TOKEN} zqmfabcfmqz zqmf!!fmqz zqassetprefixqz zqemailonlyqz kept zqendemailonlyqz " \
              "zqwebonlyqz also zqendwebonlyqz"


class _Page(HTMLParser):
    """Visible text (entities decoded) and every link of an HTML document."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hrefs: list[str] = []
        self._skip = 0
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("style", "title")
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src")]

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def person(name: str = "Sam Jones", fields: dict[str, str] | None = None) -> Recipient:
    return Recipient("sam@example.org", name, fields or {}, "https://news.example.org/u/tok", 1)


def personalised(rendered: RenderedIssue, recipient: Recipient) -> tuple[str, str, email.message.EmailMessage]:
    """(text part, HTML part, the parsed message) of one recipient's message, as a client reads it."""
    raw = MessageTemplate(rendered, Envelope("News <news@example.org>", "<news.example.org>")).personalise(recipient)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, body, message


def issue_with(*blocks: str, subject: str = "Hostile news") -> str:
    lines = [f"subject: {subject!r}", "preheader: Merge fields are data", "blocks:",
             "  - masthead: {title: Hostile news}", *(f"  - {b}" for b in blocks)]
    return "\n".join(lines) + "\n"


def no_marker_left(rendered: RenderedIssue) -> None:
    for name, out in (("html", rendered.html), ("text", rendered.text), ("web", rendered.web_html),
                      ("subject", rendered.subject)):
        assert not KEYED_MARKER.search(out), f"a render stand-in leaked into the {name}"


# --- braces the author escaped are text ------------------------------------------------------------------

ESCAPED = [
    ("&#123;&#123; 7*7 &#125;&#125;", "{{ 7*7 }}"),
    ("&#x7b;&#x7b;email&#x7d;&#x7d;", "{{email}}"),
    ("&lbrace;&lbrace; email &rbrace;&rbrace;", "{{ email }}"),
    ("\\\\{\\\\{ name \\\\}\\\\}", "{{ name }}"),  # Markdown backslash escapes (doubled once for YAML)
    ("&#123;&#123;&#123; first_name &#125;&#125;&#125;", "{{{ first_name }}}"),
    ("{% if true %}x{% endif %} ${email} %FNAME%", "{% if true %}x{% endif %} ${email} %FNAME%"),
]


@pytest.mark.parametrize("written, shown", ESCAPED)
def test_escaped_braces_in_a_text_block_are_literal_text_everywhere(write_issue, written: str, shown: str) -> None:
    path = write_issue(issue_with(f'text: "Before {written} after"'))
    issue = load_issue(path)
    assert [f for f in check_issue(issue) if f.level == "error"] == []
    rendered = render_issue(issue)
    no_marker_left(rendered)
    assert f"Before {shown} after" in _Page(rendered.web_html).visible
    assert f"Before {shown} after" in " ".join(substitute(rendered.text, {}, escape=False).split())
    # Per recipient: the very text, not a field filled with their data, and nothing evaluated.
    text, body, _ = personalised(rendered, person())
    assert f"Before {shown} after" in _Page(body).visible
    assert f"Before {shown} after" in " ".join(text.split())
    for part in (text, body):
        assert "sam@example.org" not in part and "Sam" not in part
    assert "49" not in text and "49" not in _Page(body).visible


def test_escaped_braces_inside_a_raw_html_link_stay_text(write_issue) -> None:
    path = write_issue(issue_with(
        "text: '<a href=\"https://example.org/&#123;&#123;email&#125;&#125;\" "
        "title=\"&#123;&#123; email &#125;&#125;\">profile</a>'"))
    rendered = render_issue(path)
    _, body, _ = personalised(rendered, person())
    assert "https://example.org/{{email}}" in _Page(body).hrefs
    assert "sam@example.org" not in body


def test_a_literal_brace_next_to_a_merge_field_keeps_both(write_issue) -> None:
    path = write_issue(issue_with('text: "&#123;{{ first_name }}&#125; and {{{ "{{" if false }}"',
                                  'heading: "Open {{ brace and {% raw %}"'))
    with pytest.raises(IssueInvalid):  # `{{{ "{{" if false }}` is a merge field that does not parse
        load_issue(path)
    path = write_issue(issue_with('text: "&#123;{{ first_name }}&#125;!"', 'heading: "Open {{ brace and {% raw %}"'))
    text, body, _ = personalised(render_issue(path), person("Ann Lee"))
    assert "{Ann}!" in _Page(body).visible and "{Ann}!" in text
    assert "Open {{ brace and {% raw %}" in _Page(body).visible
    assert "Open {{ brace and {% raw %}" in text


def test_jinja_syntax_in_a_plain_field_is_an_error_at_its_line_never_evaluated(write_issue) -> None:
    path = write_issue(issue_with("heading: 'Sum: {{ 7*7 }}'"))
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    (problem,) = info.value.problems
    assert problem.line == 5 and problem.path == "blocks[1].heading"
    assert "{{ 7*7 }} is not a merge field" in problem.message


# --- the renderer's own markers --------------------------------------------------------------------------


def test_text_holding_old_marker_strings_renders_as_that_text(write_issue) -> None:
    path = write_issue(issue_with(f"text: {OLD_MARKERS!r}", f"heading: {OLD_EMAIL_TOKEN!r}",
                                  "button: {label: " + OLD_EMAIL_TOKEN + ", url: 'https://example.org/zqassetprefixqz'}",
                                  subject=f"News {OLD_EMAIL_TOKEN}"))
    rendered = render_issue(path)
    no_marker_left(rendered)
    for document in (rendered.html, rendered.web_html):
        page = _Page(document)
        assert OLD_MARKERS in page.visible
        assert page.visible.count(OLD_EMAIL_TOKEN) >= 3
        assert "https://example.org/zqassetprefixqz" in page.hrefs
    assert OLD_MARKERS in " ".join(rendered.text.split())
    assert {f.name for f in rendered.merge_fields} == {"unsubscribe_url"}  # the footer's, nothing from the text
    text, body, message = personalised(rendered, person())
    assert "sam@example.org" not in text + body
    assert message["Subject"] == f"News {OLD_EMAIL_TOKEN}"


def test_each_render_uses_new_markers_and_the_output_is_the_same(write_issue) -> None:
    path = write_issue(issue_with('text: "Hi {{ first_name }}, see [this](https://example.org/?e={{ email }})"',
                                  "image: {src: images/pic.png, alt: A picture}"))
    first, second = render_issue(path), render_issue(path)
    assert (first.html, first.text, first.web_html) == (second.html, second.text, second.web_html)
    assert first.mjml != second.mjml  # the stand-ins inside differ from render to render
    no_marker_left(first)


# --- merge fields in links ------------------------------------------------------------------------------

REFUSED = [
    ('text: "[read more]({{ name }})"', "blocks[1].text", "{{ name }}"),
    ('text: "[x]({{ fields.site }})"', "blocks[1].text", "{{ fields.site }}"),
    ('text: "[x](https://{{ fields.host }}/x)"', "blocks[1].text", "https://{{ fields.host }}/x"),
    ('text: "[x](https://{{ fields.host }}.example.org/)"', "blocks[1].text", "https://{{ fields.host }}.example.org/"),
    ('text: "[x](https://u:{{ fields.pw }}@example.org/)"', "blocks[1].text", "https://u:{{ fields.pw }}@example.org/"),
    ('text: "[x](mailto:{{ email }})"', "blocks[1].text", "mailto:{{ email }}"),
    ('text: "<a href=\'{{ name }}\'>x</a>"', "blocks[1].text", "{{ name }}"),
    ('text: "<https://{{ fields.host }}/x>"', "blocks[1].text", "https://{{ fields.host }}/x"),
    ('button: {label: Go, url: "https://{{ fields.host }}/x"}', "blocks[1].button", "https://{{ fields.host }}/x"),
    ('image: {src: "https://{{ fields.host }}/a.png", alt: A}', "blocks[1].image", "https://{{ fields.host }}/a.png"),
    ('image: {src: images/pic.png, alt: A, href: "https://{{ fields.host }}/"}', "blocks[1].image",
     "https://{{ fields.host }}/"),
    ('contact: {name: Us, email: "{{ email }}"}', "blocks[1].contact", "mailto:{{ email }}"),
]


@pytest.mark.parametrize("block, where, link", REFUSED)
def test_a_merge_field_as_a_links_address_or_host_is_an_error_naming_the_link(write_issue, block: str, where: str,
                                                                              link: str) -> None:
    path = write_issue(issue_with(block))
    try:  # a URL field's validator refuses it while loading; a link in Markdown while rendering
        issue = load_issue(path)
    except IssueInvalid as refused:
        problems = refused.problems
        assert len(problems) == 1 and problems[0].line == 5 and problems[0].path.startswith(f"{where}.")
        assert problems[0].message == ADDRESS_MESSAGE, problems
        assert str(path) in str(refused)
        return
    with pytest.raises(IssueInvalid) as info:
        render_issue(issue)
    problems = info.value.problems
    assert problems and {(p.line, p.path) for p in problems} == {(5, where)}
    assert any(p.message == f"{ADDRESS_MESSAGE} ({link})" for p in problems), problems
    assert str(path) in str(info.value)
    findings = [f for f in check_issue(issue) if f.level == "error"]
    assert findings and all(ADDRESS_MESSAGE in f.message and f.line == 5 for f in findings)


def test_a_merge_field_as_a_whole_button_url_is_refused_by_validation(write_issue) -> None:
    with pytest.raises(IssueInvalid) as info:
        load_issue(write_issue(issue_with('button: {label: Go, url: "{{ email }}"}')))
    assert [(p.line, p.path) for p in info.value.problems] == [(5, "blocks[1].button.url")]


ALLOWED = [
    'text: "[Unsubscribe]({{ unsubscribe_url }})"',
    'text: "[p](https://example.org/p/{{ fields.id }}?n={{ name }}#{{ email }})"',
    'text: "[m](mailto:news@example.org?subject={{ name }})"',
    'text: "See https://{{ fields.host }}/ as text, and href=\\"{{ name }}\\" as text"',
    'button: {label: "Go {{ name }}", url: "https://example.org/go?who={{ email }}"}',
    "contact: {name: Us, social: [{network: twitter, handle: '{{ name }}'}]}",
]


@pytest.mark.parametrize("block", ALLOWED)
def test_merge_fields_in_a_path_or_query_or_as_a_system_link_are_fine(write_issue, block: str) -> None:
    rendered = render_issue(write_issue(issue_with(block)))
    no_marker_left(rendered)
    _, body, _ = personalised(rendered, person(HOSTILE_NAME, {"id": "../admin", "host": "evil.example"}))
    for href in _Page(body).hrefs:
        assert not re.sub(r"[\x00-\x20]", "", href).lower().startswith("javascript:"), href
        assert "evil.example" not in href and "../" not in href, href


def test_a_hostile_name_never_becomes_an_href_and_query_values_are_percent_encoded(write_issue) -> None:
    path = write_issue(issue_with(
        'text: "Dear {{ name }}, your [profile](https://example.org/p?n={{ name }}&q={{ fields.q }}) is ready."'))
    rendered = render_issue(path)
    text, body, _ = personalised(rendered, person(HOSTILE_NAME, {"q": "a b&c=d#e/f?ü<x>\"'"}))
    expected = ("https://example.org/p?n=javascript%3Aalert%28document.domain%29"
                "&q=a%20b%26c%3Dd%23e%2Ff%3F%C3%BC%3Cx%3E%22%27")
    page = _Page(body)
    assert expected in page.hrefs
    assert not [h for h in page.hrefs if HOSTILE_NAME in h or h.lower().startswith("javascript")]
    assert f"Dear {HOSTILE_NAME}, your profile is ready." in page.visible  # in text it is just text
    assert expected in text and f"Dear {HOSTILE_NAME}," in text
    # The web version fills defaults the same way, with no personal data.
    assert "https://example.org/p?n=&q=" in _Page(rendered.web_html).hrefs


def test_a_template_made_by_hand_still_cannot_take_a_scheme_from_a_value() -> None:
    # The build refuses these; a template that reached the mailer anyway percent-encodes the value.
    built = '<a href="{{ name }}" title="{{ name }}">{{ name }}</a><img src="{{ fields.pic }}" alt="">'
    out = substitute(built, {"name": HOSTILE_NAME, "fields": {"pic": "https://evil.example/p.png"}}, escape=True)
    page = _Page(out)
    assert page.hrefs == ["javascript%3Aalert%28document.domain%29", "https%3A%2F%2Fevil.example%2Fp.png"]
    assert page.visible == HOSTILE_NAME
    assert substitute("Hi {{ name }}", {"name": HOSTILE_NAME}, escape=False) == f"Hi {HOSTILE_NAME}"


def test_header_values_cannot_add_header_lines(write_issue) -> None:
    rendered = render_issue(write_issue(issue_with("text: hi", subject="Hi {{ first_name }} from {{ fields.town }}")))
    nasty = "Ann\r\nBcc: mallory@example.net\r\n\r\n<b>body</b>"
    _, _, message = personalised(rendered, person("Eve\r\nCc: x@example.net", {"first_name": nasty, "town": "A\x0bB"}))
    assert message["Bcc"] is None and message["Cc"] is None
    assert len(message.get_all("Subject")) == 1
    assert "Ann" in message["Subject"] and "\n" not in message["Subject"]
    assert [a.addr_spec for a in message["To"].addresses] == ["sam@example.org"]


# --- any subscriber data -------------------------------------------------------------------------------

PROPERTY_ISSUE = issue_with(
    'text: "Dear {{ name }} ({{ first_name }}), see [your page](https://example.org/p?n={{ name }}&q={{ fields.q }})."',
    'button: {label: "Open {{ fields.q }}", url: "https://example.org/b/{{ fields.q }}"}',
    subject="Hi {{ first_name }} from {{ fields.q }}")
SAFE_URL = re.compile(r"[A-Za-z0-9_.~%-]*")
DATA = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from([
    HOSTILE_NAME, "{{ email }}", "&#123;&#123; email &#125;&#125;", "zqmfpn5sazlnmfuwyid5pufmqz", "\r\nBcc: x@y.z",
    '"><script>alert(1)</script>', "https://evil.example/", "//evil.example", "%0d%0aX: 1", "\u2028\u0085\x0b"])


@pytest.fixture(scope="module")
def property_template(tmp_path_factory: pytest.TempPathFactory) -> MessageTemplate:
    path = tmp_path_factory.mktemp("property") / "p.yaml"
    path.write_text(PROPERTY_ISSUE, "utf-8")
    return MessageTemplate(render_issue(path), Envelope("News <news@example.org>", "<news.example.org>"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=DATA, q=DATA)
@example(name=HOSTILE_NAME, q="a b&c=d#e/f?")
def test_any_subscriber_data_makes_a_well_formed_message_whose_links_it_cannot_steer(
        property_template: MessageTemplate, name: str, q: str) -> None:
    raw = property_template.personalise(Recipient("p@example.org", name, {"q": q}, "https://news.example.org/u/t", 1))
    raw.decode("ascii")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n", head)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage) and not message.defects
    assert message["Bcc"] is None and len(message.get_all("Subject")) == 1
    assert [a.addr_spec for a in message["To"].addresses] == ["p@example.org"]
    body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    hrefs = _Page(body).hrefs
    page = next(h for h in hrefs if h.startswith("https://example.org/p?"))
    buttons = {h for h in hrefs if h.startswith("https://example.org/b/")}
    assert buttons == {"https://example.org/b/" + quote(q, safe="")}
    n, _, rest = page.removeprefix("https://example.org/p?n=").partition("&q=")
    assert SAFE_URL.fullmatch(n) and SAFE_URL.fullmatch(rest), page
    assert (unquote(n), unquote(rest)) == (name, q)
    assert "<script" not in body


# --- through the real command line -----------------------------------------------------------------------

HOSTILE_TEXT_ISSUE = issue_with(
    'text: "Dear {{ name }}, your [profile](https://example.org/p?n={{ name }}&site={{ fields.site }}) is ready."',
    'text: "Escaped: &#123;&#123; 7*7 &#125;&#125; and &#123;&#123; email &#125;&#125;."',
    f"text: {OLD_MARKERS!r}",
)
HOSTILE_LINK_ISSUE = issue_with('text: "[read more]({{ name }})"')


def _cli_files(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "issues"
    folder.mkdir(exist_ok=True)
    good, bad = folder / "hostile.yaml", folder / "link.yaml"
    good.write_text(HOSTILE_TEXT_ISSUE, "utf-8")
    bad.write_text(HOSTILE_LINK_ISSUE, "utf-8")
    return good, bad


def test_cli_build_and_check(tmp_path: Path) -> None:
    good, bad = _cli_files(tmp_path)
    env = cli_env(f"sqlite:///{tmp_path / 'unused.db'}")
    checked = newsletter(["check", str(good)], env, tmp_path, check=False)
    assert checked.returncode == 0 and "Traceback" not in checked.stderr, checked.stdout + checked.stderr
    newsletter(["build", str(good), "--out", str(tmp_path / "dist")], env, tmp_path)
    built = {p.name: p.read_text("utf-8") for p in (tmp_path / "dist" / "hostile").iterdir()}
    for name in ("email.html", "index.html"):
        visible = _Page(built[name]).visible
        assert "Escaped: {{ 7*7 }} and {{ email }}." in visible and OLD_MARKERS in visible, name
        assert not KEYED_MARKER.search(built[name])
    assert "Escaped: {{\"{\"}}{ 7*7 }} and {{\"{\"}}{ email }}." in built["email.txt"]

    for command in (["check", str(bad)], ["build", str(bad), "--out", str(tmp_path / "dist")]):
        done = newsletter(command, env, tmp_path, check=False)
        out = done.stdout + done.stderr
        assert done.returncode == 1 and "Traceback" not in out, out
        assert f"{bad}:5:" in out and f"{ADDRESS_MESSAGE} ({{{{ name }}}})" in out, out
    assert not (tmp_path / "dist" / "link").exists()


def test_cli_send_fills_hostile_subscriber_data_as_data(db_url: str, tmp_path: Path) -> None:
    good, bad = _cli_files(tmp_path)
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    newsletter(["lists", "create", "news"], env, tmp_path)
    newsletter(["subscribers", "add", "eve@example.org", "--list", "news", "--name", HOSTILE_NAME,
                "--field", "site=https://evil.example/?a=1&b=<i>"], env, tmp_path)

    refused = newsletter(["send", str(bad), "--list", "news", "--yes"], env, tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stdout + refused.stderr
    assert ADDRESS_MESSAGE in refused.stderr
    assert not list(outbox.rglob("*.eml"))

    newsletter(["send", str(good), "--list", "news", "--yes"], env, tmp_path)
    [eml] = list(outbox.rglob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = _Page(body)
    profile = ("https://example.org/p?n=javascript%3Aalert%28document.domain%29"
               "&site=https%3A%2F%2Fevil.example%2F%3Fa%3D1%26b%3D%3Ci%3E")
    assert profile in page.hrefs and profile in text
    assert not [h for h in page.hrefs if re.sub(r"[\x00-\x20]", "", h).lower().startswith("javascript")]
    assert f"Dear {HOSTILE_NAME}, your profile is ready." in page.visible
    assert "Escaped: {{ 7*7 }} and {{ email }}." in page.visible
    assert "Escaped: {{ 7*7 }} and {{ email }}." in " ".join(text.split())
    assert OLD_MARKERS in page.visible and "eve@example.org" not in body
    assert "<i>" not in body and "{{" not in html.unescape(body).replace("{{ 7*7 }}", "").replace("{{ email }}", "")
