"""`newsletter new SLUG`: start a new issue from a commented skeleton."""
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


def new_issue(slug: str, folder: Path = Path("issues"), today: dt.date | None = None) -> Path:
    if not SLUG.match(slug):
        raise NewsletterError(f"{slug!r} is not a valid slug: use lower-case letters, digits and dashes (e.g. 2021-01)")
    path = folder / f"{slug}.yaml"
    if path.exists():
        raise NewsletterError(f"{path} already exists; pick another slug or edit it")
    today = today or dt.date.today()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / slug / "images").mkdir(parents=True, exist_ok=True)
    text = SKELETON.format(path=path, title="Our newsletter", date=today.isoformat(), month=today.strftime("%B %Y"))
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(text)
    return path
