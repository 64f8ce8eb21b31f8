"""components/cascade.py: the colours a reader sees, computed without a browser, and chromium agreeing.

The browser test reads every text-bearing element's computed style in chromium (emulated light and
dark colour schemes, Outlook's data-ogsc/data-ogsb marks, desktop and phone widths) and compares
it, element by element, with the Python cascade, on the example issues and on a crafted page that
uses what the templates do not (rgba, hsl, named colours, shorthands, UA defaults, hiding).
"""
from __future__ import annotations

import pytest

from components import render_issue
from components.cascade import (
    DESKTOP,
    PHONE,
    Document,
    View,
    hex_colour,
    media_matches,
    parse_css_color,
    parse_declarations,
)

from .conftest import ISSUES

EXAMPLES = [ISSUES / "2020-12.yaml", ISSUES / "2021-01.yaml"]
LIGHT, DARK = View("light", "light", DESKTOP), View("dark", "dark", DESKTOP)
OUTLOOK = View("Outlook dark", "light", DESKTOP, outlook=True)

CRAFTED = """<!doctype html><html><head><meta name="color-scheme" content="light dark"><style>
p.x { color: rgba(0,0,0,.5) } .y { background: url(a.png) #ffeeaa no-repeat } h2 { color: hsl(120, 50%, 30%) }
@media (prefers-color-scheme: dark) { .y { background-color: #222 !important } p.x { color: #eee } }
@media screen and (max-width: 400px) { h2 { font-size: 30px } }
em { font: italic bold 12px/30px Georgia, serif }
.y, .z &gt; p { color: red }
[data-ogsc] .y p.x { color: darkslategray !important }
</style></head><body>
<div class="y"><p class="x" style="color: red">red wins inline</p><p class="x">half black</p>
<h2>heading <b>bold</b> <a href="#">link <span>in span</span></a></h2>
<font color="green">font tag</font>
<table bgcolor="ccddee"><tr><td>cell <small>small</small> <em>em</em></td></tr></table>
<div style="color: currentColor; font-size: 150%">big <strong style="font-weight:lighter">light</strong></div>
<a href="x" style="color:inherit">inherits</a>
<div style="visibility:hidden">hidden <span style="visibility:visible">shown</span></div>
<div style="max-height:0;overflow:hidden">clipped</div><span style="opacity:0">transparent</span>
<div style="display:none;color:#ffeeaa">preheader&#8204;&nbsp;&#8204;</div><p style="font-size:0">zero</p>
</div></body></html>"""


def _runs(html: str, view: View) -> list[tuple[str, str, str, float, int]]:
    return [(r.text, hex_colour(r.color), hex_colour(r.background), round(r.size, 2), r.weight)
            for r in Document(html).text_runs(view)]


def test_the_crafted_page_in_light_mode():
    assert _runs(CRAFTED, LIGHT) == [
        ("red wins inline", "#ff0000", "#ffeeaa", 16, 400),  # inline beats the sheet
        ("half black", "#807755", "#ffeeaa", 16, 400),  # translucent text blended into the background
        ("heading", "#267326", "#ffeeaa", 24, 700),  # hsl(); h2 is 1.5em and bold
        ("bold", "#267326", "#ffeeaa", 24, 900),  # <b> is bolder than its bold parent
        ("link", "#0000ee", "#ffeeaa", 24, 700),  # the UA's link colour beats the inherited one
        ("in span", "#0000ee", "#ffeeaa", 24, 700),
        ("font tag", "#008000", "#ffeeaa", 16, 400),  # the invalid `.z &gt; p` dropped the whole red rule
        ("cell", "#000000", "#ccddee", 16, 400),  # bgcolor without '#'
        ("small", "#000000", "#ccddee", 13.33, 400),
        ("em", "#000000", "#ccddee", 12, 700),  # the font shorthand
        ("big", "#000000", "#ffeeaa", 24, 400),
        ("light", "#000000", "#ffeeaa", 24, 100),
        ("inherits", "#000000", "#ffeeaa", 16, 400),
        ("shown", "#000000", "#ffeeaa", 16, 400),  # visibility: visible inside hidden is seen
    ]


def test_dark_mode_applies_the_media_rules_and_the_dark_canvas():
    runs = {text: (fg, bg) for text, fg, bg, *_ in _runs(CRAFTED, DARK)}
    assert runs["half black"] == ("#eeeeee", "#222222")  # the !important background beats the shorthand
    assert runs["link"] == ("#9e9eff", "#222222")  # chromium's link colour on a dark canvas
    assert runs["cell"] == ("#ffffff", "#ccddee")  # canvas text turns white


def test_outlook_marks_select_only_their_rules():
    runs = {text: fg for text, fg, *_ in _runs(CRAFTED, OUTLOOK)}
    assert runs["half black"] == "#2f4f4f" and runs["red wins inline"] == "#2f4f4f"  # !important over inline
    assert {text: fg for text, fg, *_ in _runs(CRAFTED, LIGHT)}["half black"] == "#807755"


def test_width_queries_apply_at_their_width():
    phone = View("light", "light", PHONE)
    assert [r[3] for r in _runs(CRAFTED, phone) if r[0] == "heading"] == [30]
    assert [(v.name, v.width) for v in Document(CRAFTED).views()] == [
        (name, width) for width in (DESKTOP, PHONE) for name in ("light", "dark", "Outlook dark")]


