"""The round-2 blocks (design §3) and the looks of issue 14, without a browser.

Each block: its schema's errors (the message and the field they point at), its
HTML (read back with lxml from the built email) and its text part. Then what
the renderer does for all blocks: each component's CSS comes from its own
template and only for the components an issue uses; icons and drawn images are
published with the issue; nothing in a built email loads from a third party;
theme fonts survive as written; the preheader is hidden without colour tricks.
Layout at phone and desktop widths is in test_browser.py.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
from PIL import Image

import components
from components import IssueInvalid, load_issue, render_confirmation, render_issue, substitute
from components.registry import components as registry
from components.render import ICONS_DIR, Styles, styled_components

from .conftest import ISSUES

BASE = "https://news.example.org"
HEAD = """\
subject: Blocks
theme: default
blocks:
  - masthead: {title: Blocks}
"""
NEW_BLOCKS = ("feature", "hero", "spacer", "social", "events", "video", "byline", "buttons")


def _issue(write_issue, blocks: str) -> Path:
    return write_issue(HEAD + blocks)


def _problems(path: Path) -> list[str]:
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


def _doc(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def _render(path: Path):
    return render_issue(path, base_url=BASE)


# --- schemas: each block's errors --------------------------------------------------------------

@pytest.mark.parametrize(("blocks", "expected"), [
    ("  - feature: {image: {src: images/pic.png}, title: T}\n", "blocks[1].feature.image: alt is required"),
    ("  - feature: {image: {src: images/pic.png, alt: A}, title: T, image_side: top}\n",
     "blocks[1].feature.image_side: Input should be 'left' or 'right'"),
    ("  - feature: {image: {src: images/pic.png, alt: A}, title: T, button: {label: Go, url: 'javascript:x'}}\n",
     "blocks[1].feature.button.url: link must be an http(s) or mailto: URL, not javascript:"),
    ("  - hero: {image: {src: images/pic.png, alt: A}, title: T, height: 50}\n",
     "blocks[1].hero.height: Input should be greater than or equal to 160"),
    ("  - hero: {title: T}\n", "blocks[1].hero: image is required"),
    ("  - spacer: 0\n", "blocks[1].spacer.height: Input should be greater than or equal to 4"),
    ("  - spacer: {height: 500}\n", "blocks[1].spacer.height: Input should be less than or equal to 160"),
    ("  - social: [{network: myspace, url: 'https://myspace.com/x'}]\n", "blocks[1].social.items[0].network: Input"),
    ("  - social: [{network: email, url: 'https://example.org/'}]\n",
     "blocks[1].social.items[0]: an email link is a mailto: address"),
    ("  - social: [{network: facebook, url: 'mailto:a@example.org'}]\n",
     "blocks[1].social.items[0]: a Facebook link is a web address"),
    ("  - social: [{network: website, url: 'www.example.org'}]\n",
     "blocks[1].social.items[0].url: link must be an http(s) or mailto: URL, not a relative URL"),
    ("  - social: []\n", "blocks[1].social.items: List should have at least 1 item"),
    ("  - events: [{date: 2024-13-01, title: T}]\n", r"blocks\[1\]\.events(\.items)?\[0\]\.date: .*(valid date|month)"),
    ("  - events: [{date: 2024-05-14}]\n", "blocks[1].events.items[0]: title is required"),
    ("  - events: [{date: 2024-05-14, title: T, url: /agm}]\n",
     "blocks[1].events.items[0].url: link must be an http(s) or mailto: URL, not a relative URL"),
    ("  - video: {thumbnail: {src: 'https://img.example.org/t.png', alt: A}, url: 'https://v.example.org/1'}\n",
     "blocks[1].video.thumbnail: a video thumbnail must be an image file in the issue's folder"),
    ("  - video: {thumbnail: {src: images/pic.png, alt: A, href: 'https://x.example.org'}, url: 'https://v.example.org/1'}\n",
     "blocks[1].video.thumbnail: a video thumbnail links to the video's url"),
    ("  - video: {thumbnail: {src: images/pic.png, alt: A}}\n", "blocks[1].video: url is required"),
    ("  - byline: {name: Sam, photo: {src: images/pic.png}}\n", "blocks[1].byline.photo: alt is required"),
    ("  - buttons: [{label: Go, url: 'ftp://example.org/f'}]\n",
     "blocks[1].buttons.items[0].url: link must be an http(s) or mailto: URL, not ftp:"),
    ("  - buttons: [" + ", ".join(["{label: Go, url: 'https://example.org/'}"] * 7) + "]\n",
     "blocks[1].buttons.items: List should have at most 6 items"),
])
def test_schema_errors_name_the_field(write_issue, blocks, expected):
    problems = _problems(_issue(write_issue, blocks))
    assert any(p.startswith(expected) or re.match(expected, p) for p in problems), problems


def test_short_forms_fill_the_main_field(write_issue):
    issue = load_issue(_issue(write_issue, "  - spacer: 32\n  - byline: Sam Jones\n"
                                           "  - buttons: [{label: Go, url: 'https://example.org/'}]\n"))
    spacer, byline, buttons = (b.fields for b in issue.blocks[1:])
    assert spacer.height == 32 and byline.name == "Sam Jones" and len(buttons.items) == 1  # type: ignore[attr-defined]
    with pytest.raises(IssueInvalid):  # a bool is not a height
        load_issue(_issue(write_issue, "  - spacer: true\n"))


def test_every_social_network_has_both_icons():
    from components.blocks.social import NETWORKS, Network
    assert set(NETWORKS) == set(Network.__args__)
    for network in NETWORKS:
        for variant in ("light", "dark"):
            with Image.open(ICONS_DIR / f"{network}-{variant}.png") as icon:
                assert icon.size == (64, 64), network  # 32 px shown, drawn at 2x
    assert (ICONS_DIR / "src" / "LICENSE-simple-icons.md").read_text().startswith("# CC0 1.0 Universal")


# --- each block's HTML and text ----------------------------------------------------------------

def test_feature_puts_its_image_first_and_on_the_side_asked(write_issue):
    path = _issue(write_issue, """\
  - feature:
      image: {src: images/pic.png, alt: "A picture"}
      title: Left feature
      text: "Some **bold** words and [a link](https://example.org/l)."
      button: {label: "Read the story", url: "https://example.org/story"}
  - section:
      title: S
      blocks:
        - feature: {image: {src: images/pic.png, alt: "Another"}, title: Right feature, image_side: right}
