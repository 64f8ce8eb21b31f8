"""`newsletter build`: render an issue and write its folder, all or nothing."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from components import Issue, RenderedIssue, load_issue, render_issue

from . import wiring
from .config import Settings


def render_configured(issue: Issue, settings: Settings, base_url: str | None = None) -> RenderedIssue:
    """Render as configured: the settings' base URL (unless given) and footer."""
    footer = wiring.footer(settings, issue.fields.theme)
    return render_issue(issue, base_url=base_url or settings.base_url, footer=footer)


def render(issue_path: Path, settings: Settings) -> RenderedIssue:
    return render_configured(load_issue(issue_path), settings)


def write_build(rendered: RenderedIssue, out: Path) -> Path:
    """Write DIR/<slug>/ (email.html, email.txt, index.html, images); replace it atomically.

    Files are written to a temporary folder beside the target and renamed
    into place, so a failure never leaves a half-written build.
    """
    out.mkdir(parents=True, exist_ok=True)
    target = out / rendered.slug
    staging = Path(tempfile.mkdtemp(prefix=f".{rendered.slug}-", dir=out))
    try:
        (staging / "email.html").write_text(rendered.html, "utf-8")
        (staging / "email.txt").write_text(rendered.text, "utf-8")
        (staging / "index.html").write_text(rendered.web_html, "utf-8")
        (staging / "subject.txt").write_text(rendered.subject + "\n", "utf-8")
        for name, source in rendered.assets.items():
            dest = staging / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        old = None
        if target.exists():
            old = out / f".{rendered.slug}-old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def build(issue_path: Path, out: Path, settings: Settings) -> tuple[RenderedIssue, Path]:
    rendered = render(issue_path, settings)
    return rendered, write_build(rendered, out)
