"""The issue files the console shows: found by listing issues/, checked and previewed once per version.

A name from a URL never becomes a path: it is looked up among the names of the
*.yaml files directly in issues/ (of the serve process's working folder, as the
CLI reads them), and anything else is not found. Check results and previews
are kept in process memory per file and per version of its sources (the file,
its images folder, the templates and themes), so pages stay fast and an edit
shows at the next request.
"""
from __future__ import annotations

import base64
import datetime as dt
import mimetypes
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import Settings

FOLDER = "issues"
SHOWN_ERRORS = 200  # findings kept per file: a broken file can have thousands


def folder() -> Path:
    return Path(FOLDER).resolve()


def issue_files(root: Path | None = None) -> dict[str, Path]:
    """slug -> issues/<slug>.yaml, for the regular files directly in the folder, sorted by slug."""
    root = root or folder()
    if not root.is_dir():
        return {}
    return {p.stem: p for p in sorted(root.glob("*.yaml")) if p.is_file()}


def find_issue(slug: str, root: Path | None = None) -> Path | None:
    """The file of exactly this slug, or None: the name is compared, never joined to a path."""
    return issue_files(root).get(slug)


@dataclass(frozen=True)
class Checked:
    """One issue file as the list and its page show it."""

    slug: str
    file: str  # its name in issues/
    subject: str
    date: dt.date | None
    findings: list[Any] = field(default_factory=list)  # components.Finding, errors first

    @property
    def errors(self) -> int:
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level != "error" for f in self.findings)


class _Cache:
    """The last value per file, with the version of the sources it was made from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], tuple[str, Any]] = {}

    def get(self, kind: str, path: Path, make: Any) -> Any:
        from ...preview import fingerprint
        version = fingerprint(path)
        key = (kind, str(path))
        with self._lock:
            found = self._values.get(key)
        if found is not None and found[0] == version:
            return found[1]
        value = make()  # outside the lock: two first requests may both build; both get a right answer
        with self._lock:
            self._values[key] = (version, value)
        return value


_cache = _Cache()


def checked(path: Path, settings: Settings) -> Checked:
    """The file's subject, date and every finding of `newsletter check` (cached per version)."""
    return _cache.get("check", path, lambda: _check(path, settings))  # type: ignore[no-any-return]


def _check(path: Path, settings: Settings) -> Checked:
    from components import ComponentError, Finding, read_issue

    from ...check import check_file
    try:
        reading = read_issue(path)
        findings = check_file(path, settings)
    except (ComponentError, OSError) as exc:  # what `check` would print as its one error
        return Checked(path.stem, path.name, "", None, [Finding("error", "unreadable", str(exc), path.name, 1)])
    fields = reading.issue.fields if reading.issue is not None else None
    return Checked(path.stem, path.name, fields.subject if fields else "", fields.date if fields else None,
                   findings[:SHOWN_ERRORS])


def preview(path: Path, settings: Settings) -> str:
    """The email's HTML as a reader sees it (sample merge values), its images inlined as data: URLs.

    The preview frame is sandboxed (an opaque origin that carries no session cookie), so the
    images cannot come from a console route; a published issue's images are on the archive only.
    """
    return _cache.get("preview", path, lambda: _preview(path, settings))  # type: ignore[no-any-return]


def _preview(path: Path, settings: Settings) -> str:
    from components import load_issue

    from ...build import render_configured
    from ...preview import preview_html
    rendered = render_configured(load_issue(path), settings)
    html = preview_html(rendered)
    web_url = f"{settings.base_url.rstrip('/')}/archive/{rendered.slug}/"
    for name, source in rendered.assets.items():
        html = html.replace(f"{web_url}{name}", _data_url(name, source))
    return html


def _data_url(name: str, source: Path) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(source.read_bytes()).decode('ascii')}"