""")
    rendered = _render(path)
    sections = re.findall(r"<mj-section[^>]*nl-feature[^>]*>", rendered.mjml)
    assert len(sections) == 2 and "direction" not in sections[0] and 'direction="rtl"' in sections[1]
    for fragment in rendered.mjml.split('css-class="nl-card nl-feature"')[1:]:  # image column, then text
        assert fragment.index("<mj-image") < fragment.index("nl-feature-title")
    doc = _doc(rendered.html)
    # <h2> at the top of the issue, <h3> inside a section: heading levels never skip.
    assert [(h.tag, h.text) for h in doc.xpath("//*[contains(@class, 'nl-feature-title')]")] == [
        ("h2", "Left feature"), ("h3", "Right feature")]
    assert doc.xpath("//div[contains(@class, 'nl-feature-text')]//strong")[0].text == "bold"
    assert doc.xpath("//a[text()='Read the story']/@href") == ["https://example.org/story"]
    assert "Left feature\n------------\n[Image: A picture]\n\nSome bold words and a link (https://example.org/l)." \
        in rendered.text
    assert "Read the story: https://example.org/story" in rendered.text


def test_hero_has_a_css_background_a_vml_fallback_and_a_card(write_issue):
    path = _issue(write_issue, """\
  - hero:
      image: {src: images/pic.png, alt: "Hills at sunrise"}
      title: "A fresh start"
      text: "Plain text <b>not</b> markup"
      button: {label: "Join us", url: "https://example.org/join"}
