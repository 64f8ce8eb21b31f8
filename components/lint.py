"""Lint rules for `newsletter check`: what would hurt the issue in an inbox.

Validation (validate.py) refuses what cannot be built; lint finds what builds
but reads badly or breaks in a client. Each finding names its rule and place.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import mjml

from . import merge
from .errors import IssueInvalid
from .fields import strings_in
from .model import Issue
from .render import RenderedIssue, render_issue

GMAIL_CLIP = 102 * 1024  # Gmail hides everything past 102 KB of HTML
SIZE_WARNING = 90 * 1024
LIBERO_CLIP = 80 * 1024
STYLE_LIMIT = 16 * 1024  # Gmail drops a <style> block larger than this
SUBJECT_MAX = 80
_HTTP_URL = re.compile(r"http://[^\s<>()\"']+", re.I)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    rule: str
    message: str
    file: str
    line: int
    clients: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.message} [{self.rule}]"


def check_issue(issue: Issue, rendered: RenderedIssue | None = None,
                clients: tuple[str, ...] | None = None) -> list[Finding]:
    """Every finding for one valid issue, errors first; warnings the issue accepts (`accept:`) left out.

    What only rendering finds (a merge field as a link's address: merge.ADDRESS_MESSAGE) comes back
    as findings too, the problems the render refused with.
    """
    if rendered is None:
        try:
            rendered = render_issue(issue)
        except IssueInvalid as exc:
            return findings_from_invalid(exc)
    findings = [*_merge_fields(issue), *_insecure(issue, rendered), *_size(issue, rendered), *_envelope(issue),
                *_image_budget(issue), *_accessibility(issue, rendered), *_client_support(issue, rendered, clients)]
    accepted = {a.rule for a in issue.fields.accept}
    kept = [f for f in findings if not (f.level == "warning" and f.rule in accepted)]
    return sorted(kept + _unknown_acceptances(issue), key=lambda f: (f.level != "error", f.line, f.rule))


# Every rule `check` knows, so that `accept:` cannot name one that does not exist.
RULES = ("merge-field", "insecure-link", "gmail-clip", "size", "libero-clip", "style-size", "preheader",
         "subject-length", "client-support", "a11y-lang", "a11y-title", "a11y-layout-table", "a11y-headings",
         "a11y-link-text", "a11y-alt-text", "a11y-contrast", "image-size")


def _unknown_acceptances(issue: Issue) -> list[Finding]:
    return [Finding("error", "accept", f"accept: unknown rule {a.rule!r} (rules: {', '.join(RULES)})",
                    issue.shown, 1) for a in issue.fields.accept if a.rule not in RULES]


def _client_support(issue: Issue, rendered: RenderedIssue, clients: tuple[str, ...] | None) -> list[Finding]:
    from .support import DEFAULT_CLIENTS, check_support
    found = check_support(rendered.html, clients or DEFAULT_CLIENTS)
    return [Finding(f.level, "client-support", f"{f.feature_title} ({f.feature_slug}) in {f.where}"
                    + (f"; {'; '.join(f.notes)}" if f.notes else ""), issue.shown, 1, list(f.clients))
            for f in found]


def findings_from_invalid(exc: IssueInvalid) -> list[Finding]:
    return [Finding("error", "invalid", f"{p.path}: {p.message}" if p.path else p.message, p.file, p.line)
            for p in exc.problems]


def _merge_fields(issue: Issue) -> list[Finding]:
    found = []
    places = [(issue.fields.subject, 1, "subject"), (issue.fields.preheader, 1, "preheader")]
    places += [(s, b.line, b.path) for b in issue.walk() for s in strings_in(_own_fields(b))]
    for text, line, where in places:
        for f in merge.fields_in(text):
            if not f.known:
                known = ", ".join(merge.SUBSCRIBER_FIELDS) + ", fields.<name>"
                found.append(Finding("error", "merge-field",
                                     f"{where}: unknown merge field {{{{ {f.name} }}}} (known: {known})",
                                     issue.shown, line))
    return found


def _own_fields(block: Any) -> dict[str, Any]:
    skip = block.component.children_field
    return {k: getattr(block.fields, k) for k in type(block.fields).model_fields if k != skip}


def _accessibility(issue: Issue, rendered: RenderedIssue) -> list[Finding]:
    from .a11y import check_accessibility
    from .theme import load_theme
    theme = load_theme(issue.fields.theme)
    return [Finding(level, rule, message, file, line, ["all"])
            for level, rule, message, file, line in check_accessibility(issue, rendered, theme)]


def _images_of(fields: Any) -> list[Any]:
    from .fields import Image
    if isinstance(fields, Image):
        return [fields]
    out = []
    for name in type(fields).model_fields:
        value = getattr(fields, name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Image):
                out.append(item)
            elif hasattr(type(item), "model_fields"):
                out += _images_of(item)
    return out


def _image_budget(issue: Issue) -> list[Finding]:
    """Images heavier than an email should carry (validation already refused those past the hard cap)."""
    from .images import budget_warning, inspect
    found, seen = [], set()
    for block in issue.walk():
        for image in _images_of(block.fields):
            if image.src not in issue.assets or image.src in seen:
                continue
            seen.add(image.src)
            info = inspect(issue.assets[image.src], image.src)
            advice = budget_warning(info) if not isinstance(info, str) else None
            if advice:
                found.append(Finding("warning", "image-size", f"{block.path}: {advice}", issue.shown, block.line,
                                     ["all"]))
    return found


def _insecure(issue: Issue, rendered: RenderedIssue) -> list[Finding]:
    # Only what the author wrote: the base URL is the sender's configuration.
    found = []
    for block in issue.walk():
        for url in dict.fromkeys(u for s in strings_in(_own_fields(block)) for u in _HTTP_URL.findall(s)):
            found.append(Finding("warning", "insecure-link",
                                 f"{block.path}: http:// link or image {url}; use https:// "
                                 "(clients warn about or block plain http)",
                                 issue.shown, block.line, ["Gmail", "Apple Mail"]))
    return found


def _size(issue: Issue, rendered: RenderedIssue) -> list[Finding]:
    size = len(rendered.html.encode("utf-8"))
    found = []
    for match in _STYLE.finditer(rendered.html):
        if len(match.group(1).encode()) > STYLE_LIMIT:
            found.append(Finding("error", "style-size", "a <style> block is over 16 KB; Gmail drops it",
                                 issue.shown, 1, ["Gmail"]))
    if size > GMAIL_CLIP:
        found.append(Finding("error", "gmail-clip",
                             f"the email's HTML is {size / 1024:.1f} KB; Gmail clips it past 102 KB. "
                             f"Biggest blocks: {_biggest(issue, rendered)}", issue.shown, 1, ["Gmail"]))
    elif size > SIZE_WARNING:
        found.append(Finding("warning", "size",
                             f"the email's HTML is {size / 1024:.1f} KB, close to Gmail's 102 KB clip",
                             issue.shown, 1, ["Gmail"]))
    if size > LIBERO_CLIP:
        found.append(Finding("warning", "libero-clip",
                             f"the email's HTML is {size / 1024:.1f} KB; Libero Mail cuts messages past 80 KB",
                             issue.shown, 1, ["Libero"]))
    return found


def block_sizes(issue: Issue, rendered: RenderedIssue) -> list[tuple[str, int]]:
    """Approximate HTML bytes each top-level block adds, biggest first."""
    head, _, rest = rendered.mjml.partition("<mj-body")
    empty = len(mjml.mjml2html(head + "<mj-body></mj-body></mjml>"))
    sizes = []
    for block in issue.blocks:
        alone = render_issue(_only(issue, block)).mjml
        sizes.append((block.path, len(mjml.mjml2html(alone)) - empty))
    return sorted(sizes, key=lambda s: -s[1])


def _only(issue: Issue, block: Any) -> Issue:
    from dataclasses import replace
    return replace(issue, blocks=(block,))


def _biggest(issue: Issue, rendered: RenderedIssue) -> str:
    return ", ".join(f"{path} ({size / 1024:.1f} KB)" for path, size in block_sizes(issue, rendered)[:3])


def _envelope(issue: Issue) -> list[Finding]:
    found = []
    if not issue.fields.preheader.strip():
        found.append(Finding("warning", "preheader",
                             "no preheader: inboxes will show the first words of the email instead",
                             issue.shown, 1, ["Gmail", "Outlook", "Apple Mail"]))
    if len(issue.fields.subject) > SUBJECT_MAX:
        found.append(Finding("warning", "subject-length",
                             f"the subject is {len(issue.fields.subject)} characters; "
                             f"inboxes cut it near {SUBJECT_MAX}",
                             issue.shown, 1, ["Gmail", "Outlook", "Apple Mail"]))
    return found
