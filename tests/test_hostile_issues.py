"""Issue files written to hurt (issue 12): each attack found against round 1, kept as a regression test.

An issue file is edited by people and tools the sender does not control; `check` and `build`
must answer anything in one with `file:line:col: message` and exit status 1: never a traceback,
never minutes of CPU or gigabytes of memory, never content silently dropped or silently chosen.
The library answers are tested through `load_issue`; where the message and the exit status
matter, through the installed `newsletter` console script in a real process, with a time
limit and an address-space limit (the alias bomb took 63 s and 2.5 GB before).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from components import IssueInvalid, Problem, check_issue, load_issue
from components.images import MAX_BYTES, MAX_SIDE, WARN_SIDE
from components.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_ITEMS, MAX_NODES, MAX_STRING
from newsletter.cli import main
from tests.conftest import ISSUES, REFERENCE

NEWSLETTER = Path(sys.executable).parent / "newsletter"
MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: the old loader needed 2.5 GB for the 8-level bomb
NOT_ALLOWED = "anchors and aliases (&name, *name) are not allowed in issue files"


def bomb(levels: int) -> str:
    """The billion laughs in YAML: each line holds nine aliases of the line before."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def newsletter(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real console script, bounded: 60 s and 1 GiB, or the test fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([str(NEWSLETTER), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, preexec_fn=_limit_memory)


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(IssueInvalid) as info:
        load_issue(path)
    return info.value.problems


def messages(path: Path) -> list[str]:
    return [str(p) for p in problems_of(path)]


# --- anchors and aliases ----------------------------------------------------------------------------


def test_the_alias_bomb_is_refused_at_its_first_anchor(write_issue) -> None:
    path = write_issue(bomb(9))  # nine levels: 387 million strings once expanded
    found = messages(path)
    assert f"{path}:1:4: a: anchor &a: {NOT_ALLOWED}; write the value out" in found
    assert f"{path}:2:8: b[0]: alias *a: {NOT_ALLOWED}; write the value out" in found
    assert sum("alias *h" in m for m in found) == 9
    assert f"{path}:1:1: subject is required" in found  # and the rest of the file is still checked