""")
    rendered = _render(path)
    picture = f"{BASE}/archive/t/images/pic.png"
    assert f'<v:image src="{picture}"' in rendered.html  # Outlook for Windows
    assert f"url('{picture}')" in rendered.html and "cover" in rendered.html
    assert "url('images/pic.png')" in rendered.web_html  # relative on the web, like every image
    doc = _doc(rendered.html)
    card = doc.xpath("//td[@class='nl-hero-card-cell']")[0]
    assert card.xpath(".//h2/text()") == ["A fresh start"]
    assert "Plain text <b>not</b> markup" in card.text_content()  # escaped, never markup
    assert card.xpath(".//a[contains(@class, 'nl-btn-link')]/@href") == ["https://example.org/join"]
    assert "A fresh start\n=============\n[Image: Hills at sunrise]\nPlain text <b>not</b> markup\n" \
           "Join us: https://example.org/join" in rendered.text


def test_spacer_is_empty_space_and_nothing_in_the_text_part(write_issue):
    rendered = _render(_issue(write_issue, "  - text: Above\n  - spacer: 40\n  - text: Below\n"))
    assert '<mj-spacer height="40px" />' in rendered.mjml
    assert re.search(r"height:40px", rendered.html)
    assert "Above\n\nBelow" in rendered.text


def test_social_icons_are_ours_published_with_the_issue(write_issue):
    rendered = _render(_issue(write_issue, """\
  - social:
      - {network: x, url: "https://x.com/example"}
      - {network: email, url: "mailto:hello@example.org"}
"""))
    doc = _doc(rendered.html)
    links = doc.xpath("//p[@class='nl-social']/a")
    assert [a.get("href") for a in links] == ["https://x.com/example", "mailto:hello@example.org"]
    for a, (network, alt) in zip(links, [("x", "X"), ("email", "Email")], strict=True):
        light, dark = a.xpath("img")
        assert light.get("src") == f"{BASE}/archive/t/icons/{network}-light.png" and light.get("alt") == alt
        assert dark.get("src") == f"{BASE}/archive/t/icons/{network}-dark.png" and dark.get("alt") == alt
        assert "display:none" in dark.get("style") and "mso-hide:all" in dark.get("style")
    assert rendered.assets["icons/x-light.png"] == ICONS_DIR / "x-light.png"
    assert rendered.assets["icons/email-dark.png"] == ICONS_DIR / "email-dark.png"
    assert 'src="icons/x-light.png"' in rendered.web_html
    assert "X: https://x.com/example\nEmail: hello@example.org" in rendered.text


def test_contact_icons_are_ours_too_and_decorative_beside_their_label(write_issue):
    rendered = _render(_issue(write_issue, "  - contact: {name: Us, social: [{network: twitter, handle: us}]}\n"))
    assert "mailjet" not in rendered.html and "<mj-social" not in rendered.mjml
    link = _doc(rendered.html).xpath("//a[@class='nl-contact-social-link']")[0]
    assert link.get("href") == "https://twitter.com/us"
    assert [img.get("alt") for img in link.xpath("img")] == ["", ""]  # the label says it
    assert link.text_content().strip() == "Twitter: @us"
    assert set(rendered.assets) >= {"icons/twitter-light.png", "icons/twitter-dark.png"}


def test_events_show_a_date_badge_and_the_full_date(write_issue):
    rendered = _render(_issue(write_issue, """\
  - events:
      - {date: 2024-05-14, time: "7pm", title: "Annual meeting", place: "Town hall", url: "https://example.org/agm"}
      - {date: 2024-06-01, title: "Summer fair"}
"""))
    doc = _doc(rendered.html)
    assert [p.text for p in doc.xpath("//p[@class='nl-event-day']")] == ["14", "1"]
    assert [p.text for p in doc.xpath("//p[@class='nl-event-month']")] == ["May", "Jun"]
    assert doc.xpath("//a[@class='nl-event-link']/@href") == ["https://example.org/agm"]
    metas = [p.text_content() for p in doc.xpath("//p[@class='nl-event-meta']")]
    assert metas == ["Tuesday 14 May 2024, 7pm · Town hall", "Saturday 1 Jun 2024"]
    assert ("* Tuesday 14 May 2024, 7pm: Annual meeting, Town hall\n  (https://example.org/agm)\n"
            "* Saturday 1 Jun 2024: Summer fair") in rendered.text  # wrapped at 76, under its marker


def test_video_thumbnail_gets_a_play_mark_drawn_on_a_copy(write_issue, issue_dir):
    path = _issue(write_issue, """\
  - video:
      thumbnail: {src: images/pic.png, alt: "Our team"}
      url: "https://video.example.org/watch?v=1"
      caption: "Two minutes with the team"
