"""Merge fields (design §3, §6): parsed at build time, left intact in the email, resolved per recipient.

The unit tests drive components.merge directly; the end-to-end tests build a
real issue into a temporary folder and read the files a sender would mail.
"""
from __future__ import annotations

import html as htmlmod
import re
from pathlib import Path

import pytest

from components import MergeField, fields_in, load_issue, merge, render_issue, substitute
from components.lint import check_issue
from components.merge import MergeSyntaxError, parse_field

# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, name, default", [
    (" first_name ", "first_name", None),
    ("first_name", "first_name", None),
    (" email ", "email", None),
    (' first_name | default("friend") ', "first_name", "friend"),
    ('first_name|default("friend")', "first_name", "friend"),
    (" first_name | default('friend') ", "first_name", "friend"),
    ('  name  |  default ( "a b, c" )  ', "name", "a b, c"),
    (' email | default("") ', "email", ""),
    (" fields.team ", "fields.team", None),
    (' fields.team-name | default("none") ', "fields.team-name", "none"),
    (" default(\"x\") ", None, None),  # looks like a filter, but is a bare name followed by junk
])
def test_parse_field_valid_forms(expression: str, name: str | None, default: str | None) -> None:
    if name is None:
        with pytest.raises(MergeSyntaxError):
            parse_field(expression)
        return
    assert parse_field(expression) == MergeField(name, default)


@pytest.mark.parametrize("expression", [
    " first name ",            # a space in the name
    "",                        # nothing
    "   ",
    " 1abc ",                  # starts with a digit
    " a.b.c ",                 # only fields.<name> has a dot
    " first_name | upper ",    # only `default` is a filter
    " first_name | default(friend) ",   # unquoted default
    ' first_name | default("a"b") ',    # broken quoting
    ' first_name | default("x") | default("y") ',
    " first_name }} {{ email ",
    " fields. ",
])
def test_parse_field_invalid_forms(expression: str) -> None:
    with pytest.raises(MergeSyntaxError) as info:
        parse_field(expression)
    message = str(info.value)
    assert "{{%s}}" % expression in message
    assert 'first_name | default("friend")' in message  # it shows the right spelling


def test_merge_syntax_error_is_a_value_error() -> None:
    assert issubclass(MergeSyntaxError, ValueError)


def test_fields_in_finds_every_field_in_order() -> None:
    text = 'Dear {{ first_name | default("friend") }} ({{email}}), team {{ fields.team }}. {{ email }}'
    assert fields_in(text) == [
        MergeField("first_name", "friend"), MergeField("email"), MergeField("fields.team"), MergeField("email")]


def test_fields_in_without_fields() -> None:
    assert fields_in("no fields here { single } braces") == []
    assert fields_in("") == []


def test_fields_in_spans_lines() -> None:
    assert fields_in("Hi {{\n  first_name\n}}!") == [MergeField("first_name")]


def test_fields_in_raises_on_the_first_malformed_field() -> None:
    with pytest.raises(MergeSyntaxError, match=r"\{\{ first name \}\}"):
        fields_in("{{ email }} and {{ first name }}")


@pytest.mark.parametrize("field, source", [
    (MergeField("email"), "{{ email }}"),
    (MergeField("first_name", "friend"), '{{ first_name | default("friend") }}'),
    (MergeField("first_name", ""), '{{ first_name | default("") }}'),
    (MergeField("fields.team", "none"), '{{ fields.team | default("none") }}'),
    (MergeField("name", 'say "hi"'), "{{ name | default('say \"hi\"') }}"),
])
def test_source_is_canonical_and_parses_back(field: MergeField, source: str) -> None:
    assert field.source() == source
    assert fields_in(field.source()) == [field]


def test_sloppy_spelling_gets_the_canonical_source() -> None:
    (field,) = fields_in("{{first_name|default('friend')}}")
    assert field.source() == '{{ first_name | default("friend") }}'


