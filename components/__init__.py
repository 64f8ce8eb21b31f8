"""Pure rendering: issue model and validation, block registry, Jinja + MJML templates.

Imports nothing from subscribers/, mailer/ or newsletter/. The public names
below load their module on first use (PEP 562), so `components.errors` alone
stays cheap for commands that never render.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ComponentError": ".errors", "IssueInvalid": ".errors", "Problem": ".errors", "RenderError": ".errors",
    "ThemeError": ".errors",
    "Finding": ".lint", "check_issue": ".lint", "findings_from_invalid": ".lint", "findings_from_problems": ".lint",
    "MergeField": ".merge", "compile_template": ".merge", "fields_in": ".merge", "fill": ".merge",
    "substitute": ".merge",
    "Block": ".model", "Issue": ".model",
    "components": ".registry",
    "Footer": ".render", "RenderedIssue": ".render", "clear_template_cache": ".render", "render_issue": ".render",
    "Theme": ".theme", "load_theme": ".theme", "theme_names": ".theme",
    "Reading": ".validate", "load_issue": ".validate", "read_issue": ".validate",
    "render_confirmation": ".transactional",
    "SupportIssue": ".support", "check_support": ".support",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'components' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .errors import ComponentError, IssueInvalid, Problem, RenderError, ThemeError
    from .lint import Finding, check_issue, findings_from_invalid, findings_from_problems
    from .merge import MergeField, compile_template, fields_in, fill, substitute
    from .model import Block, Issue
    from .registry import components
    from .render import Footer, RenderedIssue, clear_template_cache, render_issue
    from .support import SupportIssue, check_support
    from .theme import Theme, load_theme, theme_names
    from .transactional import render_confirmation
    from .validate import Reading, load_issue, read_issue
