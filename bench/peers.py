"""Peers the benchmarks share: a free loopback port, a throwaway PostgreSQL schema."""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

# Signs the links of benchmark messages only; long and varied enough for `newsletter`'s secret rule.
BENCH_SECRET = "bench-only-7c1e9a3f5b2d4068-not-a-real-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url() -> str:
    """The PostgreSQL server to measure on: NEWSLETTER_BENCH_PG_URL, else the tests' (NEWSLETTER_TEST_PG_URL,
    default the local one); pg_schema says so and skips when it does not answer."""
    return os.environ.get("NEWSLETTER_BENCH_PG_URL") or os.environ.get(
        "NEWSLETTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema(url: str) -> Iterator[str | None]:
    """A URL into a new, empty schema of the server at `url`, dropped afterwards; None (said why) if unreachable."""
    from sqlalchemy import create_engine, text
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 (a benchmark: report and go on)
        print(f"PostgreSQL skipped: {exc}")
        admin.dispose()
        yield None
        return
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
