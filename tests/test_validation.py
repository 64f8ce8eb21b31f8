"""Issue-file validation (design §3): every problem, with its exact place, reported at once.

Each test writes a real issue file into a temporary issues/ folder and loads it
with the public `components.load_issue`; where the place matters the exact
`line:col` is asserted, because authors jump straight to it.
"""
from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import components
from components import IssueInvalid, Problem, load_issue, render_issue

PROBLEM_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?:(?P<path>[^:]+): )?(?P<message>.+)$")


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    exc = info.value
    assert exc.problems, "IssueInvalid must carry at least one problem"
    assert all(isinstance(p, Problem) for p in exc.problems)
    return exc.problems


def only_problem(path: Path) -> Problem:
    problems = problems_of(path)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def col_of(line: str, needle: str) -> int:
    """1-based column where `needle` starts in `line`."""
    return line.index(needle) + 1


def where(p: Problem) -> tuple[int, int, str]:
    return (p.line, p.col, p.path)


# --- the shape of a problem -------------------------------------------------------------------------


def test_problem_str_is_file_line_col_path_message() -> None:
    p = Problem("issues/2020-12.yaml", 42, 7, "blocks[3].section.blocks[1].image", "alt is required")
    assert str(p) == "issues/2020-12.yaml:42:7: blocks[3].section.blocks[1].image: alt is required"
    # A problem with no path (a whole-file problem) has no empty `: :` in it.
    assert str(Problem("a.yaml", 1, 1, "", "the file is empty")) == "a.yaml:1:1: the file is empty"


def test_missing_required_field_deep_in_a_section_has_the_design_shape(write_issue) -> None:
    path = write_issue(
        "subject: Hello\n"                               # 1
        "blocks:\n"                                      # 2
        "  - masthead: Title\n"                          # 3
        "  - text: Welcome\n"                            # 4
        "  - section:\n"                                 # 5
        "      title: One\n"                             # 6
        "      blocks:\n"                                # 7
        "        - image: {src: images/pic.png}\n"       # 8  (col 11 is the `image` key)
    )
    p = only_problem(path)
    assert (p.file, p.line, p.col, p.path, p.message) == (
        str(path), 8, 11, "blocks[2].section.blocks[0].image", "alt is required")
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    assert str(info.value) == f"{path}:8:11: blocks[2].section.blocks[0].image: alt is required"


# --- the file as a whole ----------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line_and_column(write_issue) -> None:
    path = write_issue("subject: [unclosed\nblocks: []\n")
    p = only_problem(path)
    assert (p.line, p.col) == (2, 7)
    assert p.message.startswith("YAML syntax error:")
    assert p.path == ""


def test_tab_indentation_is_explained(write_issue) -> None:
    path = write_issue("subject: x\nblocks:\n  - text: hi\n\t- text: ho\n")
    p = only_problem(path)
    assert (p.line, p.col) == (4, 1)
    assert "tab" in p.message.lower()
    assert "spaces" in p.message


def test_empty_file(write_issue) -> None:
    p = only_problem(write_issue(""))
    assert (p.line, p.col, p.path) == (1, 1, "")
    assert "empty" in p.message


def test_comment_only_file_is_empty_too(write_issue) -> None:
    p = only_problem(write_issue("# nothing here yet\n\n"))
    assert "empty" in p.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(write_issue, text: str) -> None:
    p = only_problem(write_issue(text))
    assert (p.line, p.col) == (1, 1)
    assert "top level must be a mapping" in p.message


def test_missing_subject(write_issue) -> None:
    p = only_problem(write_issue("preheader: p\nblocks:\n  - text: hi\n"))
    assert p.message == "subject is required"


