"""`newsletter check`: validation, lint and the inbox-quality gate, every problem of a file in one run."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from components import ComponentError, Finding, IssueInvalid, check_issue, read_issue, render_issue
from components.lint import findings_from_invalid, findings_from_problems, order
from components.validate import Reading

from . import wiring
from .config import Settings
from .sending import base_url_advice, base_url_problem


def check_file(path: Path, settings: Settings) -> list[Finding]:
    """Every finding for one issue file: its problems, and what lint finds in the part that validated."""
    reading = read_issue(path)
    findings = findings_from_problems(reading.problems)
    if reading.issue is not None:
        findings += _lint(reading, settings)
    return order([*findings, *_base_url(path, settings)])


def _lint(reading: Reading, settings: Settings) -> list[Finding]:
    issue = reading.issue
    assert issue is not None
    footer = wiring.footer(settings, issue.fields.theme)
    try:
        rendered = render_issue(issue, base_url=settings.base_url, footer=footer)
    except IssueInvalid as exc:  # found while rendering (a merge field as a link's address): still one report
        return findings_from_invalid(exc)
    except ComponentError:
        if reading.complete:
            raise
        return []  # only part of the file validated and that part does not render: its problems say why
    return check_issue(issue, rendered, settings.check_clients, footer=footer, left_out=reading.left_out,
                       places=reading.places)


def _base_url(path: Path, settings: Settings) -> list[Finding]:
    """The base URL every link of the built email starts with: a warning whatever the transport,
    since `send` through SES refuses it (design §4). It is configuration, so an issue cannot accept it."""
    problem = base_url_problem(settings.base_url)
    if problem is None:
        return []
    advice = base_url_advice(settings.base_url, problem)
    return [Finding("warning", "base-url", f"{advice}; `send` through SES refuses it unless --force", str(path), 1)]


def check_files(paths: list[Path], settings: Settings) -> list[Finding]:
    return [f for path in paths for f in check_file(path, settings)]


def report_text(findings: list[Finding], files: int) -> str:
    """Findings grouped by rule, each as FILE:LINE:COL with its hint below, then a one-line summary."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.level, f.rule)].append(f)
    lines = []
    for (level, rule), items in sorted(groups.items(), key=lambda g: (g[0][0] != "error", g[0][1])):
        lines.append(f"{level}s: {rule}")
        for f in items:
            lines.append(f"  {f.file}:{f.line}:{f.col}: {f.message}")
            if f.hint:
                lines.append(f"      hint: {f.hint}")
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    lines.append(f"{files} issue file(s) checked: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
