"""`make bench`, issues 3 and 13: import and export of a generated CSV, on SQLite and PostgreSQL.

The import is measured beside its floor: bare sqlite3 `executemany` of the same
rows into the same schema (the subscribers, then one INSERT … SELECT of their
memberships), parsing the same file with the csv module and nothing else. The
target is at least half the floor's speed. Memory must stay flat whatever the
file's size: the import runs on the whole file and on a quarter of it, and both
peak RSS are printed. Each run is a child process, so its peak RSS is its own.
Usage: bench_subscribers.py [--rows N] [--pg URL]. Prints; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from peers import pg_schema, pg_url

IMPORT = """
import resource, sys, time
from collections.abc import Callable
from pathlib import Path
import subscribers as subs
url, path, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
db = subs.open_database(url)
subs.create_list(db, "bench")
start = time.perf_counter()
report = subs.import_csv(db, path, "bench")
imported = time.perf_counter() - start
exported, export_s = 0, 0.0
if out:
    start = time.perf_counter()
    exported = subs.export_csv(db, "bench", Path(out))
    export_s = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(report.added, imported, exported, export_s, peak)
"""

# The floor: what the same rows cost with nothing but the csv module and sqlite3's executemany.
FLOOR = """
import csv, json, resource, sqlite3, sys, time
import subscribers as subs
url, path = sys.argv[1], sys.argv[2]
subs.open_database(url).dispose()  # the same schema, made by the same migrations
start = time.perf_counter()
conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute("BEGIN")
conn.execute("INSERT INTO lists (name, title, double_opt_in, created_at) VALUES ('floor', '', 0, CURRENT_TIMESTAMP)")
with open(path, newline="", encoding="utf-8") as handle:
    reader = csv.reader(handle)
    names = next(reader)[1:]
    rows = [(r[0], r[0].lower(), f"{r[1]} {r[2]}", json.dumps(dict(zip(names, r[1:])))) for r in reader]
conn.executemany("INSERT INTO subscribers (email, email_key, name, fields, created_at, updated_at) "
                 "VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)", rows)
conn.execute("INSERT INTO memberships (list_id, subscriber_id, status, source, subscribed_at, confirmed_at, "
             "updated_at) SELECT 1, id, 'subscribed', 'import', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
             "CURRENT_TIMESTAMP FROM subscribers")
conn.execute("COMMIT")
elapsed = time.perf_counter() - start
print(len(rows), elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def generate(path: Path, rows: int) -> None:
    towns = ["Preston", "Blackpool", "Blackburn", "Lancaster", "Burnley", "Chorley"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "town", "member_since"])
        for i in range(rows):
            writer.writerow([f"Reader.{i}@Example{i % 997}.org", f"First{i}", f"Last{i}", towns[i % 6], 2000 + i % 25])


def child(code: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.split()


def run(url: str, path: Path, rows: int, label: str, floor: float | None) -> None:
    out = path.with_suffix(f".{label}.out.csv")
    added, imported, exported, export_s, peak = child(IMPORT, url, str(path), str(out))
    rate = int(added) / float(imported)
    against = f"  {rate / floor:.0%} of the floor (target >= 50%)" if floor else ""
    print(f"{label:<10} import {rows:>9,} rows  {rate:>9,.0f} rows/s{against}  peak RSS {float(peak):.0f} MB")
    print(f"{label:<10} export {int(exported):>9,} rows  {int(exported) / float(export_s):>9,.0f} rows/s  "
          "(target >= 200,000)")


def memory(url_of: Callable[[str], str], path: Path, rows: int, label: str) -> None:
    """Peak RSS of an import of a quarter of the file: flat memory means about the same as the whole."""
    quarter = path.with_suffix(".quarter.csv")
    with open(path, encoding="utf-8") as source, open(quarter, "w", encoding="utf-8") as target:
        for n, line in enumerate(source):
            if n > rows // 4:
                break
            target.write(line)
    *_, peak = child(IMPORT, url_of("quarter"), str(quarter), "")
    print(f"{label:<10} import {rows // 4:>9,} rows  peak RSS {float(peak):.0f} MB (flat memory: about the same "
          "as the whole file's)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default=pg_url())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "subscribers.csv"
        start = time.perf_counter()
        generate(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - start:.1f} s")
        count, elapsed, peak = child(FLOOR, f"sqlite:///{folder}/floor.db", str(path))
        floor = int(count) / float(elapsed)
        print(f"{'SQLite':<10} floor  {args.rows:>9,} rows  {floor:>9,.0f} rows/s  (bare sqlite3 executemany, "
              f"peak RSS {float(peak):.0f} MB: it holds every row)")
        run(f"sqlite:///{folder}/bench.db", path, args.rows, "SQLite", floor)
        memory(lambda name: f"sqlite:///{folder}/{name}.db", path, args.rows, "SQLite")
        with pg_schema(args.pg) as url:
            if url is not None:
                run(url, path, args.rows, "PostgreSQL", None)


if __name__ == "__main__":
    main()
