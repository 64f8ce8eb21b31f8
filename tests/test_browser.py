"""The built email and web version in a real headless chromium.

The reference issue is rendered once per module against a real local HTTP
server, written with the same `write_build` that `newsletter build` uses, and
served as the archive would serve it: `/archive/<slug>/` is the web version,
and the email's images point at `/archive/<slug>/images/…`. Layout is judged
by where chromium actually puts things, at a phone (375 px) and a desktop
(1024 px) width.
"""
from __future__ import annotations

import functools
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import components as components_package
from components import components, load_issue, render_issue, substitute, theme_names
from components.model import Block
from components.validate import published_name
from newsletter.build import write_build

from .conftest import ISSUES, REFERENCE

pytestmark = pytest.mark.browser

PHONE, DESKTOP = 375, 1024
VERSIONS = ("email", "web")
ENCOMPASS_LABEL = "of settings are confident about how to respond to a notification"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    """A served folder: archive/<slug>/{index.html, email.html, email-view.html, images/}."""

    root: Path
    base: str

    def publish(self, issue_path: Path) -> dict[str, str]:
        """Render and build an issue here; return the URLs of its email and web version."""
        rendered = render_issue(issue_path, base_url=self.base)
        folder = write_build(rendered, self.root / "archive")
        # What a recipient with no data would see: every merge field resolved.
        (folder / "email-view.html").write_text(substitute(rendered.html, {}, escape=True), "utf-8")
        web = f"{self.base}/archive/{rendered.slug}/"
        return {"email": web + "email-view.html", "web": web}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def reference_urls(site: Site) -> dict[str, str]:
    return site.publish(REFERENCE)


@pytest.fixture(scope="module")
def open_page(browser: Any) -> Iterator[Any]:
    """Pages by (url, width), loaded once (images included) and shared by the module's tests."""
    pages: dict[tuple[str, int, str], Any] = {}

    def get(url: str, width: int, scheme: str = "light") -> Any:
        if (url, width, scheme) not in pages:
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            page.route("**/*", _loopback_only)
            response = page.goto(url, wait_until="load")
            assert response is not None and response.ok, f"{url}: {response and response.status}"
            pages[url, width, scheme] = page
        return pages[url, width, scheme]

    yield get
    for page in pages.values():
        page.close()


# Every request a page made to anywhere but this machine; an email must make none.
THIRD_PARTY: list[str] = []


def _loopback_only(route: Any) -> None:
    # Tests talk to this machine only; whatever else a page asks for is refused and noted.
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        THIRD_PARTY.append(route.request.url)
        route.abort()


# Our own images (served here) that did not load; remote ones are blocked on purpose.
BROKEN_IMAGES = """imgs => imgs.filter(i => i.src.startsWith(location.origin + '/'))
    .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))"""
OWN_IMAGES = "imgs => imgs.filter(i => i.src.startsWith(location.origin + '/')).length"


def _reference_page(open_page: Any, reference_urls: dict[str, str], version: str, width: int) -> Any:
    return open_page(reference_urls[version], width)


def _box(locator: Any, what: str) -> dict[str, float]:
    assert locator.count() == 1, f"expected one {what}, found {locator.count()}"
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{what} is not visible"
    return box


def _gallery_rows() -> list[list[str]]:
    """Published image names of each row of the reference issue's galleries."""
    issue = load_issue(REFERENCE)
    rows = []
    for block in issue.walk():
        if block.name == "gallery":
            for row in block.fields.rows:  # type: ignore[attr-defined]
                rows.append([published_name(issue.source, issue.assets[img.src]) for img in row])
    assert rows, "the reference issue has no gallery"
    return rows


def _encompass_stats() -> Block:
    for block in load_issue(REFERENCE).walk():
        if block.name == "stats" and any(s.label == ENCOMPASS_LABEL for s in block.fields.items):  # type: ignore[attr-defined]
            return block
    raise AssertionError("the reference issue lost the Operation Encompass figures")


def _image_boxes(page: Any, names: list[str]) -> list[dict[str, float]]:
    return [_box(page.locator(f'img[src$="{name}"]'), f"image {name}") for name in names]


def _stat_boxes(page: Any, labels: list[str]) -> list[dict[str, float]]:
    boxes = []
    for label in labels:
        value = page.locator("p.nl-stat-label", has_text=label).locator(
            "xpath=preceding-sibling::p[contains(@class, 'nl-stat-value')]")
        boxes.append(_box(value, f"figure labelled {label!r}"))
    return boxes