def test_the_alias_bomb_through_check_and_build_in_a_bounded_process(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    (tmp_path / "issues" / "bomb.yaml").write_text(bomb(9), "utf-8")
    for command in (["check", "issues/bomb.yaml"], ["build", "issues/bomb.yaml", "--out", "site"]):
        proc = newsletter(*command, cwd=tmp_path)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, output
        assert "Traceback" not in output and "MemoryError" not in output
        assert NOT_ALLOWED in output
        assert "issues/bomb.yaml:1" in output
    assert not (tmp_path / "site").exists()


def test_an_anchor_used_for_a_repeated_block_is_refused_with_every_place(write_issue) -> None:
    path = write_issue("subject: Hi\n"
                       "blocks:\n"
                       "  - button: &go {label: Go, url: 'https://example.org/'}\n"
                       "  - text: hi\n"
                       "  - button: *go\n"
                       "  - <<: {text: merged}\n")
    problems = problems_of(path)
    assert [(p.line, p.col, p.path) for p in problems[:2]] == [(3, 13, "blocks[0].button"), (5, 13, "blocks[2].button")]
    assert "anchor &go" in problems[0].message and "alias *go" in problems[1].message
    # the alias was read as nothing: the validator does not repeat the complaint at the same place
    assert len([p for p in problems if p.line == 5]) == 1
    # `<<` merges need an alias to be of use; without one it is just an unknown block type
    assert "unknown block type '<<'" in problems[2].message


# --- keys given twice -------------------------------------------------------------------------------

TWICE = """\
subject: What the reviewer reads
blocks:
  - button: {label: Go, url: "https://good.example/", url: "https://evil.example/"}
  - image: {src: images/pic.png}
  - section:
      title: One
      title: Two
      blocks:
        - text: hi
subject: What the readers would get
"""


def test_a_key_given_twice_is_an_error_naming_both_lines_with_every_other_problem(write_issue) -> None:
    path = write_issue(TWICE)
    assert messages(path) == [
        f"{path}:3:55: blocks[0].button.url: given twice, on line 3 (columns 25 and 55)",
        f"{path}:4:5: blocks[1].image: alt is required",
        f"{path}:7:7: blocks[2].section.title: given twice, at lines 6 and 7",
        f"{path}:10:1: subject: given twice, at lines 1 and 10",
    ]


def test_a_key_given_twice_through_check_json_and_build(tmp_path: Path) -> None:
    folder = tmp_path / "issues"
    (folder / "twice" / "images").mkdir(parents=True)
    (folder / "twice.yaml").write_text(TWICE.replace("  - image: {src: images/pic.png}\n", ""), "utf-8")
    proc = newsletter("check", "--json", "issues/twice.yaml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [f for f in json.loads(proc.stdout) if f["level"] == "error"]
    # The rest of the file is checked in the same run: it has no masthead, so no <h1>.
    assert "a11y-headings" in [f["rule"] for f in errors if f["rule"] != "invalid"]
    assert [(f["rule"], f["line"], f["message"]) for f in errors if f["rule"] == "invalid"] == [
        ("invalid", 3, "blocks[0].button.url: given twice, on line 3 (columns 25 and 55)"),
        ("invalid", 6, "blocks[1].section.title: given twice, at lines 5 and 6"),
        ("invalid", 9, "subject: given twice, at lines 1 and 9"),
    ]
    build = newsletter("build", "issues/twice.yaml", "--out", "site", cwd=tmp_path)
    assert build.returncode == 1 and "issues/twice.yaml:9:1: subject: given twice" in build.stderr
    assert "Traceback" not in build.stderr and not (tmp_path / "site").exists()


def test_the_same_key_in_different_blocks_is_fine(write_issue) -> None:
    path = write_issue("subject: Hi\nblocks:\n  - heading: One\n  - heading: Two\n"
                       "  - button: {label: a, url: 'https://a.example/'}\n"
                       "  - button: {label: b, url: 'https://b.example/'}\n")
    assert [b.fields.model_dump()["url"] for b in load_issue(path).blocks[2:]] == ["https://a.example/", "https://b.example/"]


# --- sizes: a clear error, never a hang and never content dropped -----------------------------------


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(write_issue) -> None:
    # The 10-million-character text block that silently vanished from the email.
    path = write_issue("subject: Hi\nblocks:\n  - text: |\n      " + "x" * 10_000_000 + "\n")
    assert messages(path) == [f"{path}:1:1: the file is over 2 MB, the most an issue file may be "
                              "(the reference issue is 25 KB)"]
    assert REFERENCE.stat().st_size * 50 < MAX_FILE_BYTES


def test_a_device_or_endless_file_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    assert messages(Path("/dev/zero"))[0].startswith("/dev/zero:1:1: the file is over 2 MB")


def test_a_string_over_the_cap_is_an_error_at_its_place(write_issue) -> None:
    long = "word " * (MAX_STRING // 5 + 1)
    path = write_issue(f"subject: Hi\nblocks:\n  - heading: Hi\n  - text: '{long}'\n")
    assert messages(path) == [f"{path}:4:11: blocks[1].text: {len(long):,} characters; a value can hold "
                              f"at most {MAX_STRING:,} (split it, or link to the full text)"]


def test_a_string_under_the_cap_reaches_the_email_whole(write_issue) -> None:
    from components import render_issue
    text = "word " * 20_000 + "THE-END"
    rendered = render_issue(load_issue(write_issue(f"subject: Hi\nblocks:\n  - text: '{text}'\n")))
    assert "THE-END" in rendered.html and "THE-END" in rendered.text


def test_a_list_over_the_cap_is_an_error_at_the_list(write_issue) -> None:
    path = write_issue("subject: Hi\nblocks:\n" + "  - text: hi\n" * (MAX_ITEMS + 1))
    assert messages(path) == [f"{path}:3:3: blocks: more than {MAX_ITEMS:,} items in one list"]


def test_too_many_values_stop_the_reading_before_anything_is_built(write_issue) -> None:
    path = write_issue("subject: Hi\nblocks: [" + "1, " * (MAX_NODES + 10) + "]\n")
    assert messages(path) == [
        f"{path}:2:9: blocks: more than {MAX_ITEMS:,} items in one list",
        f"{path}:2:{10 + 3 * (MAX_NODES - 5)}: blocks[{MAX_NODES - 5}]: the file holds more than {MAX_NODES} "
        "YAML values; an issue is far smaller (is it generated?)",
    ]


@pytest.mark.parametrize("text", [
    "subject: Hi\nblocks: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "subject: Hi\nblocks:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
    "subject: Hi\nblocks:\n" + "".join("  " * i + "- a:\n" for i in range(1, 300)),
])
def test_deep_nesting_is_an_error_not_a_recursion_error(write_issue, text: str) -> None:
    (problem,) = problems_of(write_issue(text))
    assert problem.message == f"nested more than {MAX_DEPTH} levels deep; an issue is far flatter"


def test_the_reference_issue_is_far_below_every_cap() -> None:
    from components.source import load_yaml
    text = REFERENCE.read_text("utf-8")
    located = load_yaml(text, str(REFERENCE))
    assert located.complete and not located.problems
    assert len(located.marks) * 50 < MAX_NODES
    assert max(len(s) for s in _strings(located.data)) * 50 < MAX_STRING


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# --- anything in a file: an error with its place, never a traceback ---------------------------------

# name: (the file, where its problem is, what it says)
HOSTILE_FILES: dict[str, tuple[bytes, str, str]] = {
    "bad-utf8": (b"subject: caf\xe9\nblocks:\n  - text: hi\n", "1:1", "not valid UTF-8 text"),
    "nul": (b"subject: a\x00b\nblocks:\n  - text: hi\n", "1:1", "not a text file (binary data)"),
    "tabs": (b"subject: x\nblocks:\n  - text: hi\n\t- text: ho\n", "4:1",
             "YAML syntax error: tabs are not allowed in YAML indentation; use spaces"),
    "unclosed": (b"subject: 'Hi\nblocks:\n  - text: hi\n", "4:1", "YAML syntax error: found unexpected end of stream"),
    "python-tag": (b"subject: !!python/object/apply:os.system ['touch PWNED']\nblocks:\n  - text: hi\n", "1:10",
                   "subject: the YAML tag !!python/object/apply:os.system is not allowed in issue files"),
    "custom-tag": (b"subject: Hi\nblocks:\n  - text: !include secrets.txt\n", "3:11",
                   "blocks[0].text: the YAML tag !include is not allowed in issue files"),
    "huge-int": (b"subject: " + b"9" * 5000 + b"\nblocks:\n  - text: hi\n", "1:10",
                 "subject: a number of 5,000 characters; quote it if it is meant as text"),
    "sexagesimal": (b"subject: Hi\ndate: 1" + b":59" * 30_000 + b"\nblocks:\n  - text: hi\n", "2:7",
                    "date: a number of 90,001 characters"),
    "bad-date": (b"subject: Hi\ndate: 2020-13-45\nblocks:\n  - text: hi\n", "2:7",
                 "date: invalid value '2020-13-45': month must be in 1..12"),
    "deep": (b"subject: Hi\nblocks: " + b"[" * 5000 + b"]" * 5000 + b"\n", "2:",
             f"nested more than {MAX_DEPTH} levels deep"),
    "a-list": (b"- subject: Hi\n- blocks: []\n", "1:1", "the top level must be a mapping with subject and blocks"),
    "a-scalar": (b"42\n", "1:1", "the top level must be a mapping with subject and blocks"),
    "two-documents": (b"subject: Hi\nblocks:\n  - text: hi\n---\nsubject: Other\n", "4:1",
                      "an issue file holds one YAML document; a second one starts here"),
    "control-char": ("subject: Héllo\x07\nblocks:\n  - text: hi\n".encode(), "1:15",
                     "contains U+0007, a control character or non-character YAML does not allow"),
    "complex-key": (b"subject: Hi\n? [a, b]\n: c\nblocks:\n  - text: hi\n", "2:3", "unknown key \"['a', 'b']\""),
}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "issues"
    folder.mkdir()
    for name, (raw, _, _) in HOSTILE_FILES.items():
        (folder / f"{name}.yaml").write_bytes(raw)
    return folder


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_file_is_one_clear_problem_from_the_library(hostile: Path, name: str) -> None:
    path = hostile / f"{name}.yaml"
    _, where, message = HOSTILE_FILES[name]
    found = messages(path)
    assert any(m.startswith(f"{path}:{where}") and message in m for m in found), found


def test_every_hostile_file_through_the_real_check_and_build(hostile: Path, tmp_path: Path) -> None:
    names = sorted(HOSTILE_FILES)
    proc = newsletter("check", "--json", *(f"issues/{n}.yaml" for n in names), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [f for f in json.loads(proc.stdout) if f["level"] == "error"]
    for name in names:
        _, where, message = HOSTILE_FILES[name]
        line = int(where.split(":")[0])
        assert any(f["file"] == f"issues/{name}.yaml" and f["line"] == line and message in f["message"]
                   for f in errors), (name, errors)
    for name in names:
        result = CliRunner().invoke(main, ["build", str(hostile / f"{name}.yaml"), "--out", str(tmp_path / "site")])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (name, result.output)
        assert f"{hostile / name}.yaml:{HOSTILE_FILES[name][1]}" in result.output
    assert not (tmp_path / "site").exists() and not (tmp_path / "PWNED").exists()


# --- images -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real image files: wrong types, a decompression bomb, too wide, too heavy, over budget."""
    folder = tmp_path_factory.mktemp("images")
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png")  # 400 Mpx in ~50 KB
    Image.new("1", (9_500, 9_500)).save(folder / "near-bomb.png")  # past Pillow's limit, under twice it
    Image.new("RGB", (MAX_SIDE + 1, 8)).save(folder / "too-wide.png")
    Image.new("RGB", (WARN_SIDE + 1, 8)).save(folder / "wide.png")
    Image.new("RGB", (8, 8)).save(folder / "photo.png", "JPEG")
    Image.new("RGB", (8, 8)).save(folder / "bitmap.gif", "BMP")
    Image.new("RGB", (8, 8)).save(folder / "small.jpg", "JPEG")
    (folder / "notes.png").write_text("not an image at all\n", "utf-8")
    (folder / "drawing.png").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>', "utf-8")
    (folder / "empty.webp").write_bytes(b"")
    header = (folder / "small.jpg").read_bytes()
    (folder / "huge.jpg").write_bytes(header + b"\0" * (MAX_BYTES + 50 * 1024 * 1024))  # a 60 MB "JPEG"
    (folder / "heavy.jpg").write_bytes(header + b"\0" * (2 * 1024 * 1024))  # over the 1 MB budget
    return folder


def image_issue(issue_dir: Path, images: Path, *names: str) -> Path:
    own = issue_dir / "t" / "images"
    for name in names:
        shutil.copyfile(images / name, own / name)
    path = issue_dir / "t.yaml"
    path.write_text("subject: Hi\npreheader: Pictures\nblocks:\n  - masthead: {title: Pictures}\n"
                    + "".join(f"  - image: {{src: images/{n}, alt: picture}}\n" for n in names), "utf-8")
    return path


IMAGE_ERRORS = {
    "bomb.png": "image images/bomb.png declares more than 89,478,485 pixels, Pillow's decompression-bomb limit; "
                "resize it, most email clients show 600 px",
    "near-bomb.png": "image images/near-bomb.png declares more than 89,478,485 pixels",
    "too-wide.png": f"image images/too-wide.png is {MAX_SIDE + 1}x8 px, over the 10,000 px an email image may "
                    "have on a side; resize it, most email clients show 600 px",
    "photo.png": "images/photo.png is named .png but is a JPEG image; rename it to .jpg",
    "bitmap.gif": "images/bitmap.gif is named .gif but is a BMP image; convert it to PNG or JPEG",
    "notes.png": "images/notes.png is not a PNG image: it is text",
    "drawing.png": "images/drawing.png is not a PNG image: it is SVG, which most email clients do not show",
    "empty.webp": "images/empty.webp is not a WEBP image: the file is empty",
    "huge.jpg": "image images/huge.jpg is 60 MB, over the 10 MB an email image may be; "
                "resize it, most email clients show 600 px",
}


def test_images_that_are_not_what_they_say_or_past_a_cap_are_errors(issue_dir: Path, images: Path) -> None:
    names = sorted(IMAGE_ERRORS)
    path = image_issue(issue_dir, images, *names)
    problems = problems_of(path)
    assert [(p.line, p.path) for p in problems] == [(5 + i, f"blocks[{i + 1}].image") for i in range(len(names))]
    for problem, name in zip(problems, names, strict=True):
        assert problem.message.startswith(IMAGE_ERRORS[name]), problem.message


def test_an_image_error_through_the_real_build_publishes_nothing(tmp_path: Path, images: Path) -> None:
    folder = tmp_path / "issues"
    (folder / "t" / "images").mkdir(parents=True)
    path = image_issue(folder, images, "small.jpg", "photo.png", "bomb.png")
    proc = newsletter("build", path.relative_to(tmp_path), "--out", "site", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "issues/t.yaml:6:5: blocks[2].image: images/photo.png is named .png but is a JPEG image" in proc.stderr
    assert "issues/t.yaml:7:5: blocks[3].image: image images/bomb.png declares more than" in proc.stderr
    assert not (tmp_path / "site").exists()


def test_images_over_the_budget_are_check_warnings(tmp_path: Path, images: Path) -> None:
    folder = tmp_path / "issues"
    (folder / "t" / "images").mkdir(parents=True)
    path = image_issue(folder, images, "small.jpg", "wide.png", "heavy.jpg")
    proc = newsletter("check", "--json", path.relative_to(tmp_path), cwd=tmp_path)
    found = [f for f in json.loads(proc.stdout) if f["rule"] == "image-size"]
    assert [(f["level"], f["line"], f["message"]) for f in found] == [
        ("warning", 6, f"blocks[2].image: image images/wide.png is {WARN_SIDE + 1}x8 px; "
                       "resize it, most email clients show 600 px"),
        ("warning", 7, "blocks[3].image: image images/heavy.jpg is 2 MB; every reader downloads it at every open "
                       "(keep images under 1 MB: resize it, most email clients show 600 px, or compress it)"),
    ]
    # a warning, so the issue still builds, with the images as they are
    build = newsletter("build", path.relative_to(tmp_path), "--out", "site", cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "site" / "t" / "images" / "wide.png").read_bytes() == (images / "wide.png").read_bytes()


def test_the_reference_images_are_within_budget(reference_rendered) -> None:
    issue = load_issue(REFERENCE)
    assert issue.assets and all(p.is_relative_to(ISSUES) for p in issue.assets.values())
    assert not [f for f in check_issue(issue, reference_rendered) if f.rule == "image-size"]