""")
    rendered = _render(path)
    source = issue_dir / "t" / "images" / "pic.png"
    drawn = rendered.assets["images/pic-play1.png"]
    assert drawn != source
    with Image.open(source) as before, Image.open(drawn) as after:
        assert after.size == before.size and after.format == "PNG"
        middle = (before.width // 2 + before.width // 40, before.height // 2)  # inside the triangle
        assert after.convert("RGB").getpixel(middle) != before.convert("RGB").getpixel(middle)
        assert after.convert("RGB").getpixel((2, 2)) == before.convert("RGB").getpixel((2, 2))  # corners untouched
    doc = _doc(rendered.html)
    image = doc.xpath("//img[contains(@src, 'pic-play1.png')]")[0]
    assert image.get("alt") == "Our team (play the video)"
    assert image.getparent().get("href") == "https://video.example.org/watch?v=1"
    assert doc.xpath("//a[@class='nl-video-link']")[0].text_content().endswith("Two minutes with the team")
    assert "[Video: Two minutes with the team] https://video.example.org/watch?v=1" in rendered.text
    # Drawn once: a rebuild reuses the cached copy.
    drawn_at = drawn.stat().st_mtime_ns
    assert _render(path).assets["images/pic-play1.png"] == drawn and drawn.stat().st_mtime_ns == drawn_at


def test_byline_photo_is_cropped_square(write_issue):
    rendered = _render(_issue(write_issue, """\
  - byline: {name: "Sam Jones", role: "Editor", photo: {src: images/pic.png, alt: "Sam Jones"}}
"""))
    with Image.open(rendered.assets["images/pic-square.png"]) as photo:
        assert photo.size == (112, 112)  # 56 px shown, at 2x
    doc = _doc(rendered.html)
    assert doc.xpath("//img[@class='nl-byline-img']/@alt") == ["Sam Jones"]
    assert doc.xpath("//p[@class='nl-byline-name']/text()") == ["Sam Jones"]
    assert doc.xpath("//p[@class='nl-byline-role']/text()") == ["Editor"]
    assert "-- Sam Jones, Editor" in rendered.text


def test_buttons_sit_in_one_row_with_outlooks_cells(write_issue):
    rendered = _render(_issue(write_issue, """\
  - buttons:
      - {label: "First", url: "https://example.org/1"}
      - {label: "Second", url: "https://example.org/2"}
      - {label: "Third", url: "mailto:hello@example.org"}
