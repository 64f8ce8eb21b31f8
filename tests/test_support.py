"""Client support (components/support.py): the built emails against caniemail.com's data."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from components import render_issue
from components.errors import ComponentError
from components.support import (
    ALLOWLIST_PATH,
    BASICS,
    DATA_PATH,
    DEFAULT_CLIENTS,
    MSO_PLATFORMS,
    AllowEntry,
    check_support,
    latest_version,
    load_allowlist,
    load_caniemail,
    parse_support,
)

from .conftest import ISSUES


@pytest.fixture(scope="module", params=["2020-12", "2021-01"])
def built(request):
    return render_issue(ISSUES / f"{request.param}.yaml").html


def _slugs(issues, level=None):
    return {i.feature_slug for i in issues if level is None or i.level == level}


def _by_slug(issues):
    return {i.feature_slug: i for i in issues}


# --- the example issues -------------------------------------------------------------------

def test_example_issues_have_no_finding_left_that_is_not_on_the_allowlist(built):
    # Every remaining use of a feature some default client lacks is on the allowlist with its reason
    # (components/support_allowlist.yaml). A new one fails here: fix it, or allowlist it with a reason.
    assert [str(i) for i in check_support(built)] == []


def test_allowlist_hides_mjml_fallbacks_that_are_otherwise_reported(built):
    bare = _slugs(check_support(built, allowlist=()))
    # MJML's hidden preheader, reset CSS, button and image markup, <style> and doctype.
    assert {"css-display-none", "css-opacity", "css-max-height", "css-word-break", "html-style",
            "html-doctype", "html-role"} <= bare
    assert not {"css-display-none", "css-opacity", "html-style", "html-doctype"} & _slugs(check_support(built))


def test_checking_the_reference_issue_is_fast():
    html = render_issue(ISSUES / "2020-12.yaml").html
    assert len(html) > 80_000
    load_caniemail.cache_clear()
    start = time.perf_counter()
    check_support(html)  # loads and indexes the data, then checks
    cold = time.perf_counter() - start
    start = time.perf_counter()
    check_support(html)
    warm = time.perf_counter() - start
    assert warm < 0.1, f"{warm * 1000:.0f} ms"
    assert cold < 0.5, f"{cold * 1000:.0f} ms"  # generous: loaded once per process


# --- crafted HTML -------------------------------------------------------------------------

def test_flex_is_a_warning_naming_outlook():
    issue = _by_slug(check_support('<div style="display:flex">x</div>'))["css-display-flex"]
    assert issue.level == "warning"
    assert "outlook.windows" in issue.clients
    assert all(c.startswith("outlook.") for c in issue.clients)
    assert "display:flex" in issue.where and "<div" in issue.where
    assert issue.feature_title == "display:flex"


def test_svg_is_reported():
    issue = _by_slug(check_support('<p>x</p><svg width="10"><path d="M0 0"/></svg>'))["html-svg"]
    assert {"gmail.desktop-webmail", "outlook.windows", "yahoo.ios"} <= set(issue.clients)
    assert issue.level == "warning"  # Apple Mail shows it


def test_a_feature_no_default_client_supports_is_an_error():
    issues = check_support('<p style="hyphenate-limit-chars: 6 3 3">Hyphenated</p>')
    issue = _by_slug(issues)["css-hyphenate-limit-chars"]
    assert issue.level == "error"
    families = {c.split(".")[0] for c in issue.clients}
    assert families == set(DEFAULT_CLIENTS)


def test_counts_and_notes():
    html = '<a href="#one">1</a><a href="#two">2</a><a href="#three">3</a><a id="one"></a>'
    issue = _by_slug(check_support(html))["html-anchor-links"]
    assert "and 2 more" in issue.where
    assert any("gmail.ios" in note and "anchor" in note.lower() for note in issue.notes)


def test_allowlisted_feature_is_not_reported():
    html = '<div style="display:flex">x</div>'
    assert check_support(html, allowlist=[AllowEntry("css-display-flex", "a test")]) == []
    # a `match` limits the entry to uses whose context contains it
    only_spans = [AllowEntry("css-display-flex", "a test", match="<span")]
    assert _slugs(check_support(html, allowlist=only_spans)) == {"css-display-flex"}
    assert check_support('<span style="display:flex">x</span>', allowlist=only_spans) == []


def test_basics_are_not_reported():
    html = ('<table width="600" cellpadding="0"><tr><td style="padding:10px;margin:0;height:20px;'
            'font-size:16px;line-height:1.5">x</td></tr></table>')
    assert check_support(html, allowlist=()) == []
    assert {"html-table", "css-padding", "css-height"} <= BASICS


def test_outlook_conditional_content_is_checked_against_outlook_only():
    link = '<link rel="stylesheet" href="https://example.org/a.css">'
    assert "html-link" in _slugs(check_support(link))  # Gmail, Yahoo and the new Outlooks drop it
    assert check_support(f"<!--[if mso | IE]>{link}<![endif]-->") == []  # Outlook for Windows reads it
    hidden = check_support('<!--[if mso]><svg width="1"></svg><![endif]-->')
    assert _slugs(hidden) == {"html-svg"}
    assert set(hidden[0].clients) <= MSO_PLATFORMS  # not held against Gmail, Apple Mail, Yahoo
    assert check_support('<!--[if mso]><svg width="1"></svg><![endif]-->', clients=("gmail", "yahoo")) == []


def test_css_in_style_is_not_held_against_clients_without_style():
    # Gmail's mobile webmail drops <style>: the :hover inside is moot there (html-style says so)
    inline = _by_slug(check_support('<p style="opacity:0.5">x</p>', allowlist=()))["css-opacity"]
    in_style = _by_slug(check_support("<style>p { opacity:0.5 }</style><p>x</p>", allowlist=()))["css-opacity"]
    assert "gmail.mobile-webmail" in inline.clients
    assert "gmail.mobile-webmail" not in in_style.clients


def test_fewer_clients_fewer_findings():
    html = ('<div style="display:flex;border-radius:4px">x</div><svg></svg>'
            '<style>a:hover { color:red }</style><a href="#top">top</a>')
    everyone = check_support(html)
    apple = check_support(html, clients=("apple-mail",))
    assert len(apple) < len(everyone)
    assert all(c.startswith("apple-mail.") for i in apple for c in i.clients)
    windows = check_support(html, clients=("outlook.windows",))
    assert {c for i in windows for c in i.clients} == {"outlook.windows"}
    assert _by_slug(windows)["css-display-flex"].level == "error"  # the only platform lacks it


def test_css_features_are_recognised():
    css = ("<style>@media (prefers-color-scheme: dark) { .a { color: #fff !important } }"
           "@font-face { font-family: x; src: url(x.woff2) }"
           ".a.b > p::before { content: 'x' } li:nth-child(2n+1) {} "
           "p { --gap: 4px; margin: var(--gap); width: calc(100% - 2rem); background-image: url(a.webp) }</style>")
    found = _slugs(check_support(css, clients=("gmail", "outlook", "yahoo", "aol"), allowlist=()))
    assert {"css-at-media-prefers-color-scheme", "css-at-font-face", "css-selector-chaining",
            "css-selector-child", "css-pseudo-element-before", "css-pseudo-class-nth-child",
            "css-variables", "css-unit-calc", "css-unit-rem", "css-background-image", "image-webp"} <= found


def test_odd_html_and_css_do_not_break_the_check():
    for html in ["", "<style>p { color: red; @media x { p {", "<p style=';;: ;'>", "<!--[if mso]>",
                 '<p style="background:url(data:image/png;base64,AA;A)">', "<style>}}{{</style>"]:
        check_support(html)


def test_unknown_client_is_refused():
    with pytest.raises(ComponentError, match="hotmail"):
        check_support("<p>x</p>", clients=("hotmail",))
    with pytest.raises(ComponentError, match="windows"):
        check_support("<p>x</p>", clients=("gmail.windows",))


# --- the data -----------------------------------------------------------------------------

def test_latest_version_is_the_last_key_written_alike():
    assert latest_version({"2019-10": "n", "2022-12": "y"}) == "2022-12"
    assert latest_version({"2019-02": "n", "16.80": "y"}) == "16.80"  # Outlook for Mac renamed its versions
    assert latest_version({"2024-04": "y", "2024-01": "n"}) == "2024-04"  # listed out of order
    assert latest_version({"5.1": "n", "10.3": "n", "12.2": "y"}) == "12.2"  # numbers, not text
    assert parse_support("a #1 #3") == ("a", ("1", "3"))
    assert parse_support("n") == ("n", ())
    assert parse_support("") == ("u", ())


FAKE = {
    "data": [
        {"slug": "css-fake-prop", "title": "fake-prop", "category": "css",
         "stats": {"mail-a": {"desktop": {"2019": "y", "2024": "n #1"}},  # latest lost it
                   "mail-b": {"ios": {"1.0": "n", "2.0": "a #2"}, "android": {"3": "u"}}},
         "notes_by_num": {"1": "Removed in 2024.", "2": "Only in bold."}},
        {"slug": "html-blink", "title": "<blink> element", "category": "html",
         "stats": {"mail-a": {"desktop": {"2024": "n"}}, "mail-b": {"ios": {"2.0": "n"}}},
         "notes_by_num": None},
    ],
}


def test_latest_versions_decide_on_a_fake_dataset():
    issues = check_support('<p style="fake-prop: 1">x</p>', clients=("mail-a", "mail-b"), data=FAKE, allowlist=())
    [issue] = issues
    assert (issue.level, issue.feature_slug, issue.clients) == ("warning", "css-fake-prop", ["mail-a.desktop"])
    assert "partial support: mail-b.ios" in issue.notes  # "a" counts as supported, with a note
    assert "mail-a.desktop: Removed in 2024." in issue.notes and "mail-b.ios: Only in bold." in issue.notes
    # "u" is ignored: mail-b.android neither lacks nor has it
    assert check_support('<p style="fake-prop: 1">', clients=("mail-b.android",), data=FAKE, allowlist=()) == []
    [blink] = check_support("<blink>hi</blink>", clients=("mail-a", "mail-b"), data=FAKE, allowlist=())
    assert (blink.level, blink.clients) == ("error", ["mail-a.desktop", "mail-b.ios"])
    # features the dataset lacks are not looked up
    html = render_issue(ISSUES / "2020-12.yaml").html
    assert check_support(html, clients=("mail-a",), data=FAKE, allowlist=()) == []


def test_vendored_data_and_allowlist():
    raw = json.loads(DATA_PATH.read_text("utf-8"))
    assert len(raw["data"]) > 250 and DATA_PATH.stat().st_size < 1_000_000
    assert (DATA_PATH.parent / "LICENSE").read_text("utf-8").startswith("MIT License")
    db = load_caniemail()
    assert set(DEFAULT_CLIENTS) <= set(db.known_platforms)
    assert {"css-display-flex", "html-svg", "css-at-media", "css-pseudo-class-hover"} <= set(db.features)
    assert BASICS <= set(db.features)
    entries = load_allowlist()
    assert entries and all(e.reason for e in entries)
    assert len(yaml.safe_load(ALLOWLIST_PATH.read_text("utf-8"))) == len(entries)


def test_allowlist_entries_need_a_known_feature_and_a_reason(tmp_path):
    bad = tmp_path / "allow.yaml"
    bad.write_text("- feature: css-no-such-thing\n  reason: because\n- feature: html-svg\n", "utf-8")
    with pytest.raises(ComponentError) as caught:
        load_allowlist(bad)
    assert "css-no-such-thing" in str(caught.value) and "reason is required" in str(caught.value)
