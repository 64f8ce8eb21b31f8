"""A real SES peer for tests: moto's server in its own process, and a small fault-injecting proxy.

Import the fixtures into a test module (`from tests.ses_peer import moto, ses, fault_proxy`).
Everything is loopback only. Facts about moto's server that these helpers rely on (design §9,
checked with moto 5.2): the sending identity must exist before SendEmail; GetAccount answers
404, v1 GetSendQuota says 1/s and 200 a day; `/moto-api/data.json` lists accepted raw messages
under ses -> RawMessage as {"id", "source", "destinations", "raw_data"}, where `id` is the
MessageId SendEmail returned and `raw_data` the MIME text (each destination is listed twice);
moto keeps no record of EmailTags or ConfigurationSetName, so the proxy records request bodies.
"""
from __future__ import annotations

import base64
import csv
import email
import email.policy
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MOTO_SERVER = BIN / "moto_server"
NEWSLETTER = BIN / "newsletter"
ISSUE = ROOT / "issues" / "2021-01.yaml"
REGION = "eu-west-2"
FROM = "News <news@example.org>"
FROM_DOMAIN = "example.org"
SECRET = "test-only-signing-key-of-tests-ses-peer-7Hq3"
SEND_EMAIL_PATH = "/v2/email/outbound-emails"  # sesv2 SendEmail: POST, REST-JSON

# Variables that would point boto3 elsewhere or at real credentials.
AWS_NOISE = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
             "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS",
             "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


