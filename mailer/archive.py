"""The public archive: an issue is published when a send of it starts.

The subject is stored with its merge fields resolved to their defaults, like
the web version: nothing personal is ever archived.
"""
from __future__ import annotations

import datetime as dt
import mimetypes
from dataclasses import dataclass

from sqlalchemy import delete, select

from components import RenderedIssue, substitute
from subscribers import Database, as_utc

from .schema import archive, archive_assets


@dataclass(frozen=True)
class ArchivedIssue:
    slug: str
    subject: str
    preheader: str
    published_at: dt.datetime


def publish(db: Database, rendered: RenderedIssue) -> None:
    """Store (or refresh, while it is being sent again) the issue's web version and images."""
    subject = substitute(rendered.subject, {}, escape=False)
    assets = [{"slug": rendered.slug, "name": name, "data": path.read_bytes(),
               "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream"}
              for name, path in sorted(rendered.assets.items())]
    with db.begin() as conn:
        known = conn.execute(select(archive.c.published_at).where(archive.c.slug == rendered.slug)).scalar()
        conn.execute(delete(archive_assets).where(archive_assets.c.slug == rendered.slug))
        conn.execute(delete(archive).where(archive.c.slug == rendered.slug))
        conn.execute(archive.insert().values(
            slug=rendered.slug, subject=subject, preheader=rendered.preheader, web_html=rendered.web_html,
            published_at=known or dt.datetime.now(dt.UTC)))
        if assets:
            conn.execute(archive_assets.insert(), assets)


def archived_issues(db: Database) -> list[ArchivedIssue]:
    """Newest first."""
    with db.begin() as conn:
        rows = conn.execute(select(archive.c.slug, archive.c.subject, archive.c.preheader, archive.c.published_at)
                            .order_by(archive.c.published_at.desc(), archive.c.slug.desc()))
        return [ArchivedIssue(r.slug, r.subject, r.preheader, as_utc(r.published_at)) for r in rows]


def archived_page(db: Database, slug: str) -> str | None:
    with db.begin() as conn:
        return conn.execute(select(archive.c.web_html).where(archive.c.slug == slug)).scalar()


def archived_asset(db: Database, slug: str, name: str) -> tuple[str, bytes] | None:
    with db.begin() as conn:
        row = conn.execute(select(archive_assets.c.content_type, archive_assets.c.data).where(
            archive_assets.c.slug == slug, archive_assets.c.name == name)).first()
        return (row.content_type, bytes(row.data)) if row else None