@pytest.mark.parametrize("name, known", [
    ("first_name", True), ("last_name", True), ("name", True), ("email", True),
    ("unsubscribe_url", True), ("web_url", True), ("fields.team", True), ("fields.anything", True),
    ("firstname", False), ("e_mail", False), ("team", False),
])
def test_known_fields(name: str, known: bool) -> None:
    assert MergeField(name).known is known


# --- hide / restore / resolve: one render's placeholders ----------------------------------------------

TEMPLATE = 'Hi {{ first_name | default("friend") }} <{{email}}> of {{ fields.team }}'


def test_hide_leaves_only_alphanumeric_tokens() -> None:
    p = merge.Placeholders()
    hidden = p.hide(TEMPLATE)
    assert "{{" not in hidden and "}}" not in hidden
    tokens = re.findall(r"zq[0-9a-f]{16}m\d+qz", hidden)
    assert len(tokens) == 3 and len(merge.TOKEN_RE.findall(hidden)) == 3
    # Letters and digits only: Markdown, HTML escaping and URL quoting leave them alone.
    assert all(t.isalnum() for t in tokens)
    assert hidden.startswith("Hi zq") and " <zq" in hidden and " of zq" in hidden


def test_each_render_has_its_own_key_so_no_text_can_forge_a_token() -> None:
    first, second = merge.Placeholders(), merge.Placeholders()
    assert first.key != second.key and re.fullmatch(r"[0-9a-f]{16}", first.key)
    forged = second.hide("{{ email }}")
    # A token of another render (or one an author copied from anywhere) is just text to this one.
    assert first.restore(forged, escape=False) == forged
    assert first.fields(forged) == ()


def test_restore_plain_gives_the_canonical_source() -> None:
    p = merge.Placeholders()
    assert p.restore(p.hide(TEMPLATE), escape=False) == (
        'Hi {{ first_name | default("friend") }} <{{ email }}> of {{ fields.team }}')


def test_restore_escaped_gives_the_html_safe_form() -> None:
    p = merge.Placeholders()
    restored = p.restore(p.hide(TEMPLATE), escape=True)
    assert restored == 'Hi {{ first_name | default(&quot;friend&quot;) }} <{{ email }}> of {{ fields.team }}'
    assert '"' not in restored


def test_restore_survives_url_quoting_and_html_escaping_of_the_tokens() -> None:
    from urllib.parse import quote
    p = merge.Placeholders()
    hidden = p.hide("https://example.org/u?e={{ email }}&n={{ first_name | default(\"a b\") }}")
    mangled = htmlmod.escape(quote(hidden, safe=":/?=&"))
    assert p.restore(mangled, escape=False).endswith('e={{ email }}&amp;n={{ first_name | default("a b") }}')


@pytest.mark.parametrize("literal, html_form, text_form", [
    ("{{ 7*7 }}", "&#123;{ 7*7 }}", '{{"{"}}{ 7*7 }}'),
    ("{{{", "&#123;&#123;{", '{{"{"}}{{"{"}}{'),
    ("{ {", "{ {", "{ {"),
    ("a } b {", "a } b {", "a } b {"),
])
def test_restore_escapes_literal_braces_that_would_pair_up(literal: str, html_form: str, text_form: str) -> None:
    p = merge.Placeholders()
    assert p.restore(literal, escape=True) == html_form
    assert p.restore(literal, escape=False) == text_form
    # ... and the mailer reads them back as the very text, never as a field.
    assert substitute(p.restore(literal, escape=False), {}, escape=False) == literal
    assert htmlmod.unescape(substitute(p.restore(literal, escape=True), {}, escape=True)) == literal


def test_a_literal_brace_before_a_field_stays_literal() -> None:
    p = merge.Placeholders()
    hidden = "{" + p.hide("{{ email }}") + "}"
    text = p.restore(hidden, escape=False)
    assert substitute(text, {"email": "a@example.org"}, escape=False) == "{a@example.org}"
    assert substitute(p.restore(hidden, escape=True), {"email": "a@example.org"}, escape=True) == (
        "&#123;a@example.org}")


