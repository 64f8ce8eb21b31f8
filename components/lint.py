"""Lint rules for `newsletter check`: what would hurt the issue in an inbox.

Validation (validate.py) refuses what cannot be built; lint finds what builds
but reads badly or breaks in a client. Each finding names its rule and place.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import merge
from .errors import IssueInvalid, Problem
from .fields import strings_in
from .model import Issue

if TYPE_CHECKING:  # render pulls in MJML, Jinja and premailer: only when a check renders
    from .render import Footer, RenderedIssue

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
    col: int = 1
    hint: str = ""  # how to fix it, where the message alone would leave an author guessing

    def as_dict(self) -> dict[str, Any]:
        """The shape of `check --json` (design §4); the hint is part of the message there."""
        message = f"{self.message}; {self.hint}" if self.hint else self.message
        return {"level": self.level, "rule": self.rule, "message": message, "file": self.file,
                "line": self.line, "clients": list(self.clients)}

    def __str__(self) -> str:
        hint = f"\n    hint: {self.hint}" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {self.level}: {self.message} [{self.rule}]{hint}"


def order(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then by place in the file."""
    return sorted(findings, key=lambda f: (f.level != "error", f.file, f.line, f.col, f.rule))


def check_issue(issue: Issue, rendered: RenderedIssue | None = None,
                clients: tuple[str, ...] | None = None, *, footer: Footer | None = None,
                left_out: Iterable[str] = (), places: Mapping[str, tuple[int, int]] | None = None) -> list[Finding]:
    """Every finding for one issue, errors first; warnings the issue accepts (`accept:`) left out.

    What only rendering finds (a merge field as a link's address: merge.ADDRESS_MESSAGE) comes back
    as findings too, the problems the render refused with. `footer` is what the email's footer says
    (default: the theme's). For the part of a file with problems that validated (validate.Reading),
    `left_out` names what that part lacks, and the rules that need it are not run; `places` (where
    each key and block is) gives findings their column.
    """
    if rendered is None:
        from .render import render_issue
        try:
            rendered = render_issue(issue, footer=footer)
        except IssueInvalid as exc:
            return findings_from_invalid(exc)
    findings = [*_merge_fields(issue), *_insecure(issue, rendered), *_size(issue, rendered), *_envelope(issue),
                *_image_budget(issue), *_accessibility(issue, rendered), *_client_support(issue, rendered, clients),
                *_placeholders(issue, footer)]
    unsure = {rule for part in left_out for rule in NEEDS.get(part, ())}
    accepted = {a.rule for a in issue.fields.accept}
    kept = [f for f in findings if f.rule not in unsure and not (f.level == "warning" and f.rule in accepted)]
    return order(_with_columns(kept + _unknown_acceptances(issue), issue, places or {}))


# Every rule `check` knows, so that `accept:` cannot name one that does not exist.
RULES = ("merge-field", "insecure-link", "gmail-clip", "size", "libero-clip", "style-size", "preheader",
         "subject-length", "client-support", "a11y-lang", "a11y-title", "a11y-layout-table", "a11y-headings",
         "a11y-link-text", "a11y-alt-text", "a11y-contrast", "image-size", "placeholder-footer", "scaffold-text")

# What a rule needs to judge the issue: left out of a file with problems, it is not run (the
# headings of a masthead in error are missing, not skipped; the default theme's contrast is not theirs).
NEEDS = {
    "blocks": ("gmail-clip", "size", "libero-clip", "a11y-headings"),
    "subject": ("subject-length", "a11y-title", "scaffold-text"),
    "preheader": ("preheader",),
    "lang": ("a11y-lang",),
    "theme": ("a11y-contrast", "style-size", "placeholder-footer"),
    "accept": ("accept",),
}


def _with_columns(findings: list[Finding], issue: Issue, places: Mapping[str, tuple[int, int]]) -> list[Finding]:
    """A finding about a block points at its key: the column of the block that starts on its line."""
    columns = {places[b.path][0]: places[b.path][1] for b in issue.walk() if b.path in places}
    columns.update({places[k][0]: places[k][1] for k in ("subject", "preheader") if k in places})
    return [replace(f, col=columns[f.line]) if f.col == 1 and f.file == issue.shown and f.line in columns else f
            for f in findings]


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
    return findings_from_problems(exc.problems)


