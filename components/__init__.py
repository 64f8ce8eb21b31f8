"""Pure rendering: issue model and validation, block registry, Jinja + MJML templates.

Imports nothing from subscribers/, mailer/ or newsletter/.
"""
from .errors import ComponentError, IssueInvalid, Problem, RenderError, ThemeError
from .lint import Finding, check_issue, findings_from_invalid
from .merge import MergeField, fields_in, substitute
from .model import Block, Issue
from .registry import components
from .render import Footer, RenderedIssue, clear_template_cache, render_issue
from .theme import Theme, load_theme, theme_names
from .validate import load_issue

__all__ = [
    "Block", "ComponentError", "Finding", "Footer", "Issue", "IssueInvalid", "MergeField", "Problem",
    "RenderError", "RenderedIssue", "Theme", "ThemeError", "check_issue", "clear_template_cache",
    "components", "fields_in", "findings_from_invalid", "load_issue", "load_theme", "render_issue",
    "substitute", "theme_names",
]
