"""`newsletter check`: validation, lint and the inbox-quality gate."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from components import Finding, IssueInvalid, check_issue, findings_from_invalid, load_issue

from .build import render_configured
from .config import Settings
from .sending import base_url_advice, base_url_problem


def check_file(path: Path, settings: Settings) -> list[Finding]:
    try:
        issue = load_issue(path)
    except IssueInvalid as exc:
        return findings_from_invalid(exc)
    try:
        rendered = render_configured(issue, settings)
    except IssueInvalid as exc:  # found while rendering (a merge field as a link's address): still one report
        findings = findings_from_invalid(exc)
    else:
        findings = check_issue(issue, rendered, settings.check_clients)
    return sorted([*findings, *_base_url(path, settings)], key=lambda f: (f.level != "error", f.line, f.rule))


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
    """Findings grouped by rule, then a one-line summary."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.level, f.rule)].append(f)
    lines = []
    for (level, rule), items in sorted(groups.items(), key=lambda g: (g[0][0] != "error", g[0][1])):
        lines.append(f"{level}s: {rule}")
        lines += [f"  {f.file}:{f.line}: {f.message}" for f in items]
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    lines.append(f"{files} issue file(s) checked: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
