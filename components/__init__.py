"""Pure rendering: issue model and validation, block registry, Jinja + MJML templates.

Imports nothing from subscribers/, mailer/ or newsletter/.
"""
from .errors import ComponentError, IssueInvalid, Problem, RenderError, ThemeError
from .merge import MergeField, fields_in, substitute
from .model import Block, Issue
from .registry import components
from .render import Footer, RenderedIssue, render_issue
from .theme import Theme, load_theme, theme_names
from .validate import load_issue

__all__ = [
    "Block", "ComponentError", "Footer", "Issue", "IssueInvalid", "MergeField", "Problem",
    "RenderError", "RenderedIssue", "Theme", "ThemeError", "components", "fields_in",
    "load_issue", "load_theme", "render_issue", "substitute", "theme_names",
]