"""))
    doc = _doc(rendered.html)
    links = doc.xpath("//div[@class='nl-buttons']//a[contains(@class, 'nl-btn-link')]")
    assert [(a.text, a.get("href")) for a in links] == [
        ("First", "https://example.org/1"), ("Second", "https://example.org/2"), ("Third", "mailto:hello@example.org")]
    tables = doc.xpath("//table[contains(@class, 'nl-btn')]")
    assert len(tables) == 3 and all("display:inline-block" in t.get("style").replace(" ", "") for t in tables)
    assert rendered.html.count("<!--[if mso]></td><td") == 2  # Outlook for Windows: cells of one row
    assert "First: https://example.org/1\nSecond: https://example.org/2\nThird: mailto:hello@example.org" \
        in rendered.text


# --- Markdown tables -----------------------------------------------------------------------------

TABLE = """\
  - text: |
      | Group       | Members | Notes |
      |:------------|--------:|-------|
      | Lunch club  |      62 | [menu](https://example.org/menu) |
      | Walkers     |      23 | <b onclick="x()">x</b><script>alert(1)</script> |
"""


def test_markdown_table_becomes_a_real_table(write_issue):
    rendered = _render(_issue(write_issue, TABLE))
    doc = _doc(rendered.html)
    table = doc.xpath("//table[@class='nl-table']")[0]
    assert [th.text for th in table.xpath(".//th")] == ["Group", "Members", "Notes"]
    assert [[td.text_content() for td in tr.xpath("td")] for tr in table.xpath(".//tbody/tr")] == [
        ["Lunch club", "62", "menu"], ["Walkers", "23", "x"]]  # the script and its text gone
    assert "text-align:right" in table.xpath(".//td")[1].get("style")  # the column's alignment is kept
    assert table.xpath(".//a/@href") == ["https://example.org/menu"]
    assert "<script" not in rendered.html and "onclick" not in rendered.html  # sanitised, cells too
    assert ("Group      | Members | Notes\n"
            "-----------+---------+--------------------------------\n"
            "Lunch club |      62 | menu (https://example.org/menu)\n"
            "Walkers    |      23 | x\n") in rendered.text  # figures right-aligned, as in the email


def test_a_wide_table_reads_row_by_row_in_the_text_part(write_issue):
    wide = "A long heading here"
    rendered = _render(_issue(write_issue, f"""\
  - text: |
      | {wide} | Another long heading | And a third long heading |
      |--|--|--|
      | Some value in the first cell | Another value | The third value of all |
"""))
    assert (f"{wide}: Some value in the first cell\nAnother long heading: Another value\n"
            "And a third long heading: The third value of all") in rendered.text


# --- the renderer: CSS, assets, URLs, fonts, preheader -------------------------------------------

def test_each_component_brings_its_own_css_and_only_when_used(write_issue):
    small = _render(_issue(write_issue, "  - text: Hello\n"))
    assert "td.nl-stat" not in small.html and "nl-hero" not in small.html and "nl-icon-dark" not in small.html
    assert re.search(r'<h1 class="nl-title" style="[^"]*font-size:32px', small.html)  # the masthead's, inlined
    every = _render(ISSUES / "2021-01.yaml")
    for selector in ("td.nl-stat", "td.nl-hero-card-cell", "img.nl-icon-dark", "td.nl-event-date",
                     "table.nl-table th", ".nl-button a"):
        assert selector in every.html, selector
    issue = load_issue(ISSUES / "2021-01.yaml")
    assert styled_components(issue) == list(registry())  # registry order: the same CSS for the same blocks
    feature_only = replace(issue, blocks=tuple(b for b in issue.walk() if b.name == "feature")[:1])
    assert styled_components(feature_only) == ["button", "feature", "text"]  # its Markdown and button


def test_every_template_writes_its_css_unescaped():
    # A theme's quoted font must reach the CSS as written (autoescape made it &#39;).
    issue = load_issue(ISSUES / "2021-01.yaml")
    r = components.render.Context(issue, components.load_theme("default"), BASE)
    styles = Styles(components.render._env("default"), list(registry()), r)
    css = str(styles.inline()) + str(styles.phone()) + str(styles.dark(r.theme.colors_dark, "", ""))
    assert "&#39;" not in css and "&amp;" not in css and "Georgia, 'Times New Roman', serif" in css


def test_theme_fonts_survive_into_the_email_as_written():
    html = render_issue(ISSUES / "2021-01.yaml").html
    h1 = re.search(r'<h1 class="nl-title" style="([^"]*)"', html)
    assert h1 and "font-family:Georgia, 'Times New Roman', serif" in h1.group(1)
    assert "style='" not in html  # every style attribute double-quoted, families in single quotes
    confirm = render_confirmation(list_title="News", email="a@example.org", confirm_url="https://x.example.org/c")
    assert "font-family:Georgia, 'Times New Roman', serif" in confirm.html


def test_a_quoted_body_font_survives_mjml(tmp_path, monkeypatch):
    from components import render as render_module
    from components import theme as theme_module
    themes = tmp_path / "themes"
    themes.mkdir()
    for name in components.theme_names():
        (themes / f"{name}.yaml").write_text((theme_module.THEMES_DIR / f"{name}.yaml").read_text())
    default = (theme_module.THEMES_DIR / "default.yaml").read_text()
    quoted = """font: "'Segoe UI', \\"Helvetica Neue\\", Arial, sans-serif\""""
    (themes / "quoted.yaml").write_text(default.replace('font: "Helvetica, Arial, sans-serif"', quoted))
    monkeypatch.setattr(theme_module, "THEMES_DIR", themes)
    render_module.clear_template_cache()
    try:
        issue = load_issue(ISSUES / "2021-01.yaml")
        html = render_issue(replace(issue, fields=issue.fields.model_copy(update={"theme": "quoted"}))).html
    finally:
        render_module.clear_template_cache()
    assert "font-family:'Segoe UI', 'Helvetica Neue', Arial, sans-serif;" in html
    assert "&#39" not in html


@pytest.mark.parametrize("name", ["2020-12", "2021-01"])
def test_preheader_is_hidden_without_colour_tricks(name):
    rendered = render_issue(ISSUES / f"{name}.yaml")
    doc = _doc(rendered.html)
    hidden = doc.xpath("//div[@class='nl-preheader']")
    assert len(hidden) == 1
    style = hidden[0].get("style")
    assert {"display:none", "max-height:0px", "overflow:hidden", "mso-hide:all"} <= set(style.rstrip(";").split(";"))
    assert "color" not in style and "font-size" not in style  # no white-on-white, no 1px text
    assert hidden[0].text_content().startswith(rendered.preheader) and "\u034f\u200c\xa0" in hidden[0].text_content()
    topbar = doc.xpath("//p[@class='nl-topbar']")[0].text_content()
    assert rendered.preheader not in topbar and "View this email in your browser" in topbar
    assert "nl-preheader" not in rendered.web_html


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin not installed")
@pytest.mark.parametrize("name", ["2020-12", "2021-01"])
def test_spamassassin_sees_no_low_contrast_text(name):
    rendered = render_issue(ISSUES / f"{name}.yaml", base_url=BASE)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "news@example.org", "reader@example.net", "News"
    message.set_content(substitute(rendered.text, {}, escape=False))
    message.add_alternative(substitute(rendered.html, {}, escape=True), subtype="html")
    report = subprocess.run(["spamassassin", "-L", "-t"], input=bytes(message), capture_output=True,
                            timeout=120, check=True).stdout.decode(errors="replace")
    rules = report.split("Content analysis details")[-1]
    assert "HTML_FONT_LOW_CONTRAST" not in rules and "HTML_FONT_INVISIBLE" not in rules, rules


def test_dark_mode_colours_links_by_component_never_buttons():
    html = render_issue(ISSUES / "2021-01.yaml").html
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\}", html, re.S)
    assert dark is not None
    rules = dark.group(1)
    assert ".nl-card a" not in rules  # the catch-all that turned button labels light blue
    theme = components.load_theme("default")
    assert f".nl-button a {{ color: {theme.colors_dark.on_primary} !important; }}" in rules  # type: ignore[union-attr]


# Where a built email loads something from: pictures, backgrounds, VML, stylesheets, fonts.
_RESOURCES = re.compile(r"""(?:\bsrc=|\bbackground=|\bhref=(?=[^>]*rel=["']?stylesheet))["']([^"']+)["']"""
                        r"""|url\(\s*['"]?([^'")]+)|@import\s+['"]([^'"]+)""", re.I)


@pytest.mark.parametrize("name", ["2020-12", "2021-01"])
def test_no_built_email_loads_anything_from_a_third_party(name):
    rendered = render_issue(ISSUES / f"{name}.yaml", base_url=BASE)
    for html, own in ((rendered.html, urlsplit(BASE).netloc), (rendered.web_html, "")):
        loaded = [next(g for g in m.groups() if g) for m in _RESOURCES.finditer(html)]
        assert len(loaded) >= 8
        assert [u for u in loaded if urlsplit(u).netloc != own] == [], name
    for published, source in rendered.assets.items():
        assert source.is_file() and not published.startswith("/"), published
