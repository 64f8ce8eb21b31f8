"""Each lint rule of `check`, with a crafted issue that breaks it."""
from __future__ import annotations

from dataclasses import replace

from components import Footer, load_issue, render_issue
from components import check_issue as lint
from components.lint import GMAIL_CLIP, STYLE_LIMIT

# A sender's real details: the default theme's placeholders are a warning of their own (test_authoring.py).
FOOTER = Footer("Riverside Runners", "12 Mill Lane, Preston PR1 8XX", "You joined the club's mailing list.")


def check_issue(issue, rendered=None, clients=None):
    return lint(issue, rendered, clients, footer=FOOTER)

BASE = """\
subject: {subject}
preheader: {preheader}
blocks:
  - masthead: {{title: Test News}}
{blocks}
"""


def _issue(write_issue, blocks: str, subject: str = "Hello", preheader: str = "Preview text"):
    return load_issue(write_issue(BASE.format(subject=subject, preheader=preheader, blocks=blocks)))


def _rules(findings, level=None):
    """The rules found; accessibility ones (tests/test_a11y.py) only where a test asks for them."""
    return sorted({f.rule for f in findings if (level is None or f.level == level)
                   and (not f.rule.startswith("a11y-") or level == "a11y")})


def test_clean_issue_has_no_findings(write_issue):
    issue = _issue(write_issue, '  - text: "Hello {{ first_name | default(\\"you\\") }}"')
    assert check_issue(issue) == []


def test_unknown_merge_field_is_an_error_with_its_line(write_issue):
    issue = _issue(write_issue, '  - text: Hi\n  - text: "Hello {{ firstname }}"')
    findings = check_issue(issue)
    assert _rules(findings, "error") == ["merge-field"]
    assert findings[0].line == 6 and "firstname" in findings[0].message


def test_empty_alt_text_is_an_error_unless_declared_decorative(write_issue):
    issue = _issue(write_issue, '  - image: {src: images/pic.png, alt: ""}')
    assert [f.rule for f in check_issue(issue) if f.level == "error"] == ["a11y-alt-text"]
    decorative = _issue(write_issue, '  - image: {src: images/pic.png, alt: "", decorative: true}', "d.yaml")
    assert [f.rule for f in check_issue(decorative) if f.rule.startswith("a11y")] == []


def test_http_links_are_warned_about(write_issue):
    issue = _issue(write_issue, '  - button: {label: "Our website", url: "http://example.org/"}\n'
                                '  - text: "[the report](http://example.org/report)"')
    findings = [f for f in check_issue(issue) if f.rule == "insecure-link"]
    assert len(findings) == 2 and {f.line for f in findings} == {5, 6}


def test_over_gmail_clip_is_an_error_naming_the_biggest_blocks(write_issue):
    big = "  - text: |\n" + "".join(f"      Paragraph {i} " + "word " * 60 + "\n\n" for i in range(400))
    issue = _issue(write_issue, "  - heading: Small\n" + big)
    rendered = render_issue(issue)
    assert len(rendered.html.encode()) > GMAIL_CLIP
    clip = [f for f in check_issue(issue, rendered) if f.rule == "gmail-clip"]
    assert len(clip) == 1 and clip[0].level == "error"
    assert "KB; Gmail clips it past 102 KB" in clip[0].message
    assert clip[0].message.split("Biggest blocks: ")[1].startswith("blocks[2].text (")


def test_size_warnings_below_the_clip(write_issue):
    text = "  - text: |\n" + "".join("      " + "word " * 60 + "\n\n" for _ in range(260))
    issue = _issue(write_issue, text)
    rendered = render_issue(issue)
    size = len(rendered.html.encode())
    assert 90 * 1024 < size < GMAIL_CLIP, size
    assert _rules(check_issue(issue, rendered)) == ["libero-clip", "size"]


def test_big_style_block_is_an_error(write_issue):
    issue = _issue(write_issue, "  - heading: Hi")
    rendered = render_issue(issue)
    bloated = replace(rendered, html=rendered.html.replace(
        "</head>", "<style>" + ".x{color:red}" * (STYLE_LIMIT // 10) + "</style></head>"))
    assert "style-size" in _rules(check_issue(issue, bloated), "error")


def test_missing_preheader_and_long_subject_are_warnings(write_issue):
    issue = _issue(write_issue, "  - heading: Hi", subject="S" * 90, preheader='""')
    assert _rules(check_issue(issue)) == ["preheader", "subject-length"]


def test_an_accepted_warning_is_left_out_but_an_error_never_is(write_issue):
    accept = ('accept:\n  - {rule: subject-length, reason: "A long subject on purpose"}\n'
              '  - {rule: merge-field, reason: "Trying to hide an error"}\n')
    text = BASE.format(subject="S" * 90, preheader="Preview text",
                       blocks='  - text: "Hello {{ firstname }}"').replace("blocks:", accept + "blocks:")
    findings = check_issue(load_issue(write_issue(text)))
    assert "subject-length" not in _rules(findings)
    assert _rules(findings, "error") == ["merge-field"]  # errors cannot be accepted


def test_accepting_an_unknown_rule_is_an_error(write_issue):
    text = BASE.format(subject="Hi", preheader="Preview", blocks="  - text: Hello").replace(
        "blocks:", 'accept:\n  - {rule: no-such-rule, reason: "typo"}\nblocks:')
    findings = check_issue(load_issue(write_issue(text)))
    assert [(f.level, f.rule) for f in findings] == [("error", "accept")] and "no-such-rule" in findings[0].message


def test_client_support_findings_name_the_feature_and_the_clients(write_issue):
    # An inline SVG in a text block is not allowed through (nh3), so use what the theme can:
    # a Markdown table is rendered as <table>, a basic; a crafted HTML is checked directly instead.
    from components.lint import _client_support
    issue = _issue(write_issue, "  - text: Hello")
    rendered = replace(render_issue(issue), html='<html><body><div style="display:flex">x</div></body></html>')
    findings = _client_support(issue, rendered, None)
    flex = [f for f in findings if "css-display-flex" in f.message]
    assert flex and flex[0].level == "warning" and any(c.startswith("outlook") for c in flex[0].clients)
    only_apple = _client_support(issue, rendered, ("apple-mail",))
    assert not [f for f in only_apple if "css-display-flex" in f.message]
