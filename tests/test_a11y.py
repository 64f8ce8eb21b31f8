"""Accessibility checks (components/a11y.py): the examples pass; one crafted failure per rule."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from jinja2 import ChoiceLoader, DictLoader

from components import load_issue, load_theme, render_issue
from components import render as render_module
from components.a11y import (
    A11yFinding,
    check_accessibility,
    check_contrast,
    contrast_ratio,
    parse_color,
    relative_luminance,
)
from components.fields import Image
from components.theme import THEMES_DIR, Palette, Theme

from .conftest import ISSUES

EXAMPLES = [ISSUES / "2020-12.yaml", ISSUES / "2021-01.yaml"]

BASE = """\
subject: {subject}
preheader: Preview text
{extra}blocks:
{blocks}
"""
MASTHEAD = "  - masthead: Test News\n"


def _write(write_issue, blocks: str, subject: str = "Hello", extra: str = "") -> Path:
    return write_issue(BASE.format(subject=subject, extra=extra, blocks=blocks))


def _check(path: Path, html: str | None = None, theme: Theme | None = None) -> list[A11yFinding]:
    issue = load_issue(path)
    rendered = render_issue(issue)
    if html is not None:
        rendered = replace(rendered, html=html(rendered.html) if callable(html) else html)
    return check_accessibility(issue, rendered, theme or load_theme(issue.fields.theme))


def _rule(findings: list[A11yFinding], rule: str) -> list[A11yFinding]:
    return [f for f in findings if f[1] == rule]


def _line(path: Path, needle: str) -> int:
    """The line of the block the test means (the first line holding `needle`)."""
    return next(n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line)


# --- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_issues_have_no_accessibility_findings(path):
    assert _check(path) == []


def test_a_clean_crafted_issue_has_none(write_issue):
    path = _write(write_issue, MASTHEAD + "  - contents: Contents\n  - section:\n      title: One\n"
                                          "      blocks:\n        - heading: Sub\n"
                                          "        - text: 'See [the annual report](https://example.org/r).'\n"
                                          "        - image: {src: images/pic.png, alt: A chart of the year}\n")
    assert _check(path) == []


# --- 1. lang and dir ---------------------------------------------------------------------------


def test_wrapper_without_lang_and_dir_is_an_error_at_the_issue_file(write_issue):
    path = _write(write_issue, MASTHEAD)
    findings = _rule(_check(path, lambda h: h.replace(' lang="en" dir="ltr"', "")), "a11y-lang")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), 1)] * 2
    assert "no lang" in findings[0][2] and "no dir" in findings[1][2]


def test_wrapper_lang_must_be_the_issues(write_issue):
    path = _write(write_issue, MASTHEAD, extra="lang: fr\n")
    assert _rule(_check(path), "a11y-lang") == []
    findings = _rule(_check(path, lambda h: h.replace('lang="fr"', 'lang="und"')), "a11y-lang")
    assert len(findings) == 1 and 'lang="und"' in findings[0][2] and '"fr"' in findings[0][2]


def test_dir_must_match_the_languages_direction(write_issue):
    path = _write(write_issue, MASTHEAD)
    findings = _rule(_check(path, lambda h: h.replace('dir="ltr"', 'dir="rtl"')), "a11y-lang")
    assert len(findings) == 1 and "written ltr" in findings[0][2]


def test_a_right_to_left_issue_is_marked_rtl(write_issue):
    path = _write(write_issue, MASTHEAD, extra="lang: ar\n")
    assert _rule(_check(path), "a11y-lang") == []


# --- 2. title ----------------------------------------------------------------------------------


def test_title_is_the_subject_with_its_merge_fields(write_issue):
    # Written loosely, restored canonically: still the subject.
    path = _write(write_issue, MASTHEAD, subject="\"{{first_name|default('you')}}, hello\"")
    assert _check(path) == []


def test_missing_or_wrong_title_is_an_error(write_issue):
    path = _write(write_issue, MASTHEAD, subject="Our news")
    empty = _rule(_check(path, lambda h: h.replace("<title>Our news</title>", "<title></title>")), "a11y-title")
    wrong = _rule(_check(path, lambda h: h.replace("<title>Our news</title>", "<title>Untitled</title>")),
                  "a11y-title")
    assert [(f[0], f[3], f[4]) for f in empty + wrong] == [("error", str(path), 1)] * 2
    assert "no <title>" in empty[0][2] and "'Untitled'" in wrong[0][2] and "'Our news'" in wrong[0][2]


# --- 3. layout tables --------------------------------------------------------------------------


@pytest.fixture
def override_templates(monkeypatch):
    """Templates overridden as a theme folder would (design §11.8), without touching the repository."""
    def override(templates: dict[str, str]) -> None:
        real = render_module._env.__wrapped__("default")  # a fresh one: its filters, escaping and finalize
        env = real.overlay(loader=ChoiceLoader([DictLoader(templates), real.loader]))
        monkeypatch.setattr(render_module, "_env", lambda name: env)
        monkeypatch.setattr("components.a11y._env", lambda name: env)
    return override


def test_a_table_without_role_presentation_names_its_block(write_issue, override_templates):
    macros = (Path(render_module.__file__).parent / "templates" / "macros.j2").read_text("utf-8")
    assert '<table role="presentation"' in macros
    override_templates({"macros.j2": macros.replace('<table role="presentation"', "<table")})
    path = _write(write_issue, MASTHEAD + "  - text: Hello\n  - callout: Take note\n")
    findings = _rule(_check(path), "a11y-layout-table")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "callout"))]
    assert findings[0][2].startswith("blocks[2].callout: 1 layout table(s)")


def test_a_page_table_without_role_is_reported_at_the_issue_file(write_issue):
    path = _write(write_issue, MASTHEAD)
    # The first table outside Outlook's conditional comments is the page template's top bar.
    strip = lambda h: re.sub(r'(<div[^>]*><table[^>]*?) role="presentation"', r"\1", h, count=1)
    findings = _rule(_check(path, strip), "a11y-layout-table")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), 1)]
    assert "page template" in findings[0][2]


def test_a_data_table_is_not_a_layout_table(write_issue):
    # A Markdown table is data: its headers must reach screen readers, so no role="presentation".
    table = ('<table class="x"><thead><tr><th>Group</th><th>Members</th></tr></thead>'
             "<tbody><tr><td>Lunch club</td><td>12</td></tr></tbody></table>")
    path = _write(write_issue, MASTHEAD + "  - text: Join us this spring.\n")
    assert _rule(_check(path, _text("Join us this spring.", table)), "a11y-layout-table") == []
    layout = table.replace("<thead><tr><th>Group</th><th>Members</th></tr></thead>", "")
    findings = _rule(_check(path, _text("Join us this spring.", layout)), "a11y-layout-table")
    assert len(findings) == 1 and "page template" in findings[0][2]  # text no block's template drew


def test_tables_only_outlook_sees_are_not_counted(write_issue):
    path = _write(write_issue, MASTHEAD)
    assert _rule(_check(path, lambda h: h.replace("<!--[if mso | IE]><table", "<!--[if mso | IE]><table x=''")),
                 "a11y-layout-table") == []
    html = render_issue(load_issue(path)).html
    assert re.search(r"<!--\[if mso \| IE\]><table", html)  # MJML does emit them


# --- 4. headings -------------------------------------------------------------------------------


def test_no_h1_is_an_error(write_issue):
    path = _write(write_issue, "  - section:\n      title: One\n      blocks:\n        - text: Hi\n")
    findings = _rule(_check(path), "a11y-headings")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), 1)]
    assert "no <h1>" in findings[0][2]


def test_a_second_h1_names_its_block(write_issue):
    path = _write(write_issue, MASTHEAD + "  - text: Hello\n  - masthead: Again\n")
    findings = _rule(_check(path), "a11y-headings")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "Again"))]
    assert findings[0][2].startswith("blocks[2].masthead: a second <h1> ('Again')")


def test_a_skipped_level_names_the_heading_block(write_issue):
    path = _write(write_issue, MASTHEAD + "  - heading: Straight to h3\n")
    findings = _rule(_check(path), "a11y-headings")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "Straight"))]
    assert "blocks[1].heading: <h3> ('Straight to h3') follows an <h1>" in findings[0][2]


def test_a_skipped_level_in_markdown_names_the_text_block(write_issue):
    path = _write(write_issue, MASTHEAD + "  - section:\n      title: One\n      blocks:\n"
                                          "        - text: Fine\n        - text: \"#### Too deep\"\n")
    findings = _rule(_check(path), "a11y-headings")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "Too deep"))]
    assert findings[0][2].startswith("blocks[1].section.blocks[1].text: <h4> ('Too deep') follows an <h2>")


def test_a_heading_before_the_h1_is_a_skip(write_issue):
    path = _write(write_issue, "  - heading: Early\n" + MASTHEAD)
    findings = _rule(_check(path), "a11y-headings")
    assert [(f[3], f[4]) for f in findings] == [(str(path), _line(path, "Early"))]
    assert "is the first heading" in findings[0][2]


# --- 5. link text ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["click here", "Here", "read more »", "More", "link", "this link."])
def test_vague_markdown_link_text_names_the_text_block(write_issue, text):
    path = _write(write_issue, MASTHEAD + f"  - text: 'For the report [{text}](https://example.org/report).'\n")
    findings = _rule(_check(path), "a11y-link-text")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "report"))]
    assert findings[0][2].startswith("blocks[1].text: link text") and "https://example.org/report" in findings[0][2]


def test_vague_button_label_names_the_button(write_issue):
    path = _write(write_issue, MASTHEAD + "  - text: Hello\n  - button: {label: Read more, url: 'https://example.org/'}\n")
    findings = _rule(_check(path), "a11y-link-text")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "button"))]


def test_descriptive_text_and_bare_urls_are_fine(write_issue):
    # A bare URL says where it goes, so it passes (the contact block shows its website that way).
    path = _write(write_issue, MASTHEAD + "  - text: 'See <https://example.org/report> or "
                                          "[click here to read the report](https://example.org/r).'\n")
    assert _rule(_check(path), "a11y-link-text") == []


def test_an_empty_link_is_an_error(write_issue):
    path = _write(write_issue, MASTHEAD + "  - text: 'Look [](https://example.org/x) there.'\n")
    findings = _rule(_check(path), "a11y-link-text")
    assert len(findings) == 1 and "has no text" in findings[0][2] and findings[0][4] == _line(path, "Look")


# --- 6. alt text -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [
    "  - image: {src: images/pic.png, alt: ''}\n",
    "  - gallery: [{src: images/pic.png, alt: Fine}, {src: images/pic.png, alt: ' '}]\n",
    "  - masthead: {title: Logo news, logo: {src: images/pic.png, alt: ''}}\n",
])
def test_empty_alt_without_decorative_names_the_block(write_issue, block):
    path = _write(write_issue, ("" if "masthead" in block else MASTHEAD) + block)
    findings = _rule(_check(path), "a11y-alt-text")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "images/pic.png"))]
    assert "has no alt text" in findings[0][2] and "decorative: true" in findings[0][2]


def test_a_linked_image_needs_alt_text_as_its_link_text(write_issue):
    path = _write(write_issue, MASTHEAD + "  - image: {src: images/pic.png, alt: '', href: 'https://example.org/'}\n")
    findings = _check(path)
    assert [(f[0], f[1], f[4]) for f in findings] == [("error", "a11y-alt-text", _line(path, "image"))]
    assert "is a link to https://example.org/" in findings[0][2]


class DecorativeImage(Image):
    """Image as it will be once fields.Image has `decorative: bool = False`."""

    decorative: bool = False


def _with_image(write_issue, **fields) -> list[A11yFinding]:
    path = _write(write_issue, MASTHEAD + "  - image: {src: images/pic.png, alt: placeholder}\n")
    issue = load_issue(path)
    rendered = render_issue(issue)
    image = replace(issue.blocks[1], fields=DecorativeImage(src="images/pic.png", **fields))
    issue = replace(issue, blocks=(issue.blocks[0], image))
    return _rule(check_accessibility(issue, rendered, load_theme("default")), "a11y-alt-text")


def test_a_declared_decorative_image_may_have_empty_alt(write_issue):
    assert _with_image(write_issue, alt="", decorative=True) == []


def test_decorative_with_alt_is_a_warning_and_linked_decorative_an_error(write_issue):
    assert [f[0] for f in _with_image(write_issue, alt="A photo", decorative=True)] == ["warning"]
    linked = _with_image(write_issue, alt="Our site", decorative=True, href="https://example.org/")
    assert [f[0] for f in linked] == ["error"] and "never decorative" in linked[0][2]


def test_a_template_image_without_alt_names_its_block(write_issue, override_templates):
    override_templates({"blocks/image.mjml.j2": '{% macro mjml(f, b, r) -%}<mj-image src="{{ r.asset(f.src) }}" />'
                                                '{%- endmacro %}{% macro text(f, b, r) -%}x{%- endmacro %}'})
    path = _write(write_issue, MASTHEAD + "  - image: {src: images/pic.png, alt: A chart}\n")
    findings = _rule(_check(path), "a11y-alt-text")
    assert [(f[0], f[4]) for f in findings] == [("error", _line(path, "image"))]
    assert "no alt attribute" in findings[0][2]


# --- 7. contrast -------------------------------------------------------------------------------


def test_contrast_math_matches_known_values():
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.005)
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#fff", "#000") == pytest.approx(21.0)  # order does not matter
    assert contrast_ratio("#0b5cad", "#0b5cad") == pytest.approx(1.0)
    assert contrast_ratio("rgb(118, 118, 118)", "#ffffff") == pytest.approx(4.54, abs=0.005)
    assert relative_luminance((255, 255, 255)) == pytest.approx(1.0)
    assert parse_color("#ABC") == (170, 187, 204) and parse_color("navy") is None


PALETTE = dict(body_bg="#eef1f5", content_bg="#ffffff", text="#1f2933", muted="#52606d", heading="#102a43",
               link="#0b5cad", primary="#0b5cad", on_primary="#ffffff", accent="#0b5cad", panel="#e8f0fa",
               on_panel="#102a43", rule="#d9e2ec")


def _theme(cls: type[Theme] = Theme, **colors) -> Theme:
    extra = {"colors_dark": Palette(**{**PALETTE, **colors.pop("dark")})} if "dark" in colors else {}
    return cls(name="crafted", font="Arial", heading_font="Arial", colors=Palette(**{**PALETTE, **colors}),
               organisation="O", postal_address="A", reason="R", **extra)


def _theme_yaml(tmp_path: Path, theme: Theme) -> Path:
    path = tmp_path / "crafted.yaml"
    lines = ["font: Arial", "colors:", *(f'  {k}: "{v}"' for k, v in theme.colors.model_dump().items())]
    dark = getattr(theme, "colors_dark", None)
    if dark is not None:
        lines += ["colors_dark:", *(f'  {k}: "{v}"' for k, v in dark.model_dump().items())]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_the_shipped_themes_pass():
    for name in ("default", "lvrn"):
        assert check_contrast(load_theme(name)) == []


def test_low_contrast_names_the_theme_file_the_pair_and_the_key_line(tmp_path):
    theme = _theme(muted="#777777")
    path = _theme_yaml(tmp_path, theme)
    findings = check_contrast(theme, path)
    # muted is drawn on the content and on the body background (footer): both pairs fail.
    assert [(f[0], f[1], f[3], f[4]) for f in findings] == [("error", "a11y-contrast", str(path), 6)] * 2
    assert findings[0][2].startswith("theme crafted: colors.muted #777777 on colors.content_bg #ffffff is 4.48:1, "
                                     "below 4.5:1 (WCAG 1.4.3); used for image captions")
    assert findings[1][2].startswith("theme crafted: colors.muted #777777 on colors.body_bg #eef1f5 is 3.95:1")


# --- 7. contrast on what the reader sees: the email after its CSS cascade -----------------------

BUTTON = MASTHEAD + ("  - text: Join us this spring.\n"
                     "  - button: {label: Sign up to volunteer, url: 'https://example.org/join'}\n")


def _head(css: str):
    """The built email with one more <style> block, as a template's dark rules would add it."""
    return lambda h: h.replace("</head>", f"<style type=\"text/css\">{css}</style></head>", 1)


