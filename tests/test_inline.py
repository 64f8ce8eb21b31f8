"""components.inline.inline_css: premailer configured for MJML's output (design §9).

Each test here pins one setting that premailer's defaults get wrong for MJML:
a network fetch, the lowercase doctype, `!important` in @media rules, Outlook
conditional comments, MJML's own <style> blocks, leftover markers. Most run on
real `mjml.mjml2html` output rather than hand-written HTML.
"""
from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mjml
import pytest

from components import load_issue, load_theme, render_issue
from components.inline import inline_css

from .conftest import REFERENCE

TWO_COLUMNS = """<mjml><mj-body>
<mj-section>
<mj-column><mj-text><p class="x">left</p></mj-text></mj-column>
<mj-column><mj-text><p class="y">right</p></mj-text></mj-column>
</mj-section>
</mj-body></mjml>"""

# Conditional comments, whole: `<!--[if mso | IE]>…<![endif]-->` and the
# "downlevel-revealed" pair `<!--[if !mso]><!-->…<!--<![endif]-->` with what sits between.
CONDITIONAL = re.compile(
    r"<!--\[if [^\]]*\]>(?!<!--).*?<!\[endif\]-->|<!--\[if !mso\]><!-->.*?<!--<!\[endif\]-->", re.S)
STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)


@pytest.fixture(scope="module")
def two_columns() -> str:
    return mjml.mjml2html(TWO_COLUMNS)


