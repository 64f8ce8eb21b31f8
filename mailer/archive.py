"""The public archive: an issue is published when a send of it starts.

The subject is stored with its merge fields resolved to their defaults, like
the web version: nothing personal is ever archived. A slug's archive holds the
content first sent under it: another file with the same slug (a draft) never
overwrites it, and several senders starting at once publish it once.
"""
from __future__ import annotations

import datetime as dt
import mimetypes
from dataclasses import dataclass

from sqlalchemy import select

from components import RenderedIssue, substitute
from subscribers import Database, as_utc, insert_new_only

from .errors import ArchiveConflict
from .schema import archive, archive_assets


@dataclass(frozen=True)
class ArchivedIssue:
    slug: str
    subject: str
    preheader: str
    published_at: dt.datetime


def archive_conflict(db: Database, slug: str, content: str) -> str | None:
    """Why publishing this content under `slug` is refused (other content is there), or None."""
    with db.begin(read_only=True) as conn:
        row = conn.execute(select(archive.c.content_hash, archive.c.published_at)
                           .where(archive.c.slug == slug)).first()
    if row is None or row.content_hash in (None, content):
        return None
    return (f"the archive already holds a different issue under the slug {slug!r} (published "
            f"{as_utc(row.published_at):%Y-%m-%d %H:%M} UTC); this file builds other content. "
            "Give it its own file name (the slug is the file name), or send with --force "
            "(the archive keeps the version first published)")


def publish(db: Database, rendered: RenderedIssue, content: str | None = None, *, force: bool = False) -> bool:
    """Store the issue's web version and images once; True when this call published them.

    Raises ArchiveConflict when other content is archived under the slug, unless
    `force` (then the archive keeps what it has).
    """
    if content is not None and (conflict := archive_conflict(db, rendered.slug, content)):
        if not force:
            raise ArchiveConflict(conflict)
        return False
    subject = substitute(rendered.subject, {}, escape=False)
    assets = [{"slug": rendered.slug, "name": name, "data": path.read_bytes(),
               "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream"}
              for name, path in sorted(rendered.assets.items())]
    with db.begin() as conn:
        # Concurrent starts: the database decides who publishes; the others find it there.
        won = conn.execute(insert_new_only(conn.dialect.name, archive, "slug", returning="slug"), dict(
            slug=rendered.slug, subject=subject, preheader=rendered.preheader, web_html=rendered.web_html,
            published_at=dt.datetime.now(dt.UTC), content_hash=content)).first() is not None
        if won and assets:
            conn.execute(archive_assets.insert(), assets)
        elif not won and content is not None:  # archived before content was recorded (round 1): record it
            conn.execute(archive.update().where(archive.c.slug == rendered.slug, archive.c.content_hash.is_(None))
                         .values(content_hash=content))
        return won


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