def _text(old: str, new: str):
    return lambda h: h.replace(old, new, 1)


def test_a_dark_link_rule_that_reaches_the_button_is_caught_at_the_button(write_issue):
    # Issue 14: `.nl-card a {color: #8cc8ff !important}` also coloured the button's white label.
    path = _write(write_issue, BUTTON)
    assert _rule(_check(path), "a11y-contrast") == []
    findings = _rule(_check(path, _head("@media (prefers-color-scheme: dark) "
                                        "{ .nl-card a { color: #8cc8ff !important; } }")), "a11y-contrast")
    assert [(f[0], f[3], f[4]) for f in findings] == [("error", str(path), _line(path, "button"))]
    assert findings[0][2].startswith("blocks[2].button: in dark mode, the button 'Sign up to volunteer' is "
                                     "#8cc8ff on #0b5cad: 3.75:1, below 4.5:1 (WCAG 1.4.3); theme default: "
                                     "colors_dark.link = colors_dark.accent on ")


def test_outlooks_dark_rules_are_checked_too(write_issue):
    path = _write(write_issue, BUTTON)
    findings = _rule(_check(path, _head("[data-ogsc] .nl-card a { color: #8cc8ff !important; }")), "a11y-contrast")
    assert len(findings) == 1 and findings[0][2].startswith("blocks[2].button: in Outlook dark mode, the button")


