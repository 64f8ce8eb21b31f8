"""One-off messages to one person (the sign-up confirmation), in the theme of the newsletter.

Rendered through the same MJML and premailer steps as an issue, but per
request: sign-ups are rare and rate-limited, and the confirmation link is
baked in, so no merge fields are left for the mailer.

Nothing a stranger typed into the form goes into it but the address it is sent
to: a "name" like "URGENT: your account is locked, restore it at https://…"
would otherwise be mailed from the organisation to whoever that address is.
"""
from __future__ import annotations

from .inline import inline_css
from .plaintext import wrap_lines
from .render import Footer, RenderedIssue, _compile, _env
from .theme import load_theme


def render_confirmation(*, list_title: str, email: str, confirm_url: str, theme: str = "default",
                        footer: Footer | None = None, lang: str = "en") -> RenderedIssue:
    """The double opt-in email: one button that confirms the subscription; it greets nobody by name."""
    loaded = load_theme(theme)
    subject = f"Please confirm your subscription to {list_title}"
    page = {"t": loaded, "c": loaded.colors, "lang": lang, "subject": subject, "list_title": list_title,
            "email": email, "confirm_url": confirm_url,
            "footer": footer or Footer(loaded.organisation, loaded.postal_address, loaded.reason)}
    env = _env(loaded.name)
    html = inline_css(_compile(env.get_template("messages/confirm.mjml.j2").render(**page)), "")
    text = wrap_lines(env.get_template("messages/confirm.txt.j2").render(**page))
    # Braces in a name or title must not look like merge fields to the mailer.
    return RenderedIssue(slug="confirm", subject=subject.replace("{{", "{ {"), preheader="",
                         html=html.replace("{{", "{&#123;"), text=text.replace("{{", "{ {"),
                         web_html="", assets={}, mjml="", merge_fields=())

