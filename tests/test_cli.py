"""The `newsletter` command line (design §4): exit 0 / 1 (user error, no traceback) / 2 (usage).

Most cases go through click's CliRunner in-process; the ones about exit
status and tracebacks also run the installed console script as a real
subprocess, exactly as a user (or CI outside the repo) would.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from tests.conftest import ISSUES

# The console script installed beside the Python running the tests (the project's .venv).
NEWSLETTER = Path(sys.executable).parent / "newsletter"

BAD_ISSUE = """\
subject: Broken
blocks:
  - txt: typo
  - image: {src: images/pic.png}
  - button: {label: Go, url: 'javascript:alert(1)'}
"""
BAD_PROBLEMS = [
    ("3:5", "blocks[0]: unknown block type 'txt'"),
    ("4:5", "blocks[1].image: alt is required"),
    ("5:", "blocks[2].button.url: link must be an http(s) or mailto: URL"),
]


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder (no ./newsletter.toml) with no NEWSLETTER_* variables."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def issues(tmp_path: Path) -> Path:
    """A private copy of the repository's issues/ folder (reference issue and its images)."""
    return Path(shutil.copytree(ISSUES, tmp_path / "issues"))


@pytest.fixture
def bad_issue(tmp_path: Path) -> Path:
    folder = tmp_path / "issues"
    (folder / "broken" / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(ISSUES / "2020-12" / "images" / "mias-story.png", folder / "broken" / "images" / "pic.png")
    path = folder / "broken.yaml"
    path.write_text(BAD_ISSUE, "utf-8")
    return path


def run(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    # CliRunner turns an uncaught exception into exit status 1 as well; a user
    # error must be a clean exit (SystemExit), never a crash with a traceback.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    return result


def run_process(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([str(NEWSLETTER), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- help and usage ---------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("build", "check", "preview", "new"):
        assert f"  {command} " in result.output


def test_usage_error_exits_2() -> None:
    result = run("build")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_unknown_command_exits_2() -> None:
    assert run("frobnicate").exit_code == 2


def test_usage_error_exits_2_in_a_real_process(tmp_path: Path) -> None:
    proc = run_process("check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- build ------------------------------------------------------------------------------------------


def test_build_writes_the_issue_folder(issues: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("build", issues / "2020-12.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    folder = out / "2020-12"
    for name in ("email.html", "email.txt", "index.html"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0
    images = sorted(p.name for p in (folder / "images").iterdir())
    assert images == sorted(p.name for p in (issues / "2020-12" / "images").iterdir())
    assert (folder / "images" / "mias-story.png").read_bytes() == (
        issues / "2020-12" / "images" / "mias-story.png").read_bytes()
    html = (folder / "email.html").read_text("utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "Lancashire Violence Reduction Network" in html
    assert "Trauma informed" in (folder / "email.txt").read_text("utf-8")
    # No staging or leftover folders beside the build.
    assert sorted(p.name for p in out.iterdir()) == ["2020-12"]
    assert str(folder) in result.output


def test_build_defaults_to_dist(issues: Path, tmp_path: Path) -> None:
    result = run("build", "issues/2020-12.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dist" / "2020-12" / "email.html").is_file()


def test_build_in_a_real_process(issues: Path, tmp_path: Path) -> None:
    proc = run_process("build", "issues/2020-12.yaml", "--out", "site", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "site" / "2020-12" / "index.html").is_file()


def test_build_of_an_invalid_issue_prints_every_problem_and_writes_nothing(bad_issue: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("build", bad_issue, "--out", out)
    assert result.exit_code == 1
    for place, message in BAD_PROBLEMS:
        assert f"{bad_issue}:{place}" in result.stderr
        assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (out / "broken").exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_build_of_an_invalid_issue_leaves_the_previous_build_untouched(bad_issue: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad_issue.write_text("subject: Fine\nblocks:\n  - text: The first version\n", "utf-8")
    assert run("build", bad_issue, "--out", out).exit_code == 0
    before = snapshot(out / "broken")
    assert b"The first version" in before["email.html"]
    bad_issue.write_text(BAD_ISSUE, "utf-8")
    result = run("build", bad_issue, "--out", out)
    assert result.exit_code == 1
    assert snapshot(out / "broken") == before
    assert sorted(p.name for p in out.iterdir()) == ["broken"]


def test_rebuild_replaces_the_previous_build(bad_issue: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad_issue.write_text("subject: One\nblocks:\n  - image: {src: images/pic.png, alt: A}\n", "utf-8")
    assert run("build", bad_issue, "--out", out).exit_code == 0
    assert (out / "broken" / "images" / "pic.png").is_file()
    bad_issue.write_text("subject: Two\nblocks:\n  - text: Second version\n", "utf-8")
    assert run("build", bad_issue, "--out", out).exit_code == 0
    assert b"Second version" in (out / "broken" / "email.html").read_bytes()
    assert not (out / "broken" / "images").exists()  # the old image went with the old build
    assert sorted(p.name for p in out.iterdir()) == ["broken"]


def test_build_of_an_invalid_issue_in_a_real_process(bad_issue: Path, tmp_path: Path) -> None:
    proc = run_process("build", bad_issue, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    for place, message in BAD_PROBLEMS:
        assert f"{bad_issue}:{place}" in proc.stderr and message in proc.stderr
    assert not (tmp_path / "out" / "broken").exists()


def test_build_of_a_missing_file_exits_1(tmp_path: Path) -> None:
    result = run("build", tmp_path / "absent.yaml", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "absent.yaml" in result.stderr
    assert not (tmp_path / "out" / "absent").exists()


# --- check ------------------------------------------------------------------------------------------


def test_check_of_the_reference_issue_passes(issues: Path) -> None:
    result = run("check", issues / "2020-12.yaml")
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output


def test_check_json_shape(issues: Path) -> None:
    result = run("check", "--json", issues / "2020-12.yaml")
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    assert isinstance(findings, list)
    for f in findings:
        assert set(f) == {"level", "rule", "message", "file", "line", "clients"}
        assert f["level"] in ("error", "warning")
        assert f["level"] == "warning"  # the reference issue has no errors
        assert isinstance(f["rule"], str) and f["rule"]
        assert isinstance(f["line"], int) and f["line"] >= 1
        assert isinstance(f["clients"], list)
        assert f["file"] == str(issues / "2020-12.yaml")


def test_check_json_of_a_bad_issue(bad_issue: Path) -> None:
    result = run("check", "--json", bad_issue)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    errors = [f for f in findings if f["level"] == "error"]
    assert [f["line"] for f in errors] == [3, 4, 5]
    for f in findings:
        assert set(f) == {"level", "rule", "message", "file", "line", "clients"}
        assert f["file"] == str(bad_issue)
    assert [f["rule"] for f in findings if f["level"] == "warning"] == ["base-url"]  # configuration: checked too
    assert "unknown block type 'txt'" in errors[0]["message"]
    assert errors[0]["message"].endswith("; did you mean 'text'?")  # the hint, in the contract's keys


def test_check_of_a_bad_issue_exits_1_listing_every_problem(bad_issue: Path) -> None:
    result = run("check", bad_issue)
    assert result.exit_code == 1
    for _, message in BAD_PROBLEMS:
        assert message in result.output
    assert "3 error(s)" in result.output


def test_check_of_two_files_reports_both(issues: Path, bad_issue: Path) -> None:
    second = issues / "other.yaml"
    second.write_text("subject: s\nblocks:\n  - text: 'Hi {{ firstname }}'\n", "utf-8")
    result = run("check", "--json", bad_issue, second)
    assert result.exit_code == 1
    files = {f["file"] for f in json.loads(result.stdout)}
    assert files == {str(bad_issue), str(second)}
    rules = {(f["file"], f["rule"]) for f in json.loads(result.stdout) if f["level"] == "error"}
    assert (str(second), "merge-field") in rules
    text = run("check", bad_issue, second)
    assert text.exit_code == 1
    assert "2 issue file(s) checked" in text.output
    assert str(bad_issue) in text.output and str(second) in text.output


def test_check_of_a_good_and_a_bad_file_exits_1(issues: Path, bad_issue: Path) -> None:
    result = run("check", issues / "2020-12.yaml", bad_issue)
    assert result.exit_code == 1
    assert "2 issue file(s) checked" in result.output


# --- new --------------------------------------------------------------------------------------------


def test_new_scaffolds_an_issue_that_checks_and_builds(tmp_path: Path) -> None:
    result = run("new", "2021-01")
    assert result.exit_code == 0, result.output
    path = tmp_path / "issues" / "2021-01.yaml"
    assert path.is_file()
    assert "issues/2021-01.yaml" in result.output
    checked = run("check", "--json", "issues/2021-01.yaml")
    assert checked.exit_code == 0, checked.output
    assert [f for f in json.loads(checked.stdout) if f["level"] == "error"] == []
    built = run("build", "issues/2021-01.yaml", "--out", "dist")
    assert built.exit_code == 0, built.output
    assert (tmp_path / "dist" / "2021-01" / "email.html").is_file()


def test_new_refuses_an_existing_slug(tmp_path: Path) -> None:
    assert run("new", "2021-02").exit_code == 0
    path = tmp_path / "issues" / "2021-02.yaml"
    path.write_text("subject: edited by hand\nblocks:\n  - text: keep me\n", "utf-8")
    result = run("new", "2021-02")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert path.read_text("utf-8") == "subject: edited by hand\nblocks:\n  - text: keep me\n"


@pytest.mark.parametrize("slug", ["Bad Slug", "../escape", "UPPER", "2021_01", "a/b", "x" * 65, "café"])
def test_new_refuses_an_invalid_slug(slug: str, tmp_path: Path) -> None:
    result = run("new", slug)
    assert result.exit_code == 1
    assert "not a valid slug" in result.stderr
    assert not list(tmp_path.rglob("*.yaml"))


# --- configuration ----------------------------------------------------------------------------------


def test_config_base_url_changes_image_urls(issues: Path, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[newsletter]\nbase_url = "https://news.example.org"\n', "utf-8")
    result = run("--config", config, "build", issues / "2020-12.yaml", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "2020-12" / "email.html").read_text("utf-8")
    assert 'src="https://news.example.org/archive/2020-12/images/mias-story.png"' in html
    assert "127.0.0.1:8025" not in html


def test_default_config_file_in_the_working_directory(issues: Path, tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text('base_url = "https://cwd.example"\n', "utf-8")
    assert run("build", "issues/2020-12.yaml", "--out", "out").exit_code == 0
    html = (tmp_path / "out" / "2020-12" / "email.html").read_text("utf-8")
    assert "https://cwd.example/archive/2020-12/images/" in html


def test_environment_overrides_the_config_file(issues: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "newsletter.toml").write_text('base_url = "https://file.example"\n', "utf-8")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://env.example")
    assert run("build", "issues/2020-12.yaml", "--out", "out").exit_code == 0
    html = (tmp_path / "out" / "2020-12" / "email.html").read_text("utf-8")
    assert "https://env.example/archive/2020-12/images/" in html
    assert "file.example" not in html


@pytest.mark.parametrize("content, expected", [
    ('transport = "pigeon"\n', "pigeon"),
    ('secret = "x"\n', "NEWSLETTER_SECRET"),
    ('colour = "red"\n', "unknown setting 'colour'"),
    ("base_url = [\n", "site.toml"),
    ("sns_topic_arns = 7\n", "sns_topic_arns"),
])
def test_bad_config_file_exits_1_with_a_clear_message(content: str, expected: str, issues: Path,
                                                      tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(content, "utf-8")
    result = run("--config", config, "check", issues / "2020-12.yaml")
    assert result.exit_code == 1
    assert expected in result.stderr
    assert result.stderr.startswith("Error: ")


def test_missing_config_file_exits_1(issues: Path, tmp_path: Path) -> None:
    result = run("--config", tmp_path / "absent.toml", "build", issues / "2020-12.yaml", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "absent.toml" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ['transport = "pigeon"\n', "sns_topic_arns = 7\n"])
def test_bad_config_file_in_a_real_process(content: str, issues: Path, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(content, "utf-8")
    proc = run_process("--config", config, "check", "issues/2020-12.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ")