def test_large_text_needs_3_to_1_and_body_text_4_5(write_issue):
    path = _write(write_issue, BUTTON)
    grey = '<span style="color:#888888;font-size:{}">Join us this spring.</span>'  # 3.54:1 on white
    for size, bold, fails in (("24px", "", False), ("23px", "", True), ("19px", "font-weight:bold;", False),
                              ("18px", "font-weight:bold;", True)):
        span = grey.format(size).replace('style="', f'style="{bold}')
        findings = _rule(_check(path, _text("Join us this spring.", span)), "a11y-contrast")
        assert [(f[4], "3.54:1, below 4.5:1" in f[2]) for f in findings] == ([(_line(path, "text:"), True)]
                                                                             if fails else []), (size, bold)


def test_hidden_text_is_not_judged(write_issue):
    path = _write(write_issue, BUTTON)
    for hide in ("display:none", "opacity:0", "max-height:0;overflow:hidden", "visibility:hidden", "font-size:0"):
        span = f'<div style="{hide};color:#ffffff">Join us this spring.</div>'
        assert _rule(_check(path, _text("Join us this spring.", span)), "a11y-contrast") == [], hide


def test_text_of_the_page_template_is_reported_at_the_issue_file(write_issue):
    path = _write(write_issue, BUTTON)
    reason = load_theme("default").reason
    findings = _rule(_check(path, _text(reason, f'<span style="color:#dddddd">{reason}</span>')), "a11y-contrast")
    assert [(f[3], f[4]) for f in findings] == [(str(path), 1)]
    # Dark mode leaves the span's own colour as it is, light on dark: only light mode fails.
    assert findings[0][2].startswith(f"the page template: in light mode, the text {reason[:57] + '...'!r} is "
                                     "#dddddd on #eef1f5: 1.20:1, below 4.5:1 (WCAG 1.4.3); theme default: "
                                     "#dddddd on colors.body_bg")


