"""Themes: colours, fonts and footer text, one YAML file per theme.

A theme may also carry a folder of templates (components/themes/<name>/)
that override the built-in ones of the same name.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ThemeError

THEMES_DIR = Path(__file__).parent / "themes"


class Palette(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body_bg: str
    content_bg: str
    text: str
    muted: str
    heading: str
    link: str
    primary: str  # masthead and buttons
    on_primary: str
    accent: str  # section rule, stat figures, quote border
    panel: str  # callout and stat background
    on_panel: str
    rule: str


class Theme(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    font: str
    heading_font: str
    colors: Palette
    # Dark mode: what clients that honour prefers-color-scheme (Apple Mail, Outlook's
    # apps through [data-ogsc]) show. Without it the email declares itself light-only.
    colors_dark: Palette | None = None
    organisation: str
    postal_address: str
    reason: str  # why the reader gets this email

    @property
    def templates_dir(self) -> Path | None:
        folder = THEMES_DIR / self.name
        return folder if folder.is_dir() else None


def theme_names() -> list[str]:
    return sorted(p.stem for p in THEMES_DIR.glob("*.yaml"))


@lru_cache(maxsize=8)
def load_theme(name: str) -> Theme:
    path = THEMES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ThemeError(f"unknown theme {name!r} (known: {', '.join(theme_names())})")
    try:
        return Theme.model_validate({"name": name, **yaml.safe_load(path.read_text("utf-8"))})
    except (ValidationError, yaml.YAMLError, TypeError) as exc:
        raise ThemeError(f"theme {name!r} is malformed: {exc}") from None