def test_resolve_uses_defaults_and_escapes_for_html() -> None:
    p = merge.Placeholders()
    assert p.resolve(p.hide(TEMPLATE), {}) == "Hi friend <> of "
    assert p.resolve(p.hide("{{ first_name }}"), {"first_name": "<Ann & Bob>"}) == "&lt;Ann &amp; Bob&gt;"


def test_resolve_percent_encodes_inside_a_url() -> None:
    p = merge.Placeholders()
    page = p.hide('<a href="https://example.org/t?team={{ fields.team | default(\"a b&c\") }}">'
                  '{{ fields.team | default("a b&c") }}</a>')
    assert p.resolve(page, {}) == '<a href="https://example.org/t?team=a%20b%26c">a b&amp;c</a>'


def test_fields_lists_each_field_once_in_order() -> None:
    p = merge.Placeholders()
    hidden = p.hide("{{ email }} {{ name }} {{email}}")
    assert p.fields(hidden) == (MergeField("email"), MergeField("name"))


def test_resolve_field_values() -> None:
    field = MergeField("fields.team", "none")
    assert field.resolve({"fields": {"team": "Blue"}}) == "Blue"
    assert field.resolve({"fields": {"other": "x"}}) == "none"
    assert field.resolve({"fields": None}) == "none"
    assert field.resolve({}) == "none"
    assert field.resolve({"fields": "not a mapping"}) == "none"
    assert MergeField("fields.team").resolve({}) == ""
    assert MergeField("fields.age").resolve({"fields": {"age": 42}}) == "42"


# --- substitute: the per-recipient step -------------------------------------------------------------


def test_substitute_plain() -> None:
    text = 'Hi {{ first_name | default("friend") }}, {{ fields.team }}'
    assert substitute(text, {"first_name": "Ann", "fields": {"team": "Blue"}}, escape=False) == "Hi Ann, Blue"
    assert substitute(text, {}, escape=False) == "Hi friend, "


def test_substitute_on_html_unescapes_the_expression_and_escapes_the_value() -> None:
    p = merge.Placeholders()
    built = p.restore(p.hide('<p>Hi {{ first_name | default("friend") }}</p>'), escape=True)
    assert built == "<p>Hi {{ first_name | default(&quot;friend&quot;) }}</p>"
    assert substitute(built, {"first_name": "<Ann & Bob>"}, escape=True) == "<p>Hi &lt;Ann &amp; Bob&gt;</p>"
    assert substitute(built, {}, escape=True) == "<p>Hi friend</p>"


def test_substitute_does_not_expand_merge_fields_inside_values() -> None:
    values = {"first_name": "{{ email }}", "email": "secret@example.org"}
    assert substitute("Hi {{ first_name }}", values, escape=False) == "Hi {{ email }}"
    assert substitute("Hi {{ first_name }}", values, escape=True) == "Hi {{ email }}"


def test_substitute_refuses_a_malformed_expression() -> None:
    with pytest.raises(MergeSyntaxError):
        substitute("Hi {{ first name }}", {}, escape=False)


# --- end to end: build a real issue -----------------------------------------------------------------

ISSUE = """\
subject: 'News for {{ first_name | default("you") }}'
preheader: 'For {{ email }}'
blocks:
  - text: |
      Hello {{ first_name | default("friend") }}, see your [profile](https://example.org/u?e={{ email }}).
  - button:
      label: 'Open {{ fields.team | default("your team") }}'
      url: 'https://example.org/t?team={{ fields.team }}'
"""


@pytest.fixture
def built(write_issue, tmp_path: Path) -> dict[str, str]:
    from newsletter.build import build
    from newsletter.config import Settings
    path = write_issue(ISSUE, name="merge.yaml")
    _, folder = build(path, tmp_path / "dist", Settings())
    return {p.name: p.read_text("utf-8") for p in folder.iterdir() if p.is_file()}


def _hrefs(html: str) -> list[str]:
    return [htmlmod.unescape(h) for h in re.findall(r'href="([^"]*)"', html)]