def _assert_side_by_side(rows: list[list[dict[str, float]]]) -> None:
    previous_bottom = None
    for row in rows:
        tops = [b["y"] for b in row]
        lefts = [b["x"] for b in row]
        assert max(tops) - min(tops) <= 1, f"one row, different tops: {tops}"
        assert all(b - a >= 100 for a, b in pairwise(lefts)), f"not side by side: x = {lefts}"
        if previous_bottom is not None:
            assert min(tops) >= previous_bottom, "a later row starts above the one before"
        previous_bottom = max(b["y"] + b["height"] for b in row)


def _assert_stacked(boxes: list[dict[str, float]]) -> None:
    lefts = [b["x"] for b in boxes]
    assert max(lefts) - min(lefts) <= 1, f"stacked items should share one x, got {lefts}"
    for a, b in pairwise(boxes):
        assert b["y"] >= a["y"] + a["height"], f"not stacked: {a} then {b}"


# --- the reference issue -------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_every_image_loads(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    page = _reference_page(open_page, reference_urls, version, DESKTOP)
    assert page.eval_on_selector_all("img", OWN_IMAGES) >= 8
    assert page.eval_on_selector_all("img", BROKEN_IMAGES) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_no_horizontal_scroll_on_a_phone(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    page = _reference_page(open_page, reference_urls, version, PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE, f"the {version} version scrolls sideways on a phone ({width} px > {PHONE} px)"


@pytest.mark.parametrize("version", VERSIONS)
def test_galleries_side_by_side_on_desktop(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    page = _reference_page(open_page, reference_urls, version, DESKTOP)
    _assert_side_by_side([_image_boxes(page, row) for row in _gallery_rows()])


@pytest.mark.parametrize("version", VERSIONS)
def test_galleries_stacked_on_a_phone(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    page = _reference_page(open_page, reference_urls, version, PHONE)
    _assert_stacked(_image_boxes(page, [name for row in _gallery_rows() for name in row]))


@pytest.mark.parametrize("version", VERSIONS)
def test_stats_side_by_side_on_desktop(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    rows = _encompass_stats().fields.rows  # type: ignore[attr-defined]
    assert sum(len(row) for row in rows) == 4
    page = _reference_page(open_page, reference_urls, version, DESKTOP)
    _assert_side_by_side([_stat_boxes(page, [s.label for s in row]) for row in rows])


@pytest.mark.parametrize("version", VERSIONS)
def test_stats_stacked_on_a_phone(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    items = _encompass_stats().fields.items  # type: ignore[attr-defined]
    page = _reference_page(open_page, reference_urls, version, PHONE)
    _assert_stacked(_stat_boxes(page, [s.label for s in items]))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_image_has_alt_and_one_h1(open_page: Any, reference_urls: dict[str, str], version: str) -> None:
    page = _reference_page(open_page, reference_urls, version, DESKTOP)
    without_alt = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.hasAttribute('alt'))"
                                            ".map(i => i.outerHTML)")
    assert without_alt == []
    assert page.locator("h1").count() == 1
    assert "Lancashire Violence Reduction Network" in page.locator("h1").inner_text()


def test_web_version_has_no_unsubscribe_link_and_no_merge_syntax(open_page: Any,
                                                                 reference_urls: dict[str, str]) -> None:
    page = _reference_page(open_page, reference_urls, "web", DESKTOP)
    links = page.eval_on_selector_all("a", "as => as.map(a => [a.innerText, a.getAttribute('href') || ''])")
    assert links, "the web version has no links at all"
    assert [text for text, _ in links if "unsubscribe" in text.lower()] == []
    assert [href for _, href in links if "unsubscribe" in href.lower() or "{{" in href] == []
    assert "{{" not in page.content()
    assert "{{" not in page.evaluate("document.body.innerText")
    # The email, by contrast, does carry the link, so the check above is not vacuous.
    email = _reference_page(open_page, reference_urls, "email", DESKTOP)
    assert email.get_by_role("link", name=re.compile("unsubscribe", re.I)).count() == 1


@pytest.mark.parametrize("sentence", [
    "65% of boys with a parent in prison going on to offend themselves.",
    "99% of settings are confident about how to respond to a notification",
])
def test_web_version_shows_the_seed_text(open_page: Any, reference_urls: dict[str, str], sentence: str) -> None:
    page = _reference_page(open_page, reference_urls, "web", DESKTOP)
    text = " ".join(page.evaluate("document.body.innerText").split())
    assert sentence in text


# --- every theme, every component ----------------------------------------------------

EVERY_COMPONENT = """\
subject: "Every component, {{{{ first_name | default('friend') }}}}"
preheader: "One issue that uses each block once"
date: 2024-03-01
theme: {theme}
blocks:
  - masthead:
      title: "Every component in the {theme} theme"
      subtitle: "March 2024"
      logo: {{src: images/bwd-youth-forum-logo.png, alt: "Youth Forum logo", width: 120}}
  - text: |
      Hello {{{{ first_name | default("friend") }}}}, welcome to an issue that uses **every block**.
      Read [the full report](https://www.example.org/reports/2024/annual-report-on-violence-reduction.pdf).
  - contents: {{title: "In this issue"}}
  - section:
      title: "A section with every kind of content block in it"
      blocks:
        - heading: "A sub-heading that is quite a bit longer than most sub-headings"
        - text: |
            - a list item
            - another, with a [link](https://example.org/)
        - callout: "Over 1,700 knives and other weapons removed from the streets."
        - image: {{src: images/captain-calm-story.png, alt: "Captain Calm", caption: "Excerpts from the story"}}
        - gallery:
            - {{src: images/divert-supplies-1.png, alt: "Supplies", caption: "Delivering essential supplies."}}
            - {{src: images/divert-remote-team.png, alt: "Remote team", caption: "Keeping in touch."}}
            - {{src: images/divert-supplies-2.png, alt: "More supplies", caption: "More supplies."}}
        - quote: {{text: "A really informative, useful session.", cite: "Social services"}}
        - stats:
            - {{value: "99%", label: "of settings are confident"}}
            - {{value: "98%", label: "found notifications useful"}}
            - {{value: "1,200", label: "notifications a month"}}
        - button: {{label: "Listen to the podcast", url: "https://example.org/podcast"}}
        - divider: {{}}
        - feature:
            image: {{src: images/mias-story.png, alt: "Mia's story"}}
            title: "A feature with a rather long title that wraps"
            text: "Some **Markdown** text beside the picture, and [a link](https://example.org/mia)."
            button: {{label: "Read Mia's story", url: "https://example.org/mia"}}
            image_side: right
        - spacer: 16
        - events:
            - date: 2024-03-14
              time: "7pm"
              title: "A meeting with a long title about violence reduction"
              place: "County Hall, Fishergate, Preston"
              url: "https://example.org/m"
        - video:
            thumbnail: {{src: images/ed-navigators.png, alt: "The navigators"}}
            url: "https://video.example.org/watch?v=navigators"
            caption: "Meet the navigators"
        - byline:
            name: "Sam Jones"
            role: "Programme lead"
            photo: {{src: images/divert-remote-team.png, alt: "Sam"}}
        - buttons:
            - {{label: "The first of the buttons", url: "https://example.org/1"}}
            - {{label: "A second button", url: "https://example.org/2"}}
        - text: |
            | Quarter | Referrals | Change |
            |:--|--:|--:|
            | One | 1,204 | +4% |
  - hero:
      image: {{src: images/divert-community-support.png, alt: "Community support"}}
      title: "A hero heading on a card"
      text: "A line of text under it."
  - social:
      - {{network: x, url: "https://x.com/example"}}
      - {{network: linkedin, url: "https://www.linkedin.com/company/example"}}
      - {{network: email, url: "mailto:hello@example.org"}}
  - contact:
      name: Example Network
      address: "County Hall, Fishergate, Preston PR1 8XB"
      phone: "+44 (0) 1772 537026"
      email: hello@example.org
      website: https://www.example.org/
      social:
        - {{network: twitter, handle: ExampleNet}}
        - {{network: facebook, handle: ExampleNet}}
"""


@pytest.fixture(scope="module")
def theme_issues(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issues/ folder with the reference images beside it (found in issues/images/)."""
    folder = tmp_path_factory.mktemp("themes") / "issues"
    shutil.copytree(ISSUES / "2020-12" / "images", folder / "images")
    return folder


@pytest.mark.parametrize("theme", theme_names())
def test_every_component_in_every_theme_fits_a_phone(theme: str, theme_issues: Path, site: Site,
                                                     open_page: Any) -> None:
    path = theme_issues / f"every-{theme}.yaml"
    path.write_text(EVERY_COMPONENT.format(theme=theme), "utf-8")
    assert {b.name for b in load_issue(path).walk()} == set(components()), "the sample misses a component"

    urls = site.publish(path)
    THIRD_PARTY.clear()

    for version in VERSIONS:
        page = open_page(urls[version], PHONE)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE, f"{theme} theme, {version} version: {width} px wide on a {PHONE} px phone"
        # logo, image, 3 in the gallery, feature, video, byline; 3 + 2 icons, light and dark
        assert page.eval_on_selector_all("img", OWN_IMAGES) == 18
        assert page.eval_on_selector_all("img", BROKEN_IMAGES) == [], f"{theme} theme, {version}: images not loaded"
        assert page.locator("h1").count() == 1
    assert THIRD_PARTY == []


# --- the round-2 blocks and the looks (issue 14), in issues/2021-01.yaml -------------------------

EVERY_BLOCK = ISSUES / "2021-01.yaml"


@pytest.fixture(scope="module")
def every_block_urls(site: Site) -> dict[str, str]:
    assert {b.name for b in load_issue(EVERY_BLOCK).walk()} == set(components())
    THIRD_PARTY.clear()
    return site.publish(EVERY_BLOCK)


def _features(page: Any) -> list[tuple[dict[str, float], dict[str, float]]]:
    """(image, title) boxes of each feature block, in order."""
    sections = page.locator("div.nl-feature")
    return [(_box(sections.nth(i).locator("img"), "feature image"),
             _box(sections.nth(i).locator(".nl-feature-title"), "feature title")) for i in range(sections.count())]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_block_fits_a_phone_and_loads_nothing_from_elsewhere(open_page: Any, every_block_urls: dict[str, str],
                                                                   version: str) -> None:
    for width in (PHONE, DESKTOP):
        page = open_page(every_block_urls[version], width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.eval_on_selector_all("img", BROKEN_IMAGES) == []
    assert THIRD_PARTY == []


@pytest.mark.parametrize("version", VERSIONS)
def test_feature_image_beside_text_on_desktop_above_it_on_a_phone(open_page: Any, every_block_urls: dict[str, str],
                                                                  version: str) -> None:
    desktop = _features(open_page(every_block_urls[version], DESKTOP))
    assert len(desktop) == 2
    (left_image, left_title), (right_image, right_title) = desktop
    assert left_image["x"] + left_image["width"] <= left_title["x"]  # image_side: left
    assert right_title["x"] + right_title["width"] <= right_image["x"]  # image_side: right
    for image, title in desktop:
        assert image["width"] < 300 and image["y"] < title["y"] + title["height"]  # side by side, one band
    for image, title in _features(open_page(every_block_urls[version], PHONE)):
        assert image["y"] + image["height"] <= title["y"], "a phone shows the image above the text"
        assert image["width"] >= 300, f"the image should span the phone, it is {image['width']} px"


@pytest.mark.parametrize("version", VERSIONS)
def test_buttons_side_by_side_on_desktop_and_wrapping_on_a_phone(open_page: Any, every_block_urls: dict[str, str],
                                                                 version: str) -> None:
    def boxes(width: int) -> list[dict[str, float]]:
        links = open_page(every_block_urls[version], width).locator("div.nl-buttons a")
        assert links.count() == 2
        return [_box(links.nth(i), "button") for i in range(2)]

    first, second = boxes(DESKTOP)
    assert first["y"] == second["y"] and first["x"] + first["width"] < second["x"]
    first, second = boxes(PHONE)
    assert second["y"] >= first["y"] + first["height"], "the second button wraps under the first"
    assert second["x"] + second["width"] <= PHONE


@pytest.mark.parametrize("version", VERSIONS)
def test_stats_cards_are_equal_height(open_page: Any, every_block_urls: dict[str, str], version: str) -> None:
    page = open_page(every_block_urls[version], DESKTOP)
    cells = page.locator("td.nl-stat")
    boxes = [_box(cells.nth(i), "stat card") for i in range(cells.count())]
    assert len(boxes) == 3
    assert max(b["height"] for b in boxes) - min(b["height"] for b in boxes) <= 1
    assert all(b["x"] + b["width"] + 10 <= c["x"] for b, c in pairwise(boxes)), "cards need a gap between them"
    phone = open_page(every_block_urls[version], PHONE).locator("td.nl-stat")
    _assert_stacked([_box(phone.nth(i), "stat card") for i in range(3)])


@pytest.mark.parametrize("version", VERSIONS)
def test_gallery_images_fill_a_phone_with_captions_centred(open_page: Any, every_block_urls: dict[str, str],
                                                           version: str) -> None:
    page = open_page(every_block_urls[version], PHONE)
    text = _box(page.locator("div.nl-prose p", has_text="Volunteers now run").first, "a paragraph")
    for name in ("garden-1.png", "garden-3.png"):
        image = _box(page.locator(f'img[src$="{name}"]').first, name)
        assert abs(image["width"] - text["width"]) <= 2, "a gallery image spans the column like the text"
    caption = page.locator("p.nl-caption", has_text="October: bare soil.")
    assert caption.evaluate("p => getComputedStyle(p.parentElement).textAlign") == "center"
    image, label = _box(page.locator('img[src$="garden-1.png"]'), "image"), _box(caption, "caption")
    text_width = caption.evaluate("p => { const r = document.createRange(); r.selectNodeContents(p);"
                                  " const b = r.getBoundingClientRect(); return [b.left, b.right]; }")
    assert abs((text_width[0] + text_width[1]) / 2 - (image["x"] + image["width"] / 2)) <= 2
    assert label["y"] >= image["y"] + image["height"]


def _rgb(css: str) -> tuple[int, int, int]:
    found = re.findall(r"\d+", css)
    return (int(found[0]), int(found[1]), int(found[2]))


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def lum(c: tuple[int, int, int]) -> float:
        ch = [v / 255 for v in c]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


BUTTON_COLOURS = """links => links.map(a => {
    let bg = 'rgba(0, 0, 0, 0)', el = a;
    while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
        bg = getComputedStyle(el).backgroundColor; el = el.parentElement;
    }
    return [a.innerText.trim(), getComputedStyle(a).color, bg];
})"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_buttons_keep_their_colours_in_both_schemes(open_page: Any, every_block_urls: dict[str, str],
                                                     scheme: str) -> None:
    page = open_page(every_block_urls["email"], DESKTOP, scheme)
    buttons = page.eval_on_selector_all(".nl-button a", BUTTON_COLOURS)
    # The mj-buttons, the hero's, the buttons block's and the feature's.
    assert len(buttons) >= 5
    palette = components_package.load_theme("default")
    colours = palette.colors if scheme == "light" else palette.colors_dark
    assert colours is not None
    for label, fg, bg in buttons:
        assert _rgb(fg) == _rgb(_hex_rgb(colours.on_primary)), f"{scheme}: {label!r} is drawn in {fg}"
        assert _contrast(_rgb(fg), _rgb(bg)) >= 4.5, f"{scheme}: {label!r} {fg} on {bg}"


def _hex_rgb(value: str) -> str:
    value = value.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i:i + 2], 16) for i in (0, 2, 4)))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_social_icons_swap_for_dark_mode(open_page: Any, every_block_urls: dict[str, str], scheme: str) -> None:
    page = open_page(every_block_urls["email"], DESKTOP, scheme)
    shown = page.eval_on_selector_all("p.nl-social img", "imgs => imgs.filter(i => i.getBoundingClientRect().width > 0)"
                                                         ".map(i => i.getAttribute('src').split('/').pop())")
    assert shown == [f"{n}-{scheme}.png" for n in ("facebook", "instagram", "youtube", "email", "website")]


def test_hero_card_fits_a_phone(open_page: Any, every_block_urls: dict[str, str]) -> None:
    page = open_page(every_block_urls["email"], PHONE)
    card = _box(page.locator("td.nl-hero-card-cell"), "hero card")
    assert card["x"] >= 12 and card["x"] + card["width"] <= PHONE - 12
    hero = page.locator("div.nl-hero td[background]")
    background = hero.evaluate("td => getComputedStyle(td).backgroundImage")
    assert "hero-park.png" in background and "cover" in hero.evaluate("td => getComputedStyle(td).backgroundSize")