def test_a_text_twice_in_the_email_is_its_own_blocks(write_issue):
    # The contents block lists "1. Volunteers"; the section's title says it again further down.
    path = _write(write_issue, MASTHEAD + "  - contents: Contents\n  - section:\n      title: Volunteers\n"
                                          "      blocks:\n        - text: Forty joined.\n")
    findings = _rule(_check(path, _head("a, h2 { color: #dddddd !important; }")), "a11y-contrast")
    placed = {re.search(r"the (\w+ '[^']*')", f[2]).group(1): f[4] for f in findings}
    assert placed["link '1. Volunteers'"] == _line(path, "contents")
    assert placed["heading '1. Volunteers'"] == _line(path, "section")
    assert placed["link 'View this email in your browser'"] == 1  # the page template's top bar


def test_a_phone_only_failure_says_so(write_issue):
    path = _write(write_issue, BUTTON)
    css = "@media only screen and (max-width:479px) { .tiny { color: #aaaaaa !important; } }"
    html = lambda h: _head(css)(_text("Join us this spring.", '<span class="tiny">Join us this spring.</span>')(h))
    findings = _rule(_check(path, html), "a11y-contrast")
    assert len(findings) == 1 and " mode at 375px wide, the text 'Join us this spring.'" in findings[0][2]