# --- moto's server ----------------------------------------------------------------------------------


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _request(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def reset(self) -> None:
        self._request("POST", "/moto-api/reset")

    def data(self) -> dict[str, Any]:
        return dict(json.loads(self._request("GET", "/moto-api/data.json")))

    def raw_messages(self) -> list[dict[str, Any]]:
        """What moto accepted through SendEmail with Content.Raw, oldest first."""
        return list(self.data().get("ses", {}).get("RawMessage", []))

    def client(self, service: str = "sesv2") -> Any:
        import boto3
        env = aws_env(self.url)
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def create_identity(self, identity: str = FROM_DOMAIN) -> None:
        self.client().create_email_identity(EmailIdentity=identity)

    def create_configuration_set(self, name: str) -> None:
        self.client().create_configuration_set(ConfigurationSetName=name)


def _wait_until_up(process: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """moto's server as a separate process on a free loopback port, for the whole session."""
    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} is missing: install moto[server] (pip install -e '.[dev]')")
    port = free_port()
    process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MotoServer(process, port)
    try:
        _wait_until_up(process, server.url)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def ses(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A fresh moto (reset) with the From domain as a sending identity; boto3 in this process points at it."""
    moto.reset()
    moto.create_identity()
    for name in AWS_NOISE:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(moto.url).items():
        monkeypatch.setenv(name, value)
    return moto


# --- the fault-injecting proxy ------------------------------------------------------------------------

Fault = tuple[int, str, str]  # HTTP status, SES error type (__type), message


def throttled(message: str = "Maximum sending rate exceeded.") -> Fault:
    return (429, "TooManyRequestsException", message)


def rejected(message: str = "Email address is not verified.") -> Fault:
    return (400, "MessageRejected", message)


def paused(message: str = "Sending is paused for this account.") -> Fault:
    return (400, "SendingPausedException", message)


@dataclass
class SendEmailCall:
    """One SendEmail request as the proxy saw it (decoded), and what it answered."""

    body: dict[str, Any]
    fault: Fault | None = None
    message_id: str | None = None

    @property
    def to(self) -> str:
        return str(self.body["Destination"]["ToAddresses"][0])

    @property
    def tags(self) -> dict[str, str]:
        return {t["Name"]: t["Value"] for t in self.body.get("EmailTags", [])}

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.body["Content"]["Raw"]["Data"])


@dataclass
class FaultProxy:
    """Forwards every request to moto, except SendEmail calls a rule answers with an SES error.

    Rules: `throttle(address, times)` answers the first `times` attempts for that address with 429
    TooManyRequestsException; `reject(address)` answers every attempt with MessageRejected;
    `pause_after(n)` lets n SendEmail calls through, then answers all with SendingPausedException;
    `lose_answer(address, how)` lets moto accept that address's messages, then loses the answer:
    a 500 InternalFailure (`how="500"`) or a connection closed without a word (`how="drop"`).
    """

    upstream: str
    port: int = 0
    calls: list[SendEmailCall] = field(default_factory=list)
    _throttle: dict[str, int] = field(default_factory=dict)
    _reject: dict[str, str] = field(default_factory=dict)
    _pause_after: int | None = None
    _lose: dict[str, str] = field(default_factory=dict)
    _forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def throttle(self, address: str, times: int) -> None:
        self._throttle[address] = times

    def reject(self, address: str, message: str = "Email address is not verified.") -> None:
        self._reject[address] = message

    def lose_answer(self, address: str, how: str = "500") -> None:
        self._lose[address] = how

    def pause_after(self, n: int) -> None:
        self._pause_after, self._forwarded = n, 0

    def clear(self) -> None:
        with self._lock:
            self._throttle.clear()
            self._reject.clear()
            self._pause_after = None

    def attempts(self, address: str) -> int:
        return sum(1 for c in self.calls if c.to == address)

    def accepted(self) -> list[SendEmailCall]:
        return [c for c in self.calls if c.fault is None]

    def decide(self, call: SendEmailCall) -> Fault | None:
        """Called under the lock, once per SendEmail."""
        to = call.to
        if self._pause_after is not None and self._forwarded >= self._pause_after:
            return paused()
        if to in self._reject:
            return rejected(self._reject[to])
        if self._throttle.get(to, 0) > 0:
            self._throttle[to] -= 1
            return throttled()
        self._forwarded += 1
        return None

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                call = None
                if self.command == "POST" and self.path.split("?")[0] == SEND_EMAIL_PATH:
                    call = SendEmailCall(json.loads(body))
                    with proxy._lock:
                        proxy.calls.append(call)
                        call.fault = proxy.decide(call)
                    if call.fault is not None:
                        status, kind, message = call.fault
                        self._answer(status, {"Content-Type": "application/json", "x-amzn-ErrorType": kind,
                                              "x-amzn-RequestId": "fault-proxy"},
                                     json.dumps({"__type": kind, "message": message}).encode())
                        return
                status, headers, answer = proxy.forward(self.command, self.path, self.headers, body)
                if call is not None and status == 200:
                    call.message_id = json.loads(answer).get("MessageId")
                    lost = proxy._lose.get(call.to)
                    if lost == "drop":  # accepted, and the connection dies before the answer
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if lost == "500":
                        self._answer(500, {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalFailure",
                                           "x-amzn-RequestId": "fault-proxy"},
                                     b'{"__type": "InternalFailure", "message": "internal failure"}')
                        return
                self._answer(status, headers, answer)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815  (http.server's names)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()

    def forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        host, port = self.upstream.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        skip = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}
        try:
            connection.request(method, path, body=body,
                               headers={k: v for k, v in headers.items() if k.lower() not in skip})
            response = connection.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in skip}
            return response.status, kept, answer
        finally:
            connection.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def fault_proxy(ses: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The proxy in front of a fresh moto; boto3 in this process talks to the proxy."""
    proxy = FaultProxy(ses.url)
    proxy.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        yield proxy
    finally:
        proxy.stop()


# --- audience, messages and the command line --------------------------------------------------------


def write_subscribers(path: Path, count: int, domain: str = "example.com") -> list[str]:
    """A CSV of `count` people userN@domain with first/last names and a town; returns the addresses."""
    addresses = [f"user{i:03d}@{domain}" for i in range(1, count + 1)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "first_name", "last_name", "town"])
        for i, address in enumerate(addresses, 1):
            writer.writerow([address, f"First{i:03d}", f"Last{i:03d}", f"Town{i:03d}"])
    return addresses


def parse(raw: bytes | str) -> email.message.EmailMessage:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def to_address(message: email.message.Message) -> str:
    header: Any = message["To"]  # a structured header under policy.default
    return str(header.addresses[0].addr_spec).lower()


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message, decoded."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `newsletter` subprocess: nothing of ours leaks in but PATH and HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEWSLETTER_", "AWS_")) and k not in ("PYTHONPATH",)}
    env.update(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_FROM=FROM, NEWSLETTER_SECRET=SECRET)
    env.update(extra)
    return env


def newsletter(args: list[str], env: dict[str, str], cwd: Path, *, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `newsletter` command; fail with its output when it fails and `check`."""
    done = subprocess.run([str(NEWSLETTER), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"newsletter {' '.join(args)} exited {done.returncode}\n"
                    f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def subscriber_ids(database_url: str) -> dict[str, int]:
    """email -> subscriber id."""
    from sqlalchemy import create_engine, text
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {e: int(i) for i, e in conn.execute(text("SELECT id, email FROM subscribers"))}
    finally:
        engine.dispose()


def ledger(database_url: str) -> list[dict[str, Any]]:
    """Every deliveries row with its subscriber's address."""
    from sqlalchemy import create_engine, text
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT d.id, d.send_id, d.subscriber_id, d.state, d.message_id, d.error, d.attempts, s.email "
                "FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id"))
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


Check = Callable[[], bool]


def wait_for(condition: Check, timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
