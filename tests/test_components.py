"""Every component renders valid MJML in every theme; the registry needs no wiring."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import lxml.html
import mjml
import pytest

import components
from components import load_issue, render_issue, theme_names
from components.registry import components as registry

from .conftest import ISSUES

TEMPLATES = Path(components.__file__).parent / "templates" / "blocks"
ALL_COMPONENTS = ISSUES / "2021-01.yaml"

# Which MJML elements may hold which: mjml-python does not validate, so we do.
PARENTS = {
    "mj-head": {"mjml"}, "mj-body": {"mjml"},
    "mj-title": {"mj-head"}, "mj-preview": {"mj-head"}, "mj-attributes": {"mj-head"}, "mj-style": {"mj-head"},
    "mj-all": {"mj-attributes"},
    "mj-section": {"mj-body", "mj-wrapper"}, "mj-wrapper": {"mj-body"}, "mj-hero": {"mj-body", "mj-wrapper"},
    "mj-column": {"mj-section", "mj-group"}, "mj-group": {"mj-section"},
    "mj-text": {"mj-column", "mj-hero", "mj-attributes"}, "mj-image": {"mj-column", "mj-hero", "mj-attributes"},
    "mj-button": {"mj-column", "mj-hero", "mj-attributes"}, "mj-divider": {"mj-column", "mj-attributes"},
    "mj-spacer": {"mj-column", "mj-hero"}, "mj-social": {"mj-column", "mj-hero"},
    "mj-social-element": {"mj-social"}, "mj-raw": {"mj-body", "mj-column", "mj-section", "mj-head"},
}


def test_every_block_module_has_a_template_with_both_macros():
    names = set(registry())
    templates = {p.name.removesuffix(".mjml.j2") for p in TEMPLATES.glob("*.mjml.j2")}
    assert names == templates
    for name in names:
        source = (TEMPLATES / f"{name}.mjml.j2").read_text()
        assert re.search(r"{%-?\s*macro mjml\(f, b, r\)", source), name
        assert re.search(r"{%-?\s*macro text\(f, b, r\)", source), name


def test_render_and_validate_know_no_component_by_name():
    # Adding a component must touch nothing but its module and template.
    root = Path(components.__file__).parent
    for module in ("render.py", "validate.py", "registry.py", "model.py"):
        source = (root / module).read_text()
        for name in registry():
            if name in ("text", "section"):  # words too common to check
                continue
            assert f'"{name}"' not in source, (module, name)


def test_example_issue_uses_every_component():
    issue = load_issue(ALL_COMPONENTS)
    assert {b.name for b in issue.walk()} == set(registry())


def _mjml_structure_errors(source: str) -> list[str]:
    doc = lxml.html.fragment_fromstring(source, create_parent="root")
    errors = []
    for element in doc.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if not tag.startswith("mj"):
            continue
        parent = element.getparent()
        if tag != "mjml" and tag not in PARENTS:
            errors.append(f"unknown MJML element <{tag}>")
        elif parent is not None and parent.tag == "mj-attributes":
            continue  # defaults for any element
        elif tag != "mjml" and (parent is None or parent.tag not in PARENTS[tag]):
            errors.append(f"<{tag}> inside <{parent.tag if parent is not None else None}>")
    return errors


@pytest.mark.parametrize("theme", theme_names())
def test_every_component_in_every_theme(theme):
    issue = load_issue(ALL_COMPONENTS)
    themed = replace(issue, fields=issue.fields.model_copy(update={"theme": theme}))
    rendered = render_issue(themed)
    assert _mjml_structure_errors(rendered.mjml) == []
    assert rendered.html.startswith("<!doctype html>")
    for needle in ("Forty new volunteers joined us", "1,240", "October: bare soil.", "Sign up to volunteer",
                   "Every Saturday morning", "I came for a cup of tea", "Example Community Trust"):
        assert needle in rendered.html, needle
    assert load_theme_colour(theme) in rendered.html


def load_theme_colour(theme: str) -> str:
    return components.load_theme(theme).colors.primary


def test_structure_check_catches_bad_nesting():
    assert _mjml_structure_errors("<mjml><mj-body><mj-text>x</mj-text></mj-body></mjml>")


def test_reference_mjml_is_well_nested(reference_rendered):
    assert _mjml_structure_errors(reference_rendered.mjml) == []


def test_runs_of_blocks_share_sections(reference_rendered):
    # One section per run of single-column blocks keeps the email under Gmail's clip.
    sections = reference_rendered.mjml.count("<mj-section")
    blocks = len(load_issue(ISSUES / "2020-12.yaml").walk())
    assert sections < blocks / 2


def test_mjml_compiles_each_fragment_alone():
    # Each block template on its own is valid MJML for mjml-python.
    issue = load_issue(ALL_COMPONENTS)
    for block in issue.blocks:
        rendered = render_issue(replace(issue, blocks=(block,)))
        assert mjml.mjml2html(rendered.mjml).startswith("<!doctype html>")


def test_images_carry_alt_text_and_labelled_icons_are_decorative(reference_rendered):
    doc = lxml.html.document_fromstring(reference_rendered.html)
    images = doc.xpath("//img")
    assert len(images) == 10  # 8 pictures and the Twitter icon, light and dark
    assert all(img.get("alt") for img in images[:8]), [lxml.html.tostring(i) for i in images if not i.get("alt")]
    # The contact block writes "Twitter: @LancsVRN" beside its icon: the icon says nothing more.
    icons = doc.xpath("//a[contains(@href, 'twitter.com')]//img")
    assert len(icons) == 2 and all(img.get("alt") == "" for img in icons)
    assert icons[0].getparent().text_content().strip() == "Twitter: @LancsVRN"


def test_icon_only_social_links_are_named_by_their_alt_text():
    doc = lxml.html.document_fromstring(render_issue(ALL_COMPONENTS).html)
    row = doc.xpath("//p[@class='nl-social']//a")
    assert [a.xpath("img/@alt") for a in row] == [[n, n] for n in ("Facebook", "Instagram", "YouTube", "Email",
                                                                   "Website")]


def test_layout_tables_are_presentational(reference_rendered):
    doc = lxml.html.document_fromstring(reference_rendered.html)
    assert all(t.get("role") == "presentation" for t in doc.xpath("//table"))
    assert len(doc.xpath("//h1")) == 1


def test_web_version_has_no_personal_fields_or_unsubscribe():
    rendered = render_issue(ALL_COMPONENTS)
    assert "{{" not in rendered.web_html and "zqmf" not in rendered.web_html
    assert "Unsubscribe" not in rendered.web_html
    assert "Dear friend," in rendered.web_html and "in our town." in rendered.web_html
    assert 'href="{{ unsubscribe_url }}"' in rendered.html
    assert 'src="images/team.png"' in rendered.web_html  # relative: works from disk and from the archive
    assert 'src="http://127.0.0.1:8025/archive/2021-01/images/team.png"' in rendered.html


def test_theme_folder_templates_override_built_ins(tmp_path, monkeypatch):
    from components import render as render_module
    from components import theme as theme_module
    themes = tmp_path / "themes"
    (themes / "custom" / "blocks").mkdir(parents=True)
    for name in theme_names():
        (themes / f"{name}.yaml").write_text((theme_module.THEMES_DIR / f"{name}.yaml").read_text())
    (themes / "custom.yaml").write_text((theme_module.THEMES_DIR / "default.yaml").read_text())
    (themes / "custom" / "blocks" / "divider.mjml.j2").write_text(
        '{% macro mjml(f, b, r) %}<mj-text>CUSTOM-DIVIDER</mj-text>{% endmacro %}'
        '{% macro text(f, b, r) %}~~~{% endmacro %}')
    monkeypatch.setattr(theme_module, "THEMES_DIR", themes)
    pass
    render_module.clear_template_cache()
    try:
        issue = load_issue(ALL_COMPONENTS)
        rendered = render_issue(replace(issue, fields=issue.fields.model_copy(update={"theme": "custom"})))
        assert "CUSTOM-DIVIDER" in rendered.html and "~~~" in rendered.text
        assert "Forty new volunteers" in rendered.html  # the other built-ins still render
    finally:
        pass
        render_module.clear_template_cache()


def test_social_links_go_to_the_profile_not_a_share_page(reference_rendered):
    # MJML's plain `twitter`/`facebook` elements wrap the href in a share URL
    # (twitter.com/intent/tweet?url=…): "Twitter: @LancsVRN" must open the profile.
    html = reference_rendered.html
    assert 'href="https://twitter.com/LancsVRN"' in html
    assert "intent/tweet" not in html and "sharer.php" not in html and "shareArticle" not in html