@pytest.fixture
def crafted_theme(tmp_path, monkeypatch):
    """A theme file of our own, found as the shipped ones are."""
    from components import render as render_module
    from components import theme as theme_module
    themes = tmp_path / "themes"
    themes.mkdir()
    for name in ("default", "lvrn"):
        (themes / f"{name}.yaml").write_text((THEMES_DIR / f"{name}.yaml").read_text("utf-8"), "utf-8")

    def make(**dark: str) -> str:
        text = (THEMES_DIR / "default.yaml").read_text("utf-8")
        head, _, tail = text.partition("colors_dark:")
        for key, value in dark.items():
            tail = re.sub(rf"(\n  {key}: )\"[^\"]*\"", rf'\1"{value}"', tail, count=1)
        (themes / "crafted.yaml").write_text(head + "colors_dark:" + tail, "utf-8")
        return "crafted"
    monkeypatch.setattr(theme_module, "THEMES_DIR", themes)
    render_module.clear_template_cache()
    yield make
    render_module.clear_template_cache()


def test_a_dark_palette_colour_too_dim_is_found_where_it_is_drawn(write_issue, crafted_theme):
    name = crafted_theme(muted="#3e4c59")  # 1.9:1 on the dark body background
    path = _write(write_issue, BUTTON, extra=f"theme: {name}\n")
    findings = _rule(_check(path), "a11y-contrast")
    assert findings and {(f[3], f[4]) for f in findings} == {(str(path), 1)}  # top bar and footer
    assert all(f[2].startswith("the page template: in dark and Outlook dark mode") for f in findings)
    assert all("theme crafted: colors_dark.muted on colors_dark.body_bg" in f[2] for f in findings)


class DarkTheme(Theme):
    """Theme as it will be once it has a dark palette with the same keys."""

    colors_dark: Palette | None = None


def test_the_dark_palette_is_checked_too(tmp_path):
    theme = _theme(DarkTheme, dark=dict(content_bg="#1f2933", text="#52606d"))
    path = _theme_yaml(tmp_path, theme)
    findings = check_contrast(theme, path)
    assert [f[2].split(" is ")[0] for f in findings] == [
        "theme crafted: colors_dark.text #52606d on colors_dark.content_bg #1f2933",
        "theme crafted: colors_dark.muted #52606d on colors_dark.content_bg #1f2933",
        "theme crafted: colors_dark.heading #102a43 on colors_dark.content_bg #1f2933",
        "theme crafted: colors_dark.link #0b5cad on colors_dark.content_bg #1f2933",
    ]
    assert findings[0][4] == 18  # the `text:` line under colors_dark, not under colors


def test_an_unreadable_colour_is_a_warning(tmp_path):
    theme = _theme(link="blue")
    findings = check_contrast(theme, _theme_yaml(tmp_path, theme))
    assert {(f[0], f[4]) for f in findings} == {("warning", 8)} and "'blue'" in findings[0][2]