class _Counting(BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).paths.append(self.path)
        body = b"p { color: green }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def css_server() -> Iterator[tuple[str, list[str]]]:
    """A real stylesheet server on a free loopback port that records every request."""
    handler = type("Handler", (_Counting,), {"paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_never_fetches_linked_or_imported_stylesheets(css_server: tuple[str, list[str]]) -> None:
    base, requests = css_server
    html = (
        "<!doctype html><html><head>"
        f'<link rel="stylesheet" href="{base}/x.css" type="text/css">'
        f'<style type="text/css">@import url("{base}/imported.css");</style>'
        f"<style>@import url({base}/imported2.css);</style>"
        '</head><body><p class="x">hello</p></body></html>'
    )
    out = inline_css(html, "p.x { color: red }")

    assert requests == [], f"inline_css fetched {requests} over the network"
    assert f'href="{base}/x.css"' in out  # the link itself stays for clients that load it
    assert 'style="color:red"' in out
    # The server was reachable all along: the zero above is not for want of a listener.
    with urllib.request.urlopen(f"{base}/control.css", timeout=5) as answer:
        assert answer.status == 200
    assert requests == ["/control.css"]



def test_import_in_theme_css_is_not_fetched(css_server: tuple[str, list[str]]) -> None:
    # A theme may override email.css.j2 (design §11.8), so the css argument is
    # author-supplied too; an @import there must not reach the network either.
    base, requests = css_server
    out = inline_css('<html><body><p class="x">a</p></body></html>',
                     f'@import url("{base}/theme-import.css");\np.x {{ color: red }}')

    assert requests == [], f"inline_css fetched {requests} over the network"
    assert 'style="color:red"' in out

def test_mjml_output_with_its_font_link_fetches_nothing(css_server: tuple[str, list[str]]) -> None:
    base, requests = css_server
    source = TWO_COLUMNS.replace("<mj-body>", f'<mj-head><mj-font name="Local" href="{base}/font.css" />'
                                 '<mj-attributes><mj-all font-family="Local, Arial" /></mj-attributes></mj-head>'
                                 "<mj-body>")
    html = mjml.mjml2html(source)
    assert html.count(f"{base}/font.css") >= 2  # MJML really emitted a <link> and an @import for it

    out = inline_css(html, "")

    assert requests == []
    assert out.count(f"{base}/font.css") == html.count(f"{base}/font.css")


def test_lowercase_doctype_stays_the_first_bytes(two_columns: str) -> None:
    assert two_columns.startswith("<!doctype html>")

    out = inline_css(two_columns, "p.x { color: red }")

    assert out.startswith("<!doctype html><html")
    assert len(re.findall(r"<!doctype", out, re.I)) == 1


def test_doctype_written_once_even_if_input_has_uppercase_or_none() -> None:
    for html in ("<!DOCTYPE html><html><body><p>a</p></body></html>", "<html><body><p>a</p></body></html>"):
        out = inline_css(html, "")
        assert out.startswith("<!doctype html><html")
        assert len(re.findall(r"<!doctype", out, re.I)) == 1


def _media_rules(html: str) -> list[str]:
    return [m for block in STYLE_BLOCK.findall(html) for m in re.findall(r"@media[^{]*\{.*?\}\s*\}", block, re.S)]


def test_important_kept_in_mjml_media_queries(two_columns: str) -> None:
    before = _media_rules(two_columns)
    assert any(".mj-column-per-50" in rule and "!important" in rule for rule in before)

    out = inline_css(two_columns, "p.x { color: red }")

    after = _media_rules(out)
    assert after == before  # byte for byte: premailer's defaults strip !important and reformat
    assert re.search(r"\.mj-column-per-50\s*\{\s*width:\s*50%\s*!important", "".join(after))


def test_important_kept_in_mj_style_media_query_of_a_real_issue(reference_rendered) -> None:
    # email.mjml.j2's own mj-style: the phone sizes of stat figures and the title.
    assert re.search(r"\.nl-stat-value\s*\{\s*font-size:\s*34px\s*!important", reference_rendered.html)
    assert re.search(r"\.mj-column-per-50\s*\{\s*width:\s*50%\s*!important", reference_rendered.html)


def test_outlook_conditional_comments_kept_verbatim(two_columns: str) -> None:
    before = CONDITIONAL.findall(two_columns)
    assert any(c.startswith("<!--[if mso | IE]>") for c in before)
    assert any(c.startswith("<!--[if !mso]><!-->") and "<style" in c for c in before)

    out = inline_css(two_columns, "p.x { color: red } td { color: blue }")

    assert CONDITIONAL.findall(out) == before
    assert out.count("<!--[if mso | IE]>") == two_columns.count("<!--[if mso | IE]>")
    assert out.count("<![endif]-->") == two_columns.count("<![endif]-->")


def test_conditional_comments_of_the_reference_issue_survive(reference_rendered) -> None:
    compiled = mjml.mjml2html(reference_rendered.mjml)
    assert CONDITIONAL.findall(reference_rendered.html) == CONDITIONAL.findall(compiled)


def test_merge_token_in_href_is_not_url_escaped(two_columns: str) -> None:
    html = two_columns.replace(
        '<p class="x">left</p>',
        '<p class="x"><a href="https://e.com/?u=zqmfabcfmqz&amp;v=1">link</a></p>'
        '<img src="https://e.com/i.png?u=zqmfabcfmqz" alt="">',
    )

    out = inline_css(html, "a { color: red }")

    assert 'href="https://e.com/?u=zqmfabcfmqz&amp;v=1"' in out
    assert 'src="https://e.com/i.png?u=zqmfabcfmqz"' in out


def test_merge_field_in_markdown_link_reaches_the_email_untouched(write_issue) -> None:
    # In a link's query a merge field is data (percent-encoded per recipient); as a whole link
    # target it is refused (issue 12: a subscriber's field must never become an href).
    path = write_issue(
        "subject: Links\n"
        "blocks:\n"
        "  - text: |\n"
        "      [Update your details](https://e.com/prefs?e={{ email }}&list=news).\n"
    )

    rendered = render_issue(path)

    assert 'href="https://e.com/prefs?e={{ email }}&amp;list=news"' in rendered.html
    assert 'href="{{ unsubscribe_url }}"' in rendered.html
    assert not re.search(r"%7B|%7D|\{\{%20|%20\}\}", rendered.html, re.I)
    # The public web version resolves them with no personal data.
    assert 'href="https://e.com/prefs?e=&amp;list=news"' in rendered.web_html
    assert "{{" not in rendered.web_html


def test_theme_css_is_inlined_into_style_attributes(two_columns: str) -> None:
    out = inline_css(two_columns, "p.x {color: red} p.y { font-weight: bold; color: #123456 }")

    assert re.search(r'<p class="x" style="color:red">left</p>', out)
    assert re.search(r'<p class="y" style="font-weight:bold; ?color:#123456">right</p>', out)


def test_theme_css_merges_with_existing_inline_style() -> None:
    out = inline_css('<html><body><p class="x" style="margin:0">a</p></body></html>', "p.x { color: red }")
    style = re.search(r'<p class="x" style="([^"]*)"', out).group(1)  # type: ignore[union-attr]
    assert "margin:0" in style and "color:red" in style


def test_mjml_style_blocks_are_left_as_style_blocks(two_columns: str) -> None:
    out = inline_css(two_columns, "p.x { color: red }")

    assert STYLE_BLOCK.findall(out) == STYLE_BLOCK.findall(two_columns)
    # MJML's reset (`body { margin:0 … }`, `table, td { mso-table-lspace … }`, `p { margin:13px 0 }`)
    # stays in <style>; premailer's defaults would copy it onto every element.
    assert re.search(r'<body style="word-spacing:normal;">', out)
    assert "mso-table-lspace" not in "".join(re.findall(r'style="[^"]*"', out))
    assert "margin:13px" not in "".join(re.findall(r'style="[^"]*"', out))
    assert re.search(r'<p class="x" style="color:red">', out)


def test_no_premailer_marker_left(two_columns: str, reference_rendered) -> None:
    out = inline_css(two_columns, "p.x { color: red }")
    for html in (out, reference_rendered.html, reference_rendered.web_html):
        assert "data-premailer" not in html


def test_existing_data_premailer_attribute_is_respected_and_removed() -> None:
    html = '<html><head><style data-premailer="ignore">p { color: blue }</style></head><body><p>a</p></body></html>'
    out = inline_css(html, "")
    assert "<style>p { color: blue }</style>" in out
    assert "<p>a</p>" in out


def test_reference_issue_is_inlined_once_and_compact(reference_rendered) -> None:
    html = reference_rendered.html
    assert html.startswith("<!doctype html>")
    # Theme CSS reached its elements: every section title carries the theme's heading colour.
    heading = load_theme(load_issue(REFERENCE).fields.theme).colors.heading
    titles = re.findall(r'<h2 class="nl-section"[^>]*>', html)
    assert len(titles) >= 7
    assert all(re.search(rf'style="[^"]*color:{re.escape(heading)}', t, re.I) for t in titles), titles[:2]
    assert len(html.encode()) < 102 * 1024  # Gmail clips past 102 KB
