"""`make bench`: the console's Subscribers pages and Dashboard on a 1,000,000-subscriber database.

Prints; asserts nothing. Usage: bench_console.py [--subscribers N] [--rounds R] [--pg [URL]]
The database has the real schema (migrated by open_database), filled with plain executemany (SQLite)
or COPY (PostgreSQL): lists `big` (every subscriber; 2 % unsubscribed, 1 % unconfirmed), `small` (one
in 1,000) and `other`; 0.5 % suppressed; one finished send to `big` with its million ledger rows; a
delivery event for 1 % of them. The SQLite file is cached under /tmp/bench_console (rebuilt when
the migrations change); PostgreSQL is filled into a throwaway schema (and ANALYZEd, as autovacuum
would after a load). Then the real app (create_app) runs under uvicorn on a loopback port, a user
signs in through the login form, and each kind of page is fetched R times over one keep-alive
connection: median and max milliseconds, and the rows the page showed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from peers import BENCH_SECRET, free_port, pg_schema, pg_url

CACHE = Path("/tmp/bench_console")
# The data's version: a cached file of another is rebuilt (v2: suppressions keep the address, as bounces do).
DATA = "v2"
PASSWORD = "bench-console-password-4Kq"
ADMIN = "bench-admin@example.org"
FIRST = ["maria", "john", "anna", "mohammed", "olivia", "james", "sofia", "lucas", "emma", "noah", "zofia", "amir",
         "grace", "oliver", "priya", "liam", "chloe", "jack", "aisha", "leo"]
LAST = ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "patel", "wright", "khan",
        "walker", "thompson", "white", "hughes", "edwards", "green", "hall", "wood", "harris"]
DOMAINS = ["example.org", "example.com", "mail.example.net", "lancs.example.org", "bücher.example"]
ROW = re.compile(r'href="/admin/subscribers/(\d+)"')


def address(i: int) -> str:
    """Deterministic, varied addresses: maria.smith123456@example.org, … (IDN domains in punycode, as stored)."""
    rng = random.Random(i)
    domain = DOMAINS[i % len(DOMAINS)].replace("bücher", "xn--bcher-kva")
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{i}@{domain}"


def status(i: int) -> str:
    return "unsubscribed" if i % 50 == 0 else "unconfirmed" if i % 100 == 1 else "subscribed"


def rows(n: int) -> dict[str, Any]:
    """Every table's rows as tuples, generated lazily per table (ids 1..n)."""
    from subscribers import address_hash
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    emails = [address(i) for i in range(1, n + 1)]
    return {
        "now": now,
        "subscribers": lambda: ((i, e, e.lower(), f"Person {i}", "{}", now, now) for i, e in enumerate(emails, 1)),
        "memberships": lambda: [(1, i, status(i), "import", now, now, now) for i in range(1, n + 1)]
        + [(2, i, "subscribed", "import", now, now, now) for i in range(1, n + 1, 1000)],
        "suppressions": lambda: ((address_hash(emails[i - 1].lower()), emails[i - 1], "bounced (bench)", "bounce", now)
                                 for i in range(7, n + 1, 200)),
        "deliveries": lambda: ((1, i, "sent", f"bench-{i:07d}", 1, now, now) for i in range(1, n + 1)),
        "events": lambda: ((f"bench-{i}", "delivery", address_hash(emails[i - 1].lower()), "{}", f"bench-{i:07d}", 1,
                            i, now, now, "bench") for i in range(3, n + 1, 100)),
    }


COLUMNS = {
    "subscribers": "id, email, email_key, name, fields, created_at, updated_at",
    "memberships": "list_id, subscriber_id, status, source, subscribed_at, confirmed_at, updated_at",
    "suppressions": "email_hash, email, reason, source, created_at",
    "deliveries": "send_id, subscriber_id, state, message_id, attempts, updated_at, sent_at",
    "events": "key, kind, email_hash, detail, message_id, send_id, delivery_id, occurred_at, received_at, source",
}


