"""Authoring (issue 14): errors that point at the mistake, links that work, warnings for text left in.

A running club's issue written from scratch, as a new user would, with the mistakes issue 14 lists.
Each message is checked through the library (`components.read_issue`, `newsletter.check.check_file`)
and through the real `newsletter` command in a process of its own (`check`, `check --json`, `build`,
`preview --screenshots`), with its exact line and column: authors jump straight to them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import components
from components import Footer, read_issue, render_issue
from components.lint import SCAFFOLD_TEXT, SUBJECT_MAX, check_issue
from components.validate import link_problems, markdown_fields, merge_problems
from newsletter.check import check_file
from newsletter.config import load_settings
from newsletter.scaffold import SKELETON, issue_date
from tests.conftest import ISSUES, REFERENCE

NEWSLETTER = Path(sys.executable).parent / "newsletter"
PIC = ISSUES / "2020-12" / "images" / "mias-story.png"
FOOTER = Footer("Riverside Runners", "12 Mill Lane, Preston PR1 8XX", "You joined the club's mailing list.")

# The issue of issue 14, with every mistake it lists; the comment is each line's number.
CLUB = """\
subject: "Riverside Runners: May news"
preheader: "Results, kit and the summer 10K"
date: 2024-05-01
blocks:
  - masthead: {title: "Riverside Runners", subtitle: "May 2024"}
  - text: |
      Hi {{ first_name | default("there") },

      Results are [on the club website](www.example.org/results).
      Questions? Ask [Sam](sam@example.org) or [x](javascript:alert(1)).
  - image: {src: images/missing.png, alt: "The start line"}
  - text: "See you at the track, {{ firstname }}! [Click here](https://example.org/track)"
"""
EXPECTED = [  # (line, col, rule, start of the message, hint)
    (7, 10, "merge-field", '{{ first_name | default("there") } is missing its closing brace',
     'write {{ first_name | default("there") }}'),
    (9, 41, "link", "link [on the club website](www.example.org/results) has no scheme",
     "write [on the club website](https://www.example.org/results)"),
    (10, 28, "link", "link [Sam](sam@example.org) has no scheme", "write [Sam](mailto:sam@example.org)"),
    (10, 52, "link", "link [x](javascript:alert(1)) uses javascript:", ""),
    (11, 5, "invalid", "image file not found: images/missing.png", ""),
]


@pytest.fixture
def club(tmp_path: Path) -> Path:
    folder = tmp_path / "issues"
    (folder / "club" / "images").mkdir(parents=True)
    shutil.copy(PIC, folder / "club" / "images" / "pic.png")
    path = folder / "club.yaml"
    path.write_text(CLUB, "utf-8")
    return path


def newsletter(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([str(NEWSLETTER), *map(str, args)], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(None, environ=env)


def write(folder: Path, text: str, name: str = "t.yaml") -> Path:
    (folder / "issues" / Path(name).stem / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(PIC, folder / "issues" / Path(name).stem / "images" / "pic.png")
    path = folder / "issues" / name
    path.write_text(text, "utf-8")
    return path


# --- one pass: every problem of the file, at its line and column --------------------------------------


def test_the_library_reports_every_problem_of_the_club_issue_at_once(club: Path) -> None:
    reading = read_issue(club)
    assert [(p.line, p.col, p.rule) for p in reading.problems] == [e[:3] for e in EXPECTED]
    for problem, (_, _, _, message, hint) in zip(reading.problems, EXPECTED, strict=True):
        assert problem.message.startswith(message), problem
        assert problem.hint == hint
    assert {p.path for p in reading.problems} == {"blocks[1].text", "blocks[2].image"}
    # What validated is there to lint: the masthead, the image (its file missing), the last text.
    assert reading.issue is not None
    assert [b.path for b in reading.issue.blocks] == ["blocks[0].masthead", "blocks[2].image", "blocks[3].text"]
    assert reading.left_out == {"blocks"}


def test_check_lints_what_validated_in_the_same_run(club: Path) -> None:
    findings = check_file(club, settings())
    errors = [(f.line, f.col, f.rule) for f in findings if f.level == "error"]
    # The validation problems, and what only lint finds, from one run: the unknown merge field and the
    # vague link text of the last block.
    assert errors[:5] == [e[:3] for e in EXPECTED]
    assert (12, 5, "merge-field") in errors and (12, 5, "a11y-link-text") in errors
    # Not the old misdirection: the masthead is there; a block left out is not a skipped heading level.
    assert "a11y-headings" not in {f.rule for f in findings}


def test_check_prints_file_line_col_and_the_hint_below(club: Path, tmp_path: Path) -> None:
    done = newsletter("check", "issues/club.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    for line, col, _, message, hint in EXPECTED:
        at = next(i for i, text in enumerate(lines) if text.startswith(f"  issues/club.yaml:{line}:{col}: "))
        assert message in lines[at]
        if hint:
            assert lines[at + 1] == f"      hint: {hint}"
    assert re.search(r"issues/club\.yaml:12:5: blocks\[3\]\.text: unknown merge field \{\{ firstname \}\}",
                     done.stderr)
    assert "checked: 7 error(s)" in done.stderr


def test_check_json_keeps_the_contracts_keys_with_the_hint_in_the_message(club: Path, tmp_path: Path) -> None:
    done = newsletter("check", "--json", "issues/club.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    findings = json.loads(done.stdout)
    assert all(set(f) == {"level", "rule", "message", "file", "line", "clients"} for f in findings)
    errors = [f for f in findings if f["level"] == "error"]
    assert [(f["line"], f["rule"]) for f in errors][:5] == [(e[0], e[2]) for e in EXPECTED]
    assert errors[1]["message"] == ("blocks[1].text: link [on the club website](www.example.org/results) has no "
                                    "scheme: an email's links must start with https://, http:// or mailto:; "
                                    "write [on the club website](https://www.example.org/results)")


def test_build_refuses_the_issue_and_writes_nothing(club: Path, tmp_path: Path) -> None:
    done = newsletter("build", "issues/club.yaml", "--out", "dist", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert 'issues/club.yaml:7:10: blocks[1].text: {{ first_name | default("there") } is missing' in done.stderr
    assert "issues/club.yaml:9:41: blocks[1].text: link [on the club website]" in done.stderr
    assert not (tmp_path / "dist").exists()


def test_preview_screenshots_refuse_the_issue_without_a_traceback(club: Path, tmp_path: Path) -> None:
    done = newsletter("preview", "issues/club.yaml", "--screenshots", "shots", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert 'issues/club.yaml:7:10: blocks[1].text: {{ first_name | default("there") } is missing' in done.stderr
    assert not (tmp_path / "shots").exists()


# --- merge fields that do not parse ---------------------------------------------------------------------


@pytest.mark.parametrize("text, offset, message, hint", [
    ('Hi {{ first_name | default("there") },', 3, 'is missing its closing brace',
     'write {{ first_name | default("there") }}'),
    ("Hi { email }}, hello", 3, "{ email }} is missing its opening brace", "write {{ email }}"),
    ("Hi {{ first_name, welcome", 3, "{{ first_name is not closed", "end it with }}: {{ first_name }}"),
    ("Hi {{ email, see {{ web_url }}", 3, "{{ email, see is not closed before the next {{",
     "close it with }}, or write &#123;&#123; for braces meant as text"),
    ("Sum: {{ 7*7 }}", 5, "{{ 7*7 }} is not a merge field", ""),
])
def test_merge_field_mistakes_are_named_at_their_brace(text: str, offset: int, message: str, hint: str) -> None:
    ((at, said, told),) = merge_problems(text)
    assert (at, told) == (offset, hint) and message in said


@pytest.mark.parametrize("text", [
    '{{ first_name | default("friend") }}, {{ email }} and {{ fields.team }}', "Open {{ brace and {% raw %}",
    "{ { email } }", "a {b} c", "&#123;&#123; email &#125;&#125;", "${email} *|FNAME|*",
])
def test_text_that_only_looks_like_a_merge_field_is_fine(text: str) -> None:
    assert merge_problems(text) == []


def test_a_merge_field_one_brace_short_in_the_subject_is_at_its_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'subject: "Hi {{ first_name }, news"\nblocks:\n  - masthead: {title: News}\n')
    (problem,) = read_issue(path).problems
    assert (problem.line, problem.col, problem.path, problem.rule) == (1, 14, "subject", "merge-field")


# --- links ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("markdown, fine", [
    ("[a](https://example.org/) [b](http://example.org/) [c](mailto:sam@example.org) <https://x.example/>", True),
    ("<sam@example.org>", True),  # an autolink: mailto: is added
    ("[Unsubscribe]({{ unsubscribe_url }})", True),
    ("[p](https://example.org/p?n={{ name }})", True),
    ("[x]({{ name }})", True),  # the renderer refuses it, saying why (test_hostile_merge)
    ("[site](www.example.org)", False), ("[Sam](sam@example.org)", False), ("[x](javascript:alert(1))", False),
    ("[x](JaVaScRiPt:alert(1))", False), ("[f](ftp://example.org/f)", False), ("[t](tel:+441234)", False),
    ("[r](results.html)", False), ("[a](#section-2)", False), ("[h](https:/example.org)", False),
    ('<a href="www.example.org">x</a>', False), ("| a | b |\n|---|---|\n| [l](example.org) | 2 |", False),
])
def test_markdown_links_must_be_https_http_or_mailto(markdown: str, fine: bool) -> None:
    assert (link_problems(markdown) == []) is fine, link_problems(markdown)


def test_a_link_problem_names_the_link_and_mends_it() -> None:
    ((at, message, hint),) = link_problems("Results are [on the club website](www.example.org/results).")
    assert at == 34
    assert message.startswith("link [on the club website](www.example.org/results) has no scheme")
    assert hint == "write [on the club website](https://www.example.org/results)"
    ((_, message, hint),) = link_problems("See [the results](results.html)")
    assert "has no scheme" in message and "full https:// address" in hint
    ((_, message, hint),) = link_problems('Or <a href="ftp://example.org/f">this</a>')
    assert message.startswith('link <a href="ftp://example.org/f"> uses ftp:') and hint == ""


def test_links_are_checked_only_where_markdown_is_rendered() -> None:
    known = components.components()
    assert markdown_fields(known["text"]) == {"text"}
    assert "text" not in markdown_fields(known["quote"])  # a quotation is plain text: shown as written


@pytest.mark.parametrize("source", [
    "  - text: |\n      First line.\n      See [x](www.example.org) now.\n",  # literal
    "  - text: 'First line, then\n      a link: [x](www.example.org)'\n",  # quoted over two lines
    '  - text: "A \\"quoted\\" word, [x](www.example.org)"\n',  # escapes before it
    "  - text: >\n      Folded text\n      with [x](www.example.org)\n",  # folded
    "  - text: Plain text\n      over lines [y](https://ok.example/) [x](www.example.org)\n",  # plain
])
def test_a_link_in_any_style_of_value_is_placed_where_it_is_written(tmp_path: Path, source: str) -> None:
    text = "subject: s\nblocks:\n  - masthead: {title: News}\n" + source
    path = write(tmp_path, text)
    (problem,) = read_issue(path).problems
    line = next(i for i, line in enumerate(text.split("\n"), 1) if "www" in line)
    col = text.split("\n")[line - 1].index("www") + 1
    assert (problem.line, problem.col, problem.rule) == (line, col, "link"), problem


def test_a_url_field_without_a_scheme_gets_the_same_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: s\nblocks:\n  - button: {label: Write to Sam, url: sam@example.org}\n")
    (problem,) = read_issue(path).problems
    assert problem.path == "blocks[0].button.url" and "('sam@example.org')" in problem.message
    assert problem.hint == "an email address takes mailto: write mailto:sam@example.org"


def test_http_links_in_markdown_are_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: s\npreheader: p\nblocks:\n  - masthead: {title: News}\n"
                           "  - text: 'The [old site](http://example.org/old) still works'\n")
    findings = check_file(path, settings())
    assert [f.level for f in findings if f.rule == "insecure-link"] == ["warning"]
    assert not [f for f in findings if f.level == "error"]


# --- YAML and schema hints ----------------------------------------------------------------------------------


def test_a_colon_in_a_plain_value_says_to_quote_it(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: s\nblocks:\n  - heading: Race report: Preston 10K\n")
    (problem,) = read_issue(path).problems
    assert (problem.line, problem.col) == (3, 25)
    assert "mapping values are not allowed" in problem.message
    assert problem.hint == 'a value holding ": " must be quoted: - heading: "Race report: Preston 10K"'
    done = newsletter("check", "issues/t.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert 'hint: a value holding ": " must be quoted: - heading: "Race report: Preston 10K"' in done.stderr
    flow = write(tmp_path, "subject: s\nblocks:\n  - masthead: {title: Race: 10K}\n", "f.yaml")
    assert "quote a value" in read_issue(flow).problems[0].hint


def test_an_unknown_block_or_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: s\nblocks:\n  - content: {title: Contents}\n  - masthead: {titel: News}\n")
    problems = read_issue(path).problems
    assert [(p.line, p.col, p.hint) for p in problems if p.hint] == [
        (3, 5, "did you mean 'contents'?"), (4, 16, "did you mean 'title'?")]
    done = newsletter("check", "--json", "issues/t.yaml", cwd=tmp_path)
    assert "unknown block type 'content' (known: " in done.stdout and "did you mean 'contents'?" in done.stdout


@pytest.mark.parametrize("written, message, hint", [
    ("14/05/2024", "'14/05/2024' is not a date in the form YYYY-MM-DD", "write 2024-05-14"),
    ("May 2024", "'May 2024' is not a date in the form YYYY-MM-DD", "write a date as YYYY-MM-DD, e.g. 2024-05-14"),
    ("2024-13-45", "invalid value '2024-13-45'", "write a date as YYYY-MM-DD, e.g. 2024-05-14"),
])
def test_a_date_in_another_form_says_the_form(tmp_path: Path, written: str, message: str, hint: str) -> None:
    path = write(tmp_path, f"subject: s\ndate: {written}\nblocks:\n  - masthead: {{title: News}}\n")
    (problem,) = read_issue(path).problems
    assert (problem.line, problem.col, problem.path) == (2, 7, "date")
    assert problem.message.startswith(message) and problem.hint == hint
    assert "invalid character in year" not in problem.message


def test_build_prints_the_hint_under_the_problem(tmp_path: Path) -> None:
    write(tmp_path, "subject: s\ndate: 14/05/2024\nblocks:\n  - masthead: {title: News}\n")
    done = newsletter("build", "issues/t.yaml", "--out", "dist", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "issues/t.yaml:2:7: date: '14/05/2024' is not a date in the form YYYY-MM-DD\n    hint: write 2024-05-14" \
        in done.stderr
    assert not (tmp_path / "dist").exists()


# --- warnings: what readers see, text left in ---------------------------------------------------------------


def test_subject_length_counts_what_readers_see(tmp_path: Path) -> None:
    field = '{{ first_name | default("friend") }}'
    short = "Riverside Runners, " + field + ": May results, kit news and the summer 10K entries open"
    assert len(short) > 90 and len(components.lint.visible(short)) <= SUBJECT_MAX
    long = short + " and a few more words"
    rules = {}
    for name, subject in (("short", short), ("long", long)):
        path = write(tmp_path, f"subject: '{subject}'\npreheader: p\nblocks:\n  - masthead: {{title: News}}\n",
                     f"{name}.yaml")
        rules[name] = [f for f in check_file(path, settings()) if f.rule == "subject-length"]
    assert rules["short"] == []
    (finding,) = rules["long"]
    assert f"the subject is {len(components.lint.visible(long))} characters (merge fields counted as their " \
           "defaults)" in finding.message
    assert (finding.line, finding.col) == (1, 1)


def test_the_themes_placeholder_footer_is_a_warning_until_configured(tmp_path: Path) -> None:
    write(tmp_path, "subject: s\npreheader: p\nblocks:\n  - masthead: {title: News}\n")
    placeholder = newsletter("check", "--json", "issues/t.yaml", cwd=tmp_path)
    (finding,) = [f for f in json.loads(placeholder.stdout) if f["rule"] == "placeholder-footer"]
    assert finding["level"] == "warning" and "'Example Newsletter'" in finding["message"]
    assert "'1 Example Street, Exampletown EX1 2AB'" in finding["message"]
    configured = newsletter("check", "--json", "issues/t.yaml", cwd=tmp_path, env={
        "NEWSLETTER_ORGANISATION": FOOTER.organisation, "NEWSLETTER_POSTAL_ADDRESS": FOOTER.postal_address})
    assert [f for f in json.loads(configured.stdout) if f["rule"] == "placeholder-footer"] == []
    # A theme with the sender's own details has none either (the reference issue's).
    issue = components.load_issue(REFERENCE)
    assert not [f for f in check_issue(issue, render_issue(issue)) if f.rule == "placeholder-footer"]


def test_an_untouched_scaffold_warns_about_each_example_text(tmp_path: Path) -> None:
    assert newsletter("new", "2024-05", cwd=tmp_path).returncode == 0
    path = tmp_path / "issues" / "2024-05.yaml"
    text = path.read_text("utf-8")
    assert "date: 2024-05-01" in text and 'subtitle: "May 2024"' in text  # from the slug, not today
    done = newsletter("check", "--json", "issues/2024-05.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # warnings: the scaffold builds
    said = [f["message"] for f in json.loads(done.stdout) if f["rule"] == "scaffold-text"]
    for phrase in SCAFFOLD_TEXT:  # every example text the scaffold writes is one the warning knows
        assert phrase in text and any(repr(phrase) in m for m in said), phrase
    for phrase in SCAFFOLD_TEXT:
        text = text.replace(phrase, "Our own words")
    path.write_text(text, "utf-8")
    done = newsletter("check", "--json", "issues/2024-05.yaml", cwd=tmp_path)
    assert [f for f in json.loads(done.stdout) if f["rule"] == "scaffold-text"] == []


def test_scaffold_text_in_step_with_the_warning() -> None:
    for phrase in SCAFFOLD_TEXT:
        assert phrase in SKELETON


@pytest.mark.parametrize("slug, date", [("2024-05", "2024-05-01"), ("2024-05-14", "2024-05-14"),
                                        ("2024-05-spring", "2024-05-01"), ("2024-13", "2000-01-02"),
                                        ("spring-special", "2000-01-02")])
def test_the_scaffold_dates_the_issue_from_its_slug(slug: str, date: str) -> None:
    import datetime as dt
    assert issue_date(slug, today=dt.date(2000, 1, 2)).isoformat() == date


def test_a_warning_for_left_in_text_can_be_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: s\npreheader: p\naccept:\n  - {rule: placeholder-footer, reason: A demo}\n"
                           "blocks:\n  - masthead: {title: News}\n")
    assert not [f for f in check_file(path, settings()) if f.rule == "placeholder-footer"]


# --- check's cost grows with the issue, no faster -------------------------------------------------------


def scaled(folder: Path, times: int) -> Path:
    head, marker, blocks = REFERENCE.read_text("utf-8").partition("\nblocks:\n")
    path = folder / f"ref{times}.yaml"
    path.write_text(head + marker + blocks * times, "utf-8")
    shutil.copytree(REFERENCE.parent / REFERENCE.stem, folder / path.stem)
    return path


def test_check_renders_and_inlines_once_whatever_the_issues_size(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import mjml

    import components.render
    import newsletter.check
    calls = {"render": 0, "inline": 0, "documents": 0}

    def counted(name: str, real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    compile_ = mjml.mjml2html

    def compile_counted(source: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["documents"] += "<mj-head" in source  # the whole email, not a block's own fragment
        return compile_(source, *args, **kwargs)

    monkeypatch.setattr(newsletter.check, "render_issue", counted("render", newsletter.check.render_issue))
    monkeypatch.setattr(components.render, "inline_css", counted("inline", components.render.inline_css))
    monkeypatch.setattr(mjml, "mjml2html", compile_counted)
    seen = {}
    for times in (1, 4, 8):
        calls.update(render=0, inline=0, documents=0)
        findings = check_file(scaled(tmp_path, times), settings())
        seen[times] = dict(calls)
        clip = [f for f in findings if f.rule == "gmail-clip"]
        assert bool(clip) is (times > 1)
        if clip:  # the biggest blocks are still named, from the one extra compile
            assert re.search(r"Biggest blocks: blocks\[\d+\]\.section \(\d+\.\d KB\)", clip[0].message)
    assert seen[1] == {"render": 1, "inline": 1, "documents": 1}
    assert seen[4] == seen[8] == {"render": 1, "inline": 1, "documents": 2}  # + the block sizes, once


# --- `newsletter build` imports what it uses -----------------------------------------------------------------


def test_build_imports_neither_requests_nor_the_checks(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from newsletter.cli import main\n"
        "try:\n"
        f"    main(['build', {str(REFERENCE)!r}, '--out', 'dist'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(m for m in ('urllib3', 'charset_normalizer', 'idna', 'components.lint', 'components.a11y',\n"
        "                         'components.support', 'sqlalchemy', 'boto3') if m in sys.modules))\n"
        "import requests\n"  # whoever wants requests still gets it, whole
        "print(requests.Session.__name__, 'urllib3' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["[]", "Session True"]
    assert (tmp_path / "dist" / "2020-12" / "email.html").is_file()
