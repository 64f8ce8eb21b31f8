"""`make bench`, issue 4: personalisation, sending CPU against a stub, pace against moto, ledger memory.

Prints; asserts nothing. Usage: bench_send.py [--ledger-rows N] [--skip-moto]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # run as a script or imported as bench.bench_send
from peers import free_port  # noqa: E402

REFERENCE = ROOT / "issues" / "2020-12.yaml"
FROM = "LVRN News <news@lancsvrn.example>"

STUB = r"""
import json, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"MessageId": uuid.uuid4().hex}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H); print("ready", flush=True); s.serve_forever()
"""


def _aws(port: int) -> None:
    """Point boto3 at a local peer (it reads these; nothing here talks to AWS)."""
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_DEFAULT_REGION="eu-west-2",
                      AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")


def personalisation() -> None:
    from components import render_issue
    from mailer import Envelope, MessageTemplate, Recipient
    from subscribers import Tokens
    template = MessageTemplate(render_issue(REFERENCE, base_url="https://news.example.org"),
                               Envelope(FROM, "<news.lancsvrn.example>"))
    tokens = Tokens("bench")
    n = 20000
    start = time.process_time()
    for i in range(n):
        template.personalise(Recipient(f"reader{i}@example.org", "Ann Lee", {"town": "Preston"},
                                       f"https://news.example.org/u/{tokens.unsubscribe(i, 1)}", i))
    rate = n / (time.process_time() - start)
    print(f"personalisation (reference issue, 1 core)   {rate:10,.0f} messages/s   (target >= 20,000)")


def _database(folder: str, n: int) -> tuple[object, int]:
    import mailer
    import subscribers as subs
    from subscribers.db import NOW, bulk_insert
    from subscribers.schema import subscribers
    db = subs.open_database(f"sqlite:///{folder}/bench.db", extra_migrations=(mailer.MIGRATIONS,))
    mailing_list = subs.create_list(db, "bench")
    chunk = 20000  # bulk set-up in chunks: this measures sending, and its memory, not the set-up's
    with db.begin() as conn:
        for start in range(0, n, chunk):
            bulk_insert(conn, subscribers, [{"email": f"r{i}@example.org", "email_key": f"r{i}@example.org",
                                             "name": f"Reader {i}", "fields": {}}
                                            for i in range(start, min(n, start + chunk))],
                        {"created_at": NOW, "updated_at": NOW})
        conn.exec_driver_sql(
            "INSERT INTO memberships (list_id, subscriber_id, status, source, subscribed_at, updated_at) "
            f"SELECT {mailing_list.id}, id, 'subscribed', 'import', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
            "FROM subscribers")
    return db, mailing_list.id


def _send(db: object, slug: str, transport: object, rate: float, workers: int) -> tuple[int, float, float]:
    from components import render_issue
    from mailer import Envelope, MessageTemplate, plan_send, run_send
    from mailer.sending import start_send
    from subscribers import Tokens
    rendered = render_issue(REFERENCE, base_url="https://news.example.org")
    plan = plan_send(db, slug, "bench")  # type: ignore[arg-type]
    send_id = start_send(db, plan, rendered.subject)  # type: ignore[arg-type]
    template = MessageTemplate(rendered, Envelope(FROM, "<bench.lancsvrn.example>"))
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_send(db, send_id, template, transport, Tokens("bench"), "https://news.example.org",  # type: ignore[arg-type]
                      rate=rate, workers=workers)
    return result.sent, time.perf_counter() - wall, time.process_time() - cpu


def against_stub(n: int = 1000) -> None:
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(port)], stdout=subprocess.PIPE, text=True)
    assert stub.stdout is not None and stub.stdout.readline().startswith("ready")
    _aws(port)
    try:
        import boto3
        from botocore.config import Config

        from components import render_issue
        from mailer import Envelope, MessageTemplate, Recipient
        from mailer.ses import SesTransport
        raw = MessageTemplate(render_issue(REFERENCE, base_url="https://news.example.org"),
                              Envelope(FROM, "<x.example>")).personalise(
            Recipient("r0@example.org", "Reader", {}, "https://news.example.org/u/x"))
        client = boto3.client("sesv2", config=Config(retries={"total_max_attempts": 1}))
        start = time.process_time()
        for _ in range(n):
            client.send_email(Destination={"ToAddresses": ["r0@example.org"]}, Content={"Raw": {"Data": raw}})
        floor = (time.process_time() - start) / n * 1000
        with tempfile.TemporaryDirectory() as folder:
            db, _ = _database(folder, n)
            sent, _wall, cpu = _send(db, "stub", SesTransport(), rate=100000, workers=4)
        ours = cpu / sent * 1000
        print(f"CPU per message: bare boto3 loop {floor:.2f} ms, newsletter send {ours:.2f} ms "
              f"= {ours / floor:.2f}x   (target <= 1.3x)")
    finally:
        stub.terminate()


@contextmanager
def moto_server() -> Iterator[None]:
    """moto's server on a free loopback port, boto3 pointed at it, until the block ends."""
    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _aws(port)
    try:
        import urllib.request
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/")
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        moto.terminate()


def against_moto(n: int = 1000, rate: float = 100) -> None:
    with moto_server():
        import boto3

        from mailer.ses import SesTransport
        boto3.client("sesv2").create_email_identity(EmailIdentity="lancsvrn.example")
        with tempfile.TemporaryDirectory() as folder:
            db, _ = _database(folder, n)
            sent, wall, _ = _send(db, "moto", SesTransport(), rate=rate, workers=8)
        print(f"sustained rate against moto at {rate:g}/s (8 workers) {sent / wall:7.1f} messages/s   (target >= 95)")


LEDGER = r"""
import sys, time, tempfile
sys.path.insert(0, sys.argv[2])
from bench.bench_send import _database, _send
class Null:
    name = "null"
    def send(self, raw, to, tags): return "null"
with tempfile.TemporaryDirectory() as folder:
    t = time.perf_counter()
    db, _ = _database(folder, int(sys.argv[1]))
    sent, wall, _ = _send(db, "ledger", Null(), rate=1e9, workers=4)
    print(sent, wall, time.perf_counter() - t)
"""


def ledger(n: int) -> None:
    done = subprocess.run([sys.executable, "-c", LEDGER, str(n), str(ROOT)], capture_output=True, text=True)
    if done.returncode:
        print(f"ledger benchmark failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    sent, wall, total = done.stdout.split()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"ledger of {int(sent):,} recipients created and walked in {float(total):.0f} s "
          f"({int(sent) / float(wall):,.0f}/s), peak RSS {peak:.0f} MB   (target < 300 MB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-moto", action="store_true")
    args = parser.parse_args()
    personalisation()
    against_stub()
    if not args.skip_moto:
        against_moto()
    ledger(args.ledger_rows)


if __name__ == "__main__":
    main()
