"""`make bench`: RFC 8058 one-click unsubscribes against a real `newsletter serve`.

Prints; asserts nothing. Usage: bench_web.py [--subscribers N] [--concurrency C]
Set up with the real command line (lists create, subscribers import of a generated CSV,
send issues/2021-01.yaml through the file transport), then every List-Unsubscribe URL of
the outbox is POSTed `List-Unsubscribe=One-Click` at once by C threads, each with its own
keep-alive http.client connection. Then: were they all recorded exactly once (report,
export and the database agree), and does a second round change nothing (idempotent)?
Each answer is tallied by status and page heading; a request on a keep-alive connection the
server had closed is sent once more on a new one (counted as reconnects).
On SQLite in a temporary folder, and on PostgreSQL too when NEWSLETTER_BENCH_PG_URL is set.
"""
from __future__ import annotations

import argparse
import csv
import email.parser
import email.policy
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from peers import BENCH_SECRET, free_port, pg_schema

ROOT = Path(__file__).resolve().parent.parent
ISSUE = ROOT / "issues" / "2021-01.yaml"
SLUG, LIST = "2021-01", "bench"
NEWSLETTER = Path(sys.executable).parent / "newsletter"
BODY = b"List-Unsubscribe=One-Click"
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([str(NEWSLETTER), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"newsletter {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def unsubscribe_urls(outbox: Path) -> list[str]:
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    urls = []
    for path in sorted((outbox / f"{SLUG}_{LIST}").glob("*.eml")):
        found = re.search(r"<(https?://[^>]+)>", str(parser.parsebytes(path.read_bytes())["List-Unsubscribe"]))
        if found:
            urls.append(found.group(1))
    return urls


@dataclass
class Round:
    latencies: list[float] = field(default_factory=list)  # seconds, successful exchanges
    statuses: dict[int, int] = field(default_factory=dict)  # status -> count; 0 = no answer (connection error)
    errors: dict[str, int] = field(default_factory=dict)  # exception name -> count, for the 0s
    answers: dict[tuple[int, str], int] = field(default_factory=dict)  # (status, <h1>) -> count
    reconnects: int = 0  # keep-alive connections the server had closed (the request was sent again)
    wall: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def not_ok(self) -> int:
        return self.count - self.statuses.get(200, 0)

    def line(self) -> str:
        failed = f" (0 = no answer: {self.errors})" if self.errors else ""
        return (f"{self.count / self.wall:6,.0f} requests/s  p50 {self.ms(0.50):6.1f} ms  p99 {self.ms(0.99):6.1f} ms"
                f"  non-200 {self.not_ok}  statuses {dict(sorted(self.statuses.items()))}{failed}"
                f"  reconnects {self.reconnects}\n{'':<10}   answers: "
                + "; ".join(f"{status} {h1 or '(no h1)'!r} x{n}" for (status, h1), n in sorted(self.answers.items())))

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def exchange(connection: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    """(status, the page's <h1>)"""
    connection.request("POST", path, body=BODY, headers=HEADERS)
    response = connection.getresponse()
    found = re.search(rb"<h1>(.*?)</h1>", response.read())
    return response.status, found.group(1).decode() if found else ""


def hammer(base: str, paths: list[str], concurrency: int) -> Round:
    """POST the one-click body to every path, `concurrency` threads with one keep-alive connection each."""
    host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 80
    result = Round()
    start_line = threading.Barrier(concurrency + 1)

    def worker(share: list[str]) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        mine: list[float] = []
        statuses: dict[int, int] = {}
        answers: dict[tuple[int, str], int] = {}
        errors: dict[str, int] = {}
        reconnects = 0
        start_line.wait()
        for path in share:
            began = time.perf_counter()
            try:
                try:
                    status, h1 = exchange(connection, path)
                except STALE:  # the server closed this keep-alive connection after its last answer: once more
                    reconnects += 1
                    connection.close()  # http.client opens a new one on the next request
                    status, h1 = exchange(connection, path)
                answers[status, h1] = answers.get((status, h1), 0) + 1
                mine.append(time.perf_counter() - began)
            except (OSError, http.client.HTTPException) as exc:
                status = 0
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection.close()
            statuses[status] = statuses.get(status, 0) + 1
        connection.close()
        with result.lock:
            result.latencies.extend(mine)
            result.reconnects += reconnects
            for answer, n in answers.items():
                result.answers[answer] = result.answers.get(answer, 0) + n
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n
            for name, n in errors.items():
                result.errors[name] = result.errors.get(name, 0) + n

    threads = [threading.Thread(target=worker, args=(paths[i::concurrency],)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.wall = time.perf_counter() - began
    return result


def recorded(env: dict[str, str], cwd: Path, database_url: str) -> dict[str, int]:
    """What the report, the export and the database say was recorded."""
    from sqlalchemy import create_engine, text
    rows = json.loads(cli(env, cwd, "report", SLUG, "--json"))
    exported = list(csv.DictReader(io.StringIO(cli(env, cwd, "subscribers", "export", "--list", LIST))))
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            events, distinct = conn.execute(text(
                "SELECT count(*), count(DISTINCT delivery_id) FROM events WHERE kind = 'unsubscribe'")).one()
            members = conn.execute(text("SELECT count(*) FROM memberships WHERE status = 'unsubscribed'")).scalar()
    finally:
        engine.dispose()
    return {"report": sum(int(r["unsubscribed"]) for r in rows),
            "export": sum(1 for r in exported if r["status"] == "unsubscribed"),
            "memberships": int(members or 0), "events": int(events), "events_distinct": int(distinct)}


def wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"newsletter serve exited {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"newsletter serve did not answer {url}/healthz within {timeout:.0f} s")


def run(label: str, database_url: str, n: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "AWS_"))}
        env.update(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_TRANSPORT="file",
                   NEWSLETTER_OUTBOX=str(folder / "outbox"), NEWSLETTER_BASE_URL=url,
                   NEWSLETTER_FROM="Bench News <news@example.org>", NEWSLETTER_SECRET=BENCH_SECRET)
        with (folder / "people.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["email", "first_name"])
            writer.writerows([f"reader{i:05d}@example.org", f"Reader{i}"] for i in range(n))
        began = time.perf_counter()
        cli(env, folder, "lists", "create", LIST, "--title", "Bench News")
        cli(env, folder, "subscribers", "import", str(folder / "people.csv"), "--list", LIST)
        cli(env, folder, "send", str(ISSUE), "--list", LIST, "--yes", "--rate", "100000", "--workers", "8")
        urls = unsubscribe_urls(folder / "outbox")
        print(f"{label:<10} set-up (create, import, send {len(urls):,} messages) {time.perf_counter() - began:.1f} s")

        with (folder / "serve.log").open("wb") as log:
            process = subprocess.Popen([str(NEWSLETTER), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                       env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(process, url)
            paths = [urlsplit(u).path for u in urls]
            first = hammer(url, paths, concurrency)
            print(f"{label:<10} one-click POST x{first.count:,} at concurrency {concurrency}: {first.line()}")
            after = recorded(env, folder, database_url)
            once = all(v == len(urls) for v in after.values())
            print(f"{label:<10} recorded exactly once: {'yes' if once else 'NO'}  {after}  "
                  f"(expected {len(urls):,} each)")
            again = hammer(url, paths, concurrency)  # every link once more, as a retrying sender would
            replay = recorded(env, folder, database_url)
            print(f"{label:<10} the same {again.count:,} POSTs again:        {again.line()}")
            print(f"{label:<10} then recorded: {'unchanged' if replay == after else 'CHANGED'}  {replay}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            logged = (folder / "serve.log").read_text("utf-8", "replace")
            raised: dict[str, int] = {}
            for line in re.findall(r"^[A-Za-z_][\w.]*(?:Error|Exception): .*$", logged, re.MULTILINE):
                raised[line] = raised.get(line, 0) + 1
            print(f"{label:<10} serve logged {logged.count('Traceback')} tracebacks: {raised or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run("SQLite", f"sqlite:///{folder}/bench.db", args.subscribers, args.concurrency)
    pg = os.environ.get("NEWSLETTER_BENCH_PG_URL")
    if not pg:
        print("PostgreSQL skipped (set NEWSLETTER_BENCH_PG_URL to run it too)")
        return
    with pg_schema(pg) as url:
        if url is not None:
            run("PostgreSQL", url, args.subscribers, args.concurrency)

if __name__ == "__main__":
    main()