def migrated(url: str) -> Any:
    import mailer
    from subscribers import create_list, open_database
    db = open_database(url, extra_migrations=(mailer.MIGRATIONS,))
    for name in ("big", "small", "other"):
        create_list(db, name, f"Bench {name}")
    return db


def send_row(now: dt.datetime) -> tuple[Any, ...]:
    return (1, "2026-01", 1, "big", "Bench", "finished", now, now, "", True)


SEND_COLUMNS = "id, issue, list_id, list_name, subject, state, created_at, finished_at, segment, frozen"


def build_sqlite(path: Path, n: int) -> None:
    import sqlite3
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    migrated(f"sqlite:///{path}").dispose()
    data = rows(n)
    sqlite3.register_adapter(dt.datetime, lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.execute(f"INSERT INTO sends ({SEND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", send_row(data["now"]))
    for table, columns in COLUMNS.items():
        marks = ", ".join("?" for _ in columns.split(","))
        conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", data[table]())
    conn.execute("COMMIT")
    conn.close()
    size = path.stat().st_size / 1e6
    print(f"built {path} ({n:,} subscribers, {size:.0f} MB) in {time.perf_counter() - start:.0f} s")


def build_pg(url: str, n: int) -> Any:
    start = time.perf_counter()
    db = migrated(url)
    data = rows(n)
    with db.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(f"INSERT INTO sends ({SEND_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        send_row(data["now"]))
            for table, columns in COLUMNS.items():
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in data[table]():
                        copy.write_row(row)
            for table in ("subscribers", "sends"):  # ids were given: the sequences move on past them
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        raw.autocommit = True
        with raw.cursor() as cur:
            cur.execute("ANALYZE")
        raw.autocommit = False
    print(f"built the PostgreSQL schema ({n:,} subscribers) in {time.perf_counter() - start:.0f} s")
    return db


class Browser:
    """One signed-in keep-alive connection to the app."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = urlencode({"email": ADMIN, "password": PASSWORD})
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, headers, _ = self.request("POST", "/admin/login", body, form)
        found = re.search(r"newsletter_session=([^;]+)", headers.get("set-cookie", ""))
        if status != 303 or not found:
            raise SystemExit(f"could not sign in ({status})")
        self.cookie = found.group(1)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.headers, response.read().decode("utf-8", "replace")

    def get(self, path: str) -> tuple[float, int, str]:
        start = time.perf_counter()
        status, _, text = self.request("GET", path, headers={"Cookie": f"newsletter_session={self.cookie}"})
        elapsed = time.perf_counter() - start
        if status != 200:
            raise SystemExit(f"GET {path}: {status}\n{text[:400]}")
        return elapsed, len(ROW.findall(text)), text


def serve(db: Any, url: str) -> tuple[Any, int]:
    import uvicorn

    from newsletter.config import Settings
    from newsletter.web.app import create_app
    from subscribers import UserExists, add_user
    try:
        add_user(db, ADMIN, "admin", PASSWORD)
    except UserExists:
        pass
    port = free_port()
    settings = Settings(database_url=url, secret=BENCH_SECRET, from_address="Bench <bench@example.org>",
                        base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db=db), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


def kinds(n: int, rng: random.Random) -> list[tuple[str, Any]]:
    """(label, a function of the round giving a path)."""
    deep = lambda: rng.randrange(n // 10, n)  # noqa: E731 - a cursor somewhere in the list
    someone = lambda: rng.randrange(1, n + 1)  # noqa: E731
    prefix = lambda: address(someone())[: rng.randrange(2, 7)]  # noqa: E731
    # A cursor inside its search, as a Next link carries: the person's own address starts with the prefix.
    within = lambda i: f"/admin/subscribers?q={quote(address(i)[:3])}&after={i}"  # noqa: E731
    return [
        ("everyone, first page", lambda: "/admin/subscribers"),
        ("list big, first page", lambda: "/admin/subscribers?list=big"),
        ("list big, a later page (after=)", lambda: f"/admin/subscribers?list=big&after={deep()}"),
        ("list big, a previous page (before=)", lambda: f"/admin/subscribers?list=big&before={deep()}"),
        ("list big, unsubscribed, later page",
         lambda: f"/admin/subscribers?list=big&status=unsubscribed&after={deep()}"),
        ("list small (1 in 1,000), first page", lambda: "/admin/subscribers?list=small"),
        ("list small, unconfirmed (none)", lambda: "/admin/subscribers?list=small&status=unconfirmed"),
        ("all lists, unsubscribed", lambda: "/admin/subscribers?status=unsubscribed"),
        ("search: 2-6 character prefix", lambda: f"/admin/subscribers?q={quote(prefix())}"),
        ("search: a whole address", lambda: f"/admin/subscribers?q={quote(address(someone()))}"),
        ("search: prefix, a later page (after=)", lambda: within(someone())),
        ("search: 2-char prefix in list small", lambda: f"/admin/subscribers?q={quote(prefix()[:2])}&list=small"),
        ("search: an IDN domain in Unicode",
         lambda: "/admin/subscribers?q=" + quote(address(4).split("@")[0] + "@bücher")),
        ("a person's page", lambda: f"/admin/subscribers/{someone()}"),
        ("dashboard (list_lists over all)", lambda: "/admin/"),
        ("lists", lambda: "/admin/lists"),
        ("list big's page", lambda: "/admin/lists/big"),
        ("sends", lambda: "/admin/sends"),
        ("send 1 (a million ledger rows)", lambda: "/admin/sends/1"),
        ("suppressions, first page", lambda: "/admin/suppressions"),
        ("import form", lambda: "/admin/import"),
        ("audit log", lambda: "/admin/audit"),
    ]


def measure(label: str, url: str, db: Any, n: int, rounds: int) -> None:
    server, port = serve(db, url)
    try:
        browser = Browser(port)
        rng = random.Random(42)
        print(f"\n{label}: {n:,} subscribers, {rounds} requests per kind (ms; the target is < 200)")
        print(f"  {'page':<40} {'median':>8} {'max':>8}  rows")
        for name, path_of in kinds(n, rng):
            times, shown = [], []
            browser.get(path_of())  # warm: the first request of a kind compiles its statements
            for _ in range(rounds if name.startswith(("everyone", "list ", "all", "search", "a person")) else
                           max(3, rounds // 4)):
                elapsed, count, _ = browser.get(path_of())
                times.append(elapsed * 1000)
                shown.append(count)
            print(f"  {name:<40} {statistics.median(times):>8.1f} {max(times):>8.1f}  "
                  f"{min(shown)}-{max(shown)}")
    finally:
        server.should_exit = True


def main() -> None:
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pg", nargs="?", const=pg_url(), default=None,
                        help="also on PostgreSQL (default server: the tests')")
    args = parser.parse_args()
    import mailer
    from subscribers import open_database
    from subscribers.db import head_revisions
    probe = open_database("sqlite://", migrate=False, extra_migrations=(mailer.MIGRATIONS,))
    heads = "-".join(sorted(head_revisions(probe)))
    path = CACHE / f"console-{args.subscribers}-{heads}-{DATA}.db"
    if not path.exists():
        build_sqlite(path, args.subscribers)
    else:
        print(f"using the cached {path}")
    db = open_database(f"sqlite:///{path}", extra_migrations=(mailer.MIGRATIONS,))
    measure("SQLite", f"sqlite:///{path}", db, args.subscribers, args.rounds)
    db.dispose()
    if args.pg:
        with pg_schema(args.pg) as url:
            if url is not None:
                pg = build_pg(url, args.subscribers)
                measure("PostgreSQL", url, pg, args.subscribers, args.rounds)
                pg.dispose()


if __name__ == "__main__":
    main()