def test_unknown_top_level_key_is_placed_on_the_key_and_lists_known_keys(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nsubjct: typo\nblocks:\n  - text: hi\n"))
    assert (p.line, p.col) == (2, 1)
    assert "unknown key 'subjct'" in p.message
    for known in ("subject", "preheader", "date", "theme", "blocks"):
        assert known in p.message


def test_empty_block_list_is_refused(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nblocks: []\n"))
    assert (p.line, p.col, p.path) == (2, 9, "blocks")


def test_unknown_theme_lists_the_known_ones(write_issue) -> None:
    p = only_problem(write_issue("subject: s\ntheme: nope\nblocks:\n  - text: hi\n"))
    assert (p.line, p.col, p.path) == (2, 8, "theme")
    assert "nope" in p.message and "default" in p.message


# --- blocks -----------------------------------------------------------------------------------------


def test_unknown_block_type_lists_every_known_component(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nblocks:\n  - text: hi\n  - txt: typo\n"))
    assert (p.line, p.col, p.path) == (4, 5, "blocks[1]")
    assert "unknown block type 'txt'" in p.message
    for name in components.components():
        assert name in p.message
    assert "text" in p.message and "gallery" in p.message


@pytest.mark.parametrize("block", [
    "- text: hi\n    heading: ho",     # two keys
    "- {}",                             # no key
    "- just a string",                  # not a mapping
    "- [text, hi]",                     # a list
])
def test_a_block_is_a_one_key_mapping(write_issue, block: str) -> None:
    p = only_problem(write_issue(f"subject: s\nblocks:\n  {block}\n"))
    assert (p.line, p.path) == (3, "blocks[0]")
    assert "one key" in p.message


@pytest.mark.parametrize("block, path, col, message", [
    ("stats: 7", "blocks[0].stats", 12, "expected a mapping of fields, got a number"),
    ("heading: [1, 2]", "blocks[0].heading", 14, "expected a mapping of fields, got a list"),
    ("gallery: {images: 5}", "blocks[0].gallery.images", 23, "valid list"),
    ("stats: {items: 3}", "blocks[0].stats.items", 20, "valid list"),
    ("contact: {name: n, social: 5}", "blocks[0].contact.social", 32, "valid list"),
    ("heading: {text: [1, 2]}", "blocks[0].heading.text", 21, "valid string"),
    ("image: {src: images/pic.png, alt: a, width: wide}", "blocks[0].image.width", 49, "valid integer"),
])
def test_mistyped_fields(write_issue, block: str, path: str, col: int, message: str) -> None:
    p = only_problem(write_issue(f"subject: s\nblocks:\n  - {block}\n"))
    assert (p.line, p.col, p.path) == (3, col, path)
    assert message in p.message


def test_a_number_where_text_is_needed(write_issue) -> None:
    p = only_problem(write_issue("subject: 2020\nblocks:\n  - text: hi\n"))
    assert (p.line, p.col, p.path) == (1, 10, "subject")


def test_unknown_key_in_a_block_is_placed_on_the_key_and_lists_known_keys(write_issue) -> None:
    line = "  - button: {label: Go, url: 'https://example.org/', colour: red}"
    p = only_problem(write_issue(f"subject: s\nblocks:\n{line}\n"))
    assert (p.line, p.col, p.path) == (3, col_of(line, "colour"), "blocks[0].button")
    assert p.message == "unknown key 'colour' (known: label, url)"


def test_unknown_key_in_a_nested_model_lists_that_models_keys(write_issue) -> None:
    p = only_problem(write_issue(
        "subject: s\nblocks:\n  - contact:\n      name: N\n      social:\n"
        "        - {network: twitter, handle: h, colour: blue}\n"))
    assert p.line == 6
    assert "unknown key 'colour'" in p.message
    assert "network" in p.message and "handle" in p.message


def test_nested_sections_are_refused(write_issue) -> None:
    p = only_problem(write_issue(
        "subject: s\nblocks:\n  - section:\n      title: A\n      blocks:\n"
        "        - section: {title: B, blocks: [text: b]}\n"))
    assert (p.line, p.path) == (6, "blocks[0].section.blocks[0].section")
    assert "nested" in p.message


# --- links and images -------------------------------------------------------------------------------

BAD_URLS = ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,hi", "ftp://example.org/f",
            "/relative/page", "page.html", "vbscript:msgbox(1)"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_unsafe_or_relative_links_are_refused_everywhere(write_issue, url: str) -> None:
    problems = problems_of(write_issue(
        "subject: s\nblocks:\n"
        f"  - button: {{label: Go, url: '{url}'}}\n"
        f"  - contact: {{name: N, website: '{url}'}}\n"
        f"  - image: {{src: images/pic.png, alt: a, href: '{url}'}}\n"))
    assert [(p.line, p.col, p.path) for p in problems] == [
        (3, 30, "blocks[0].button.url"),
        (4, 33, "blocks[1].contact.website"),
        (5, 48, "blocks[2].image.href"),
    ]
    for p in problems:
        assert "http(s) or mailto" in p.message


@pytest.mark.parametrize("url", ["https://example.org/x", "http://example.org/", "mailto:a@example.org",
                                 "https://example.org/?e={{ email }}"])
def test_safe_links_are_accepted(write_issue, url: str) -> None:
    issue = load_issue(write_issue(
        f"subject: s\nblocks:\n  - button: {{label: Go, url: '{url}'}}\n"
        f"  - contact: {{name: N, website: '{url}'}}\n"))
    assert issue.blocks[0].fields.url == url  # type: ignore[attr-defined]


def test_link_without_host_is_refused(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nblocks:\n  - button: {label: Go, url: 'https:///nohost'}\n"))
    assert p.path == "blocks[0].button.url"
    assert "host" in p.message


def test_image_src_must_be_relative_or_https(write_issue) -> None:
    problems = problems_of(write_issue(
        "subject: s\nblocks:\n"
        "  - image: {src: 'javascript:alert(1)', alt: a}\n"
        "  - image: {src: /etc/passwd, alt: a}\n"
        "  - image: {src: 'http://example.org/a.png', alt: a}\n"
        "  - image: {src: 'data:image/png;base64,AAAA', alt: a}\n"))
    assert [(p.line, p.col, p.path) for p in problems] == [
        (3, 18, "blocks[0].image.src"), (4, 18, "blocks[1].image.src"),
        (5, 18, "blocks[2].image.src"), (6, 18, "blocks[3].image.src")]
    assert "javascript:" in problems[0].message
    assert "absolute" in problems[1].message
    assert "http:" in problems[2].message
    assert "data:" in problems[3].message


def test_missing_local_image_names_the_file(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nblocks:\n  - text: hi\n  - image: {src: images/nope.png, alt: a}\n"))
    assert (p.line, p.col, p.path) == (4, 5, "blocks[1].image")
    assert "images/nope.png" in p.message
    assert "not found" in p.message


def test_missing_image_in_a_gallery_names_its_place(write_issue) -> None:
    p = only_problem(write_issue(
        "subject: s\nblocks:\n"
        "  - gallery: [{src: images/pic.png, alt: a}, {src: images/gone.png, alt: b}]\n"))
    assert p.line == 3
    assert p.path == "blocks[0].gallery.images[1]"
    assert "images/gone.png" in p.message


@pytest.mark.parametrize("src", ["../../etc/passwd", "../../../../../../../../etc/passwd",
                                 "images/../../../etc/hostname"])
def test_image_path_escaping_the_issue_folder_is_refused(write_issue, src: str) -> None:
    p = only_problem(write_issue(f"subject: s\nblocks:\n  - image: {{src: '{src}', alt: a}}\n"))
    assert p.path == "blocks[0].image"
    assert "outside" in p.message


def test_local_image_is_found_in_the_issue_folder(write_issue, issue_dir: Path) -> None:
    issue = load_issue(write_issue("subject: s\nblocks:\n  - image: {src: images/pic.png, alt: A picture}\n"))
    assert issue.assets == {"images/pic.png": (issue_dir / "t" / "images" / "pic.png").resolve()}


# --- what is not a YAML text at all -----------------------------------------------------------------


def test_binary_garbage_is_one_clear_problem(issue_dir: Path) -> None:
    path = issue_dir / "t.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe" * 20)
    p = only_problem(path)
    assert (p.file, p.line, p.col) == (str(path), 1, 1)
    assert "binary" in p.message


def test_invalid_utf8_is_one_clear_problem_on_its_line(issue_dir: Path) -> None:
    path = issue_dir / "t.yaml"
    path.write_bytes(b"subject: s\nblocks:\n  - text: caf\xe9 \xff\n")
    p = only_problem(path)
    assert (p.line, p.col) == (3, 1)
    assert "UTF-8" in p.message


def test_utf8_byte_order_mark_is_accepted(issue_dir: Path) -> None:
    path = issue_dir / "t.yaml"
    path.write_bytes("\ufeffsubject: Café\nblocks:\n  - text: hi\n".encode("utf-8"))
    assert load_issue(path).fields.subject == "Café"


def test_missing_file_is_a_problem_not_an_oserror(issue_dir: Path) -> None:
    p = only_problem(issue_dir / "absent.yaml")
    assert "cannot read" in p.message


@pytest.mark.parametrize("escape", ["\\e", "\\v", "\\x00", "\\uFFFE"])
def test_control_characters_are_refused_with_their_place_or_rendered(write_issue, escape: str) -> None:
    # YAML escapes (`"\e"`, `"\v"`, ...) put C0 control characters and U+FFFE into
    # strings. MJML cannot parse them, so validation must refuse them with their
    # place (or rendering must drop them): never a RenderError, which is
    # documented as a bug in a component, not in the issue.
    issue_path = write_issue(
        "subject: s\nblocks:\n"
        f'  - heading: "a{escape}b"\n'
        f'  - button: {{label: "c{escape}d", url: "https://example.org/"}}\n'
        f'  - image: {{src: images/pic.png, alt: "e{escape}f"}}\n')
    try:
        issue = load_issue(issue_path)
    except IssueInvalid as exc:
        assert [(p.line, p.path.split(".")[0:2]) for p in exc.problems] == [
            (3, ["blocks[0]", "heading"]), (4, ["blocks[1]", "button"]), (5, ["blocks[2]", "image"])]
        return
    rendered = render_issue(issue)  # must not raise RenderError
    for pair in ("a", "b"), ("c", "d"):
        pattern = r"%s\s?%s" % pair  # the character dropped (or made a space), the text kept
        assert re.search(pattern, rendered.html) and re.search(pattern, rendered.text)


# --- merge fields -----------------------------------------------------------------------------------


def test_malformed_merge_field_in_text(write_issue) -> None:
    p = only_problem(write_issue("subject: s\nblocks:\n  - text: 'Hi {{ first name }}'\n"))
    assert (p.line, p.col, p.path) == (3, 15, "blocks[0].text")  # at the `{{`, inside the value
    assert "{{ first name }}" in p.message
    assert "not a merge field" in p.message


@pytest.mark.parametrize("key", ["subject", "preheader"])
def test_malformed_merge_field_in_envelope(write_issue, key: str) -> None:
    text = f"{key}: 'Hi {{{{ first_name | upper }}}}'\n"
    if key != "subject":
        text = "subject: s\n" + text
    p = only_problem(write_issue(text + "blocks:\n  - text: hi\n"))
    assert p.path == key
    assert "not a merge field" in p.message


# --- all at once ------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_line(write_issue) -> None:
    path = write_issue(
        "subject: 'Hi {{ first name }}'\n"                                                     # 1
        "blocks:\n"                                                                            # 2
        "  - txt: hello\n"                                                                     # 3
        "  - image: {src: images/pic.png}\n"                                                   # 4
        "  - button: {label: Go, url: 'javascript:alert(1)'}\n"                                # 5
        "  - heading: {text: x, size: 2}\n"                                                    # 6
        "  - stats: 7\n"                                                                       # 7
        "  - gallery: [{src: images/missing.png, alt: a}, {src: images/pic.png, alt: b}]\n"    # 8
        "extra: true\n"                                                                        # 9
    )
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    problems = info.value.problems
    assert [p.line for p in problems] == [1, 3, 4, 5, 6, 7, 8, 9]
    assert [p.path for p in problems] == [
        "subject", "blocks[0]", "blocks[1].image", "blocks[2].button.url",
        "blocks[3].heading", "blocks[4].stats", "blocks[5].gallery.images[0]", ""]
    # The message is each problem in the same order, in the design's shape, a hint on the line below.
    assert str(info.value) == "\n".join(str(p) for p in problems)
    assert problems[1].hint == "did you mean 'text'?"
    for p in problems:
        m = PROBLEM_LINE.match(str(p).split("\n")[0])
        assert m, str(p)
        assert (m["file"], int(m["line"]), int(m["col"])) == (str(path), p.line, p.col)


def test_problems_on_one_line_are_sorted_by_column(write_issue) -> None:
    problems = problems_of(write_issue(
        "subject: s\nblocks:\n  - image: {src: 'ftp://x/a.png', alt: a, href: 'javascript:x', width: big}\n"))
    assert [p.line for p in problems] == [3, 3, 3]
    cols = [p.col for p in problems]
    assert cols == sorted(cols) and len(set(cols)) == 3


# --- a valid issue ----------------------------------------------------------------------------------


def test_valid_minimal_issue_loads(write_issue, issue_dir: Path) -> None:
    # The issue's own image folder is named after its slug.
    shutil.copytree(issue_dir / "t", issue_dir / "2021-03")
    issue = load_issue(write_issue(
        "subject: Hello\n"
        "blocks:\n"
        "  - masthead: Title\n"
        "  - contents: {}\n"
        "  - section:\n"
        "      title: One\n"
        "      blocks:\n"
        "        - text: First\n"
        "  - text: Between\n"
        "  - section:\n"
        "      title: Two\n"
        "      blocks:\n"
        "        - image: {src: images/pic.png, alt: A picture}\n"
        "        - divider:\n"
    , name="2021-03.yaml"))
    assert issue.slug == "2021-03"
    assert issue.fields.subject == "Hello"
    assert [b.name for b in issue.blocks] == ["masthead", "contents", "section", "text", "section"]
    assert [b.number for b in issue.blocks] == [None, None, 1, None, 2]
    assert [s.fields.title for s in issue.sections] == ["One", "Two"]  # type: ignore[attr-defined]
    assert [b.anchor for b in issue.sections] == ["section-1", "section-2"]
    assert [b.name for b in issue.walk()] == [
        "masthead", "contents", "section", "text", "text", "section", "image", "divider"]
    assert [b.path for b in issue.blocks[4].children] == [
        "blocks[4].section.blocks[0].image", "blocks[4].section.blocks[1].divider"]
    assert [b.line for b in issue.walk()] == [3, 4, 5, 8, 9, 10, 13, 14]


def test_the_reference_issue_is_valid() -> None:
    from tests.conftest import REFERENCE
    issue = load_issue(REFERENCE)
    assert issue.slug == "2020-12"
    assert [s.number for s in issue.sections] == list(range(1, len(issue.sections) + 1))
    assert len(issue.sections) >= 5


# --- sanitising and escaping through render_issue ---------------------------------------------------


class _Attrs(HTMLParser):
    """Every tag and attribute of a document, to judge what a browser would run."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def parsed(html: str) -> _Attrs:
    parser = _Attrs()
    parser.feed(html)
    parser.close()
    return parser


RAW_HTML = (
    "subject: s\nblocks:\n  - text: |\n"
    "      Hello <script>alert(1)</script> there.\n\n"
    "      <img src=x onerror=alert(1)>\n\n"
    "      Click <a href=\"javascript:alert(1)\">here</a> or <a href=\"JaVaScRiPt:alert(2)\">there</a>.\n\n"
    "      <SCRIPT src=\"https://evil.example/x.js\"></SCRIPT><div onclick=\"alert(3)\">box</div>\n")


def test_raw_html_in_text_is_sanitised(write_issue) -> None:
    # The javascript: links are errors naming each (design §3); without them the rest is sanitised.
    problems = problems_of(write_issue(RAW_HTML))
    assert [(p.line, p.col, p.rule) for p in problems] == [(8, 22, "link"), (8, 64, "link")]
    assert 'link <a href="JaVaScRiPt:alert(2)"> uses javascript:' in problems[1].message
    rendered = render_issue(write_issue(RAW_HTML.replace("javascript:", "https://ok.example/").replace(
        "JaVaScRiPt:", "https://ok.example/")))
    for html in (rendered.html, rendered.web_html):
        low = html.lower()
        assert "<script" not in low
        assert "onerror" not in low and "onclick" not in low
        assert "javascript:" not in low
        assert "evil.example" not in low
        doc = parsed(html)
        assert "script" not in doc.tags
        assert not [a for a in doc.attrs if a[1].startswith("on")]
        assert "Hello" in html and "here" in html and "box" in html


def test_javascript_markdown_link_never_becomes_a_link(write_issue) -> None:
    source = "See [x](javascript:alert(1)) and [y](https://example.org/ok)"
    p = only_problem(write_issue(f"subject: s\nblocks:\n  - text: '{source}'\n"))
    assert (p.line, p.col, p.path, p.rule) == (3, 20, "blocks[0].text", "link")
    assert p.message.startswith("link [x](javascript:alert(1)) uses javascript:")
    # Were one to reach the renderer, its Markdown drops it all the same.
    from components.markdown import to_html
    for html in (to_html(source),):
        doc = parsed(html)
        hrefs = [v for tag, k, v in doc.attrs if k in ("href", "src")]
        assert "https://example.org/ok" in hrefs
        assert not [h for h in hrefs if "javascript" in h.lower().replace(" ", "")]
        assert not re.search(r"(?i)(href|src)\s*=\s*[\"']?\s*javascript:", html)


@pytest.mark.parametrize("block", [
    "heading: '<b>bold</b> & \"q\"'",
    "callout: '<b>bold</b> & \"q\"'",
    "quote: {text: '<b>bold</b> & \"q\"', cite: Someone}",
    "quote: {text: Words, cite: '<b>bold</b> & \"q\"'}",
    "image: {src: images/pic.png, alt: A picture, caption: '<b>bold</b> & \"q\"'}",
    "section: {title: '<b>bold</b> & \"q\"', blocks: [text: hi]}",
    "masthead: {title: '<b>bold</b> & \"q\"'}",
    "button: {label: '<b>bold</b> & \"q\"', url: 'https://example.org/'}",
])
def test_plain_text_fields_are_escaped_not_interpreted(write_issue, block: str) -> None:
    rendered = render_issue(write_issue(f"subject: s\nblocks:\n  - {block}\n"))
    for html in (rendered.html, rendered.web_html):
        assert "&lt;b&gt;bold&lt;/b&gt; &amp;" in html
        assert "<b>bold</b>" not in html
        assert "b" not in parsed(html).tags


def test_alt_text_is_escaped_inside_the_attribute(write_issue) -> None:
    rendered = render_issue(write_issue(
        "subject: s\nblocks:\n  - image: {src: images/pic.png, alt: '\" onerror=\"alert(1)'}\n"))
    for html in (rendered.html, rendered.web_html):
        doc = parsed(html)
        assert ("img", "alt", '" onerror="alert(1)') in doc.attrs
        assert not [a for a in doc.attrs if a[1] == "onerror"]


def test_an_impossible_date_is_reported_at_its_line(write_issue) -> None:
    path = write_issue("subject: Hi\ndate: 2020-13-45\nblocks:\n  - text: hi\n")
    problem = only_problem(path)
    assert (problem.line, problem.col) == (2, 7)
    assert "2020-13-45" in problem.message and "month" in problem.message


def test_a_file_that_is_not_an_image_is_refused_as_src(write_issue, issue_dir) -> None:
    (issue_dir / "notes.txt").write_text("secret notes")
    path = write_issue("subject: Hi\nblocks:\n"
                       "  - image: {src: ../notes.txt, alt: x}\n  - image: {src: ../t.yaml, alt: y}\n")
    problems = problems_of(path)
    assert [p.line for p in problems] == [3, 4]
    assert all("is not an image" in p.message for p in problems)


# --- the reader: keys given twice, anchors, places ---------------------------------------------------


def test_a_problem_in_the_first_of_two_values_is_placed_on_the_first(write_issue) -> None:
    # The first value is kept (the one a reviewer reads first); the second is read
    # without touching the places recorded for the first.
    path = write_issue("subject: Hi\n"
                       "blocks:\n"
                       "  - button:\n"
                       "      label: Go\n"
                       "      url: javascript:alert(1)\n"
                       "      url: https://ok.example/\n")
    assert [str(p) for p in problems_of(path)] == [
        f"{path}:5:12: blocks[0].button.url: link must be an http(s) or mailto: URL, not javascript: "
        "('javascript:alert(1)')",
        f"{path}:6:7: blocks[0].button.url: given twice, at lines 5 and 6",
    ]


def test_places_count_characters_not_bytes(write_issue) -> None:
    path = write_issue("subject: Hi\nblocks:\n  - button: {label: \"é€😀\", label: x, url: 'https://a.example/'}\n")
    (problem,) = problems_of(path)
    assert where(problem) == (3, 28, "blocks[0].button.label")  # 34 if the three characters counted bytes
    assert problem.message == "given twice, on line 3 (columns 14 and 28)"


def test_the_reader_lists_at_most_its_cap_of_problems(write_issue) -> None:
    from components.source import MAX_PROBLEMS
    path = write_issue("subject: Hi\nblocks:\n  - text: &t hi\n" + "  - text: *t\n" * (MAX_PROBLEMS + 50))
    problems = problems_of(path)
    reader = [p for p in problems if "anchors and aliases" in p.message]
    assert len(reader) == MAX_PROBLEMS
    assert problems[-1].message == f"more than {MAX_PROBLEMS} problems; fix these first"


@pytest.mark.parametrize("value", ["=", "<<", "'!!str'", "!!str 12"])
def test_plain_values_yaml_gives_a_meaning_to_are_text(write_issue, value: str) -> None:
    # `=` and `<<` are YAML 1.1's value and merge keys; PyYAML cannot construct either as a value.
    issue = load_issue(write_issue(f"subject: {value}\nblocks:\n  - text: hi\n"))
    assert issue.fields.subject == value.replace("!!str ", "").strip("'")