def findings_from_problems(problems: Iterable[Problem]) -> list[Finding]:
    return [Finding("error", p.rule, f"{p.path}: {p.message}" if p.path else p.message, p.file, p.line,
                    col=p.col, hint=p.hint) for p in problems]


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
    """Approximate HTML bytes each top-level block adds, biggest first (before CSS inlining).

    One compile, whatever the issue's length: every top-level block's MJML, as the email lays it
    out, with a marker comment before each; a block's size is the HTML between its marker and the next.
    """
    import mjml

    from .render import Context, _body_mjml, _env
    from .theme import load_theme
    env = _env(issue.fields.theme)
    context = Context(issue, load_theme(issue.fields.theme), "https://example.invalid")
    key = f"nl-size-{secrets.token_hex(8)}"  # no text of the issue can hold it
    body = "".join(f"<mj-raw><!--{key}--></mj-raw>{_body_mjml((block,), env, context)}" for block in issue.blocks)
    head = rendered.mjml.partition("<mj-body")[0]
    html = mjml.mjml2html(f"{head}<mj-body>{body}<mj-raw><!--{key}--></mj-raw></mj-body></mjml>")
    parts = html.split(f"<!--{key}-->")[1:-1]
    if len(parts) != len(issue.blocks):  # a marker lost in compiling: say nothing rather than guess
        return []
    sizes = [(block.path, len(part.encode())) for block, part in zip(issue.blocks, parts, strict=True)]
    return sorted(sizes, key=lambda s: -s[1])


def _biggest(issue: Issue, rendered: RenderedIssue) -> str:
    return ", ".join(f"{path} ({size / 1024:.1f} KB)" for path, size in block_sizes(issue, rendered)[:3])


def _envelope(issue: Issue) -> list[Finding]:
    found = []
    if not issue.fields.preheader.strip():
        found.append(Finding("warning", "preheader",
                             "no preheader: inboxes will show the first words of the email instead",
                             issue.shown, 1, ["Gmail", "Outlook", "Apple Mail"]))
    seen = visible(issue.fields.subject)
    if len(seen) > SUBJECT_MAX:
        fields = " (merge fields counted as their defaults)" if seen != issue.fields.subject else ""
        found.append(Finding("warning", "subject-length",
                             f"the subject is {len(seen)} characters{fields}; inboxes cut it near {SUBJECT_MAX}",
                             issue.shown, _line_of(issue, "subject"), ["Gmail", "Outlook", "Apple Mail"]))
    return found


def visible(text: str) -> str:
    """`text` as a reader sees it: each merge field as its default (a name we cannot know: nothing)."""
    def shown(m: re.Match[str]) -> str:
        try:
            return merge.parse_field(m.group(1)).default or ""
        except merge.MergeSyntaxError:
            return m.group()
    return merge.EXPRESSION.sub(shown, text)


def _line_of(issue: Issue, key: str) -> int:
    # The top-level keys' lines are in the source only; a finding names line 1 when it cannot find one.
    try:
        lines = issue.source.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    return next((i for i, line in enumerate(lines, 1) if line.startswith(f"{key}:")), 1)


# --- text that was meant to be replaced ----------------------------------------------------------------

# What `newsletter new` writes for the author to replace (newsletter/scaffold.py; a test keeps them in step).
SCAFFOLD_TEXT = (
    "One line that inboxes show after the subject", "Write your introduction here", "The story itself",
    "A sub-heading", "First story", "Your organisation", "Read the full story on our website",
)
# A theme's stand-in for the sender's details (components/themes/default.yaml): "Example Newsletter",
# "1 Example Street, Exampletown": no real sender is called that.
_EXAMPLE = re.compile(r"\bexample(?:town)?\b", re.I)


def _placeholders(issue: Issue, footer: Footer | None) -> list[Finding]:
    found = [Finding("warning", "scaffold-text", f"{where}: still says {phrase!r}, the example text of "
                     "`newsletter new`; write your own", issue.shown, line, ["all"])
             for text, line, where in _places(issue) for phrase in SCAFFOLD_TEXT if phrase in text]
    if footer is None:
        from .theme import load_theme
        theme = load_theme(issue.fields.theme)
        footer_text = {"organisation": theme.organisation, "postal_address": theme.postal_address}
    else:
        footer_text = {"organisation": footer.organisation, "postal_address": footer.postal_address}
    stand_ins = [f"{name.replace('_', ' ')} {text!r}" for name, text in footer_text.items() if _EXAMPLE.search(text)]
    if stand_ins:
        found.append(Finding(
            "warning", "placeholder-footer",
            f"the footer shows the theme's placeholder {' and '.join(stand_ins)}: set organisation and "
            "postal_address in newsletter.toml (or NEWSLETTER_ORGANISATION and NEWSLETTER_POSTAL_ADDRESS); "
            "readers, and the law, expect the sender's real name and postal address", issue.shown, 1, ["all"]))
    return found


def _places(issue: Issue) -> list[tuple[str, int, str]]:
    """Every string an author wrote, with its line and path."""
    places = [(issue.fields.subject, _line_of(issue, "subject"), "subject"),
              (issue.fields.preheader, _line_of(issue, "preheader"), "preheader")]
    return places + [(s, b.line, b.path) for b in issue.walk() for s in strings_in(_own_fields(b))]