def test_email_html_keeps_merge_expressions_intact(built: dict[str, str]) -> None:
    html = built["email.html"]
    assert "Hello {{ first_name | default(&quot;friend&quot;) }}," in html
    assert "https://example.org/u?e={{ email }}" in _hrefs(html)
    assert "https://example.org/t?team={{ fields.team }}" in _hrefs(html)
    assert "%7B" not in html.upper()
    for href in _hrefs(html):
        assert "%20" not in href, href
    assert "<title>News for {{ first_name | default(&quot;you&quot;) }}</title>" in html


def test_email_html_substitutes_per_recipient(built: dict[str, str]) -> None:
    html = substitute(built["email.html"], {"first_name": "<Ann & Bob>", "email": "ann@example.org",
                                            "fields": {"team": "Blue"},
                                            "unsubscribe_url": "https://example.org/u/tok"}, escape=True)
    assert "Hello &lt;Ann &amp; Bob&gt;," in html
    # Inside a URL a value is percent-encoded: data, never the link's structure.
    assert "https://example.org/u?e=ann%40example.org" in _hrefs(html)
    assert "https://example.org/t?team=Blue" in _hrefs(html)
    assert "{{" not in html


def test_text_part_keeps_merge_expressions(built: dict[str, str]) -> None:
    text = built["email.txt"]
    assert 'Hello {{ first_name | default("friend") }},' in text
    assert '{{ fields.team | default("your team") }}' in text
    assert "&quot;" not in text


def test_text_part_writes_a_link_with_a_merge_field_out_as_label_and_url(built: dict[str, str]) -> None:
    # A Markdown link is written out as `label (url)` in the text part; a merge
    # field inside the URL must not leave the raw `[label](url)` syntax behind.
    text = " ".join(built["email.txt"].split())
    assert "profile (https://example.org/u?e={{ email }})" in text
    assert "[profile](" not in text


def test_web_version_resolves_defaults_and_has_no_expressions(built: dict[str, str]) -> None:
    web = built["index.html"]
    assert "Hello friend," in web
    assert "Open your team" in web
    assert "{{" not in web and "}}" not in web
    assert "https://example.org/u?e=" in _hrefs(web)


def test_no_token_leaks_into_any_output(built: dict[str, str]) -> None:
    assert set(built) >= {"email.html", "email.txt", "index.html"}
    for name, content in built.items():
        assert "zqmf" not in content, name
        assert "fmqz" not in content, name
        assert "zqasset" not in content and "zqemailonly" not in content and "zqwebonly" not in content, name


def test_subject_keeps_its_merge_field(write_issue) -> None:
    rendered = render_issue(write_issue(ISSUE, name="merge.yaml"))
    assert rendered.subject == 'News for {{ first_name | default("you") }}'
    assert rendered.preheader == "For {{ email }}"
    names = {f.name for f in rendered.merge_fields}
    assert {"first_name", "email", "fields.team", "unsubscribe_url"} <= names


def test_check_reports_unknown_merge_fields_but_not_custom_fields(write_issue) -> None:
    path = write_issue(
        "subject: 'Hi {{ fields.team }}'\n"
        "blocks:\n"
        "  - text: 'Team {{ fields.team | default(\"none\") }}'\n"
        "  - text: 'Hello {{ firstname }}'\n",
        name="lint.yaml")
    findings = check_issue(load_issue(path))
    merge_errors = [f for f in findings if f.rule == "merge-field"]
    assert len(merge_errors) == 1
    (f,) = merge_errors
    assert f.level == "error"
    assert f.line == 4
    assert f.file == str(path)
    assert "firstname" in f.message and "blocks[1].text" in f.message
    assert "fields.team" not in f.message.split("(known")[0]


def test_check_reports_unknown_merge_field_in_the_subject(write_issue) -> None:
    path = write_issue("subject: 'Hi {{ nickname }}'\nblocks:\n  - text: hi\n", name="lint.yaml")
    errors = [f for f in check_issue(load_issue(path)) if f.rule == "merge-field"]
    assert [(f.level, f.line) for f in errors] == [("error", 1)]
    assert "subject" in errors[0].message and "nickname" in errors[0].message
