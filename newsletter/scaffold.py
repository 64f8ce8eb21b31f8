"""`newsletter new SLUG`: start a new issue from a commented skeleton.

Its example texts are what `check` warns about while they are left in
(components.lint.SCAFFOLD_TEXT; tests/test_authoring.py keeps the two in step).
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from .errors import NewsletterError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

SKELETON = """\
# A newsletter issue. Each block is a one-key mapping naming a component:
# masthead, text (Markdown), heading, contents, section, image, gallery,
# callout, quote, stats, button, divider, contact. Check it with
#   newsletter check {path}
# and see it with
#   newsletter preview {path}
subject: "{title}"
preheader: "One line that inboxes show after the subject"
date: {date}
theme: default
blocks:
  - masthead: {{title: "{title}", subtitle: "{month}"}}
  - text: |
      Hello {{{{ first_name | default("there") }}}},

      Write your introduction here. **Markdown** works: lists, links, emphasis.
  - contents: {{title: Contents}}
  - section:
      title: First story
      blocks:
        - heading: A sub-heading
        - text: |
            The story itself.
        - button: {{label: "Read the full story on our website", url: "https://example.org/"}}
  - contact:
      name: Your organisation
      email: hello@example.org
      website: https://example.org/
"""


# A slug that starts with a month (2024-05) or a day (2024-05-14) dates the issue.
_DATED = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?(?:-|$)")


def issue_date(slug: str, today: dt.date | None = None) -> dt.date:
    """The date a slug names (`2024-05` -> 2024-05-01), else today."""
    dated = _DATED.match(slug)
    if dated:
        try:
            return dt.date(int(dated["year"]), int(dated["month"]), int(dated["day"] or 1))
        except ValueError:  # 2024-13: a name, not a date
            pass
    return today or dt.date.today()


def new_issue(slug: str, folder: Path = Path("issues"), today: dt.date | None = None) -> Path:
    if not SLUG.match(slug):
        raise NewsletterError(f"{slug!r} is not a valid slug: use lower-case letters, digits and dashes (e.g. 2021-01)")
    path = folder / f"{slug}.yaml"
    if path.exists():
        raise NewsletterError(f"{path} already exists; pick another slug or edit it")
    date = issue_date(slug, today)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / slug / "images").mkdir(parents=True, exist_ok=True)
    text = SKELETON.format(path=path, title="Our newsletter", date=date.isoformat(), month=date.strftime("%B %Y"))
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(text)
    return path
