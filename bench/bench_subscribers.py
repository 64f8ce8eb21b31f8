"""`make bench`, issue 3: import and export of a generated CSV, on SQLite and PostgreSQL.

Each import runs in a child process so its peak RSS can be read alone.
Usage: bench_subscribers.py [--rows N] [--pg URL]. Prints; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import pg_schema, pg_url

CHILD = """
import sys, time
from pathlib import Path
import subscribers as subs
url, path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
db = subs.open_database(url)
subs.create_list(db, "bench")
start = time.perf_counter()
report = subs.import_csv(db, path, "bench")
imported = time.perf_counter() - start
start = time.perf_counter()
exported = subs.export_csv(db, "bench", out)
print(report.added, imported, exported, time.perf_counter() - start)
"""


def generate(path: Path, rows: int) -> None:
    towns = ["Preston", "Blackpool", "Blackburn", "Lancaster", "Burnley", "Chorley"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "town", "member_since"])
        for i in range(rows):
            writer.writerow([f"Reader.{i}@Example{i % 997}.org", f"First{i}", f"Last{i}", towns[i % 6], 2000 + i % 25])


def run(url: str, path: Path, rows: int, label: str) -> None:
    out = path.with_suffix(f".{label}.out.csv")
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(path), str(out)],
                          capture_output=True, text=True, check=True)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    added, imported, exported, export_s = done.stdout.split()
    print(f"{label:<10} import {rows:>9,} rows  {int(added) / float(imported):>9,.0f} rows/s  "
          f"(target >= 50,000 on SQLite)  peak RSS {peak_mb:.0f} MB (largest child so far; target < 300)")
    print(f"{label:<10} export {int(exported):>9,} rows  {int(exported) / float(export_s):>9,.0f} rows/s  "
          "(target >= 200,000)")


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
        run(f"sqlite:///{folder}/bench.db", path, args.rows, "SQLite")
        with pg_schema(args.pg) as url:
            if url is not None:
                run(url, path, args.rows, "PostgreSQL")

if __name__ == "__main__":
    main()