def test_views_follow_what_the_email_declares():
    light_only = "<html><head></head><body><p>x</p></body></html>"
    assert Document(light_only).views() == [LIGHT]
    html = render_issue(EXAMPLES[1]).html
    assert {(v.name, v.outlook) for v in Document(html).views()} == {
        ("light", False), ("dark", False), ("Outlook dark", True)}


@pytest.mark.parametrize("media, view, expected", [
    ("(prefers-color-scheme: dark)", DARK, True),
    ("(prefers-color-scheme: dark)", LIGHT, False),
    ("only screen and (max-width:479px)", View("light", "light", PHONE), True),
    ("only screen and (max-width:479px)", LIGHT, False),
    ("screen and (min-width: 480px)", LIGHT, True),
    ("print", LIGHT, False),
    ("print, screen", LIGHT, True),
    ("not print", LIGHT, True),
    ("(-webkit-min-device-pixel-ratio: 2)", LIGHT, False),  # unknown features do not match
])
def test_media_queries(media, view, expected):
    assert media_matches(media, view) is expected


def test_colours():
    assert parse_css_color("#ABC") == (170, 187, 204, 1.0)
    assert parse_css_color("#11223380") == (17, 34, 51, pytest.approx(0.502, abs=0.001))
    assert parse_css_color("rgb(10 20 30 / 50%)") == (10, 20, 30, 0.5)
    assert parse_css_color("rgba(100%, 0%, 0%, .25)") == (255, 0, 0, 0.25)
    assert parse_css_color("hsl(0, 100%, 50%)") == (255, 0, 0, 1.0)
    assert parse_css_color("RebeccaPurple") == (102, 51, 153, 1.0)
    assert parse_css_color("transparent")[3] == 0
    assert parse_css_color("url(x.png)") is None and parse_css_color("#12") is None


def test_declarations():
    assert parse_declarations("color:#fff;background:url('a;b.png') #000 !important; font-family:'A;B'") == (
        ("color", "#fff", False), ("background-color", "#000", True))
    assert parse_declarations("background: url(x.png)") == (("background-color", "transparent", False),)
    assert parse_declarations("font: 700 20px/1.2 Arial") == (("font-size", "20px", False),
                                                              ("font-weight", "700", False))


# --- chromium agrees ---------------------------------------------------------------------------

READ_RUNS = """(outlook) => {
  if (outlook) { document.body.setAttribute('data-ogsc', ''); document.body.setAttribute('data-ogsb', ''); }
  const rgba = (s) => {
    const m = s.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (t, u) => [0, 1, 2].map(i => t[i] * t[3] + u[i] * (1 - t[3]));
  const dark = matchMedia('(prefers-color-scheme: dark)').matches &&
    getComputedStyle(document.documentElement).colorScheme.includes('dark');
  const hex = (c) => '#' + c.map(v => Math.round(v).toString(16).padStart(2, '0')).join('');
  const out = [];
  for (const el of [document.body, ...document.body.querySelectorAll('*')]) {
    const text = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.data).join('')
      .replace(/[\\u200b\\u200c\\u200d\\u2060\\ufeff\\u034f\\u00ad]/g, ' ').split(/\\s+/).filter(Boolean).join(' ');
    if (!text) continue;
    const cs = getComputedStyle(el);
    if (el.getClientRects().length === 0 || cs.visibility !== 'visible' || parseFloat(cs.fontSize) <= 0) continue;
    let hidden = false;
    for (let a = el; a; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.opacity === '0') hidden = true;
      if (s.overflowY !== 'visible' && s.display !== 'inline' && a.getBoundingClientRect().height === 0) hidden = true;
    }
    if (hidden) continue;
    const layers = [];
    for (let a = el; a; a = a.parentElement) layers.unshift(rgba(getComputedStyle(a).backgroundColor));
    let under = dark ? [18, 18, 18] : [255, 255, 255];
    for (const c of layers) if (c[3] > 0) under = over(c, under);
    out.push([text, hex(over(rgba(cs.color), under)), hex(under), Math.round(parseFloat(cs.fontSize) * 100) / 100,
              parseInt(cs.fontWeight)]);
  }
  return out;
}"""


def _chromium_runs(browser, html: str, view: View) -> list[tuple[str, str, str, float, int]]:
    context = browser.new_context(viewport={"width": view.width, "height": 900}, color_scheme=view.scheme)
    try:
        page = context.new_page()
        page.route("**/*", lambda route: route.abort())  # images are not needed for colours
        page.set_content(html, wait_until="domcontentloaded")
        return [(t, fg, bg, size, weight) for t, fg, bg, size, weight in page.evaluate(READ_RUNS, view.outlook)]
    finally:
        context.close()


@pytest.mark.parametrize("source", [*EXAMPLES, "crafted"], ids=lambda p: getattr(p, "stem", p))
def test_chromium_computes_the_same_colours(browser, source):
    html = CRAFTED if source == "crafted" else render_issue(source).html
    document = Document(html)
    for view in document.views():
        ours = [(r.text, hex_colour(r.color), hex_colour(r.background), round(r.size, 2), r.weight)
                for r in document.text_runs(view)]
        assert ours, view
        assert ours == _chromium_runs(browser, html, view), view
