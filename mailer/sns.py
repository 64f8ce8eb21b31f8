"""Amazon SNS HTTP(S) message verification: signature, signing certificate, topic and age.

SNS signs every message it POSTs (AWS docs, "Verifying the signatures of Amazon SNS
messages"): an RSA PKCS#1 v1.5 signature, SHA1 for SignatureVersion 1 and SHA256 for 2,
over "Key\\nValue\\n" pairs of fixed keys in a fixed order. The public key comes from an
X.509 certificate at SigningCertURL, which is attacker-controlled text, so the URL must
name an SNS regional host exactly: django-ses once trusted any *.amazonaws.com
host, and anyone can serve a certificate from S3 there. No boto3; certificates and
SubscribeURLs are fetched only through an injectable `Fetcher` (urllib by default).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import MailerError

Fetcher = Callable[[str], bytes]

NOTIFICATION = "Notification"
SUBSCRIPTION = "SubscriptionConfirmation"
UNSUBSCRIPTION = "UnsubscribeConfirmation"

# The keys signed, in the order SNS signs them; Subject only when the message has one.
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_KEYS = {NOTIFICATION: NOTIFICATION_KEYS, SUBSCRIPTION: CONFIRMATION_KEYS, UNSUBSCRIPTION: CONFIRMATION_KEYS}
ENVELOPE_KEYS = ("Type", "MessageId", "TopicArn", "Message", "Timestamp",
                 "SignatureVersion", "Signature", "SigningCertURL")

HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# Regional SNS endpoints only (sns.eu-west-2.amazonaws.com, sns.us-gov-west-1.amazonaws.com,
# sns.cn-north-1.amazonaws.com.cn). fullmatch, not `$`, which also matches before a final "\n".
SNS_HOST = re.compile(r"sns\.[a-z]{2}(-gov)?-[a-z]+-\d\.amazonaws\.com(\.cn)?")
CERT_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]+\.pem")

# SNS retries an HTTP(S) delivery with the original Timestamp and signature for at most
# 3,600 s (a hard limit of delivery policies), so an hour-old message is a replay.
MAX_AGE = timedelta(hours=1)
MAX_SKEW = timedelta(minutes=5)  # clocks disagree a little; more than this is forged
FETCH_TIMEOUT = 10.0
MAX_FETCH_BYTES = 64 * 1024  # a PEM certificate is about 2 KB
CACHE_SIZE = 32


class SnsRefused(MailerError):
    """An SNS message (or SubscribeURL) failed verification; the webhook answers 403."""


@dataclass(frozen=True)
class SnsMessage:
    type: str  # "Notification" | "SubscriptionConfirmation" | "UnsubscribeConfirmation"
    message_id: str
    topic_arn: str
    message: str  # the "Message" string (for Notification: the SES JSON text)
    timestamp: datetime  # aware UTC
    subject: str | None
    subscribe_url: str | None
    raw: dict  # the whole parsed body


def parse_sns(body: bytes | str) -> dict:
    """The JSON object of an SNS body; no signature check (the SQS poller trusts its queue)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SnsRefused(f"SNS body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SnsRefused(f"SNS body is a JSON {type(data).__name__}, not an object")
    return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would fetch from a host that never passed validation.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def urllib_fetch(url: str) -> bytes:
    """GET `url` (already validated by the caller), no redirects, 10 s timeout, 64 KiB at most."""
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(url, timeout=FETCH_TIMEOUT) as response:
        data: bytes = response.read(MAX_FETCH_BYTES + 1)
    if len(data) > MAX_FETCH_BYTES:
        raise OSError(f"response larger than {MAX_FETCH_BYTES} bytes")
    return data


def check_sns_url(url: str, what: str) -> None:
    """Refuse unless `url` is https on a regional SNS host, with no userinfo, port or fragment."""
    # urlsplit silently drops tabs and newlines (bpo-43882), so it would judge another URL.
    if not url.isprintable() or " " in url:
        raise SnsRefused(f"{what} holds spaces or control characters: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number
    except ValueError as exc:
        raise SnsRefused(f"{what} is not a URL: {url!r} ({exc})") from None
    if parts.scheme != "https":
        raise SnsRefused(f"{what} is not https: {url!r}")
    # netloc must be the bare host: "user@host", "host:443" and "HOST" are all refused.
    if port is not None or parts.netloc != parts.hostname or not SNS_HOST.fullmatch(parts.netloc):
        raise SnsRefused(f"{what} host is not an Amazon SNS endpoint: {url!r}")
    if parts.fragment:
        raise SnsRefused(f"{what} has a fragment: {url!r}")


def string_to_sign(data: dict) -> bytes:
    """The bytes SNS signed: "Key\\nValue\\n" for each signed key present, in SNS's order."""
    keys = SIGNED_KEYS[data["Type"]]
    return "".join(f"{key}\n{data[key]}\n" for key in keys if data.get(key) is not None).encode()


class SnsVerifier:
    """Verifies SNS HTTP(S) POST bodies for a fixed set of topics; caches signing certificates."""

    def __init__(self, topic_arns: Iterable[str], fetch: Fetcher | None = None, *,
                 max_age: timedelta = MAX_AGE, clock: Callable[[], datetime] | None = None):
        if isinstance(topic_arns, str):  # a lone ARN would become a set of its characters
            raise TypeError("topic_arns must be an iterable of ARNs, not one string")
        self.topic_arns = frozenset(topic_arns)
        self.fetch = fetch or urllib_fetch
        self.max_age = max_age
        self.clock = clock or (lambda: datetime.now(UTC))
        self._certs: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def verify(self, body: bytes | str, message_type_header: str | None = None) -> SnsMessage:
        """The verified message, or SnsRefused naming the first thing wrong.

        Everything that needs no network is checked before the certificate is fetched.
        """
        data = parse_sns(body)
        _check_shape(data)
        if message_type_header is not None and message_type_header != data["Type"]:
            raise SnsRefused(f"x-amz-sns-message-type {message_type_header!r} differs from Type {data['Type']!r}")
        if data["TopicArn"] not in self.topic_arns:
            raise SnsRefused(f"TopicArn {data['TopicArn']!r} is not an allowed topic")
        timestamp = self._check_timestamp(data["Timestamp"])
        algorithm = HASHES.get(data["SignatureVersion"])
        if algorithm is None:
            raise SnsRefused(f"SignatureVersion {data['SignatureVersion']!r} is not 1 or 2")
        _check_cert_url(data["SigningCertURL"])
        signature = _decode_signature(data["Signature"])
        key = self._public_key(data["SigningCertURL"])
        try:
            signed = string_to_sign(data)
        except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the JSON): SNS signs UTF-8, never this
            raise SnsRefused(f"message {data['MessageId']!r} is not Unicode text") from None
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SnsRefused(f"Signature does not verify for message {data['MessageId']!r}") from None
        return _message(data, timestamp)

    def confirm_subscription(self, message: SnsMessage) -> None:
        """GET the SubscribeURL of a verified SubscriptionConfirmation of an allowed topic."""
        if message.type != SUBSCRIPTION:
            raise SnsRefused(f"cannot confirm a {message.type}, only a {SUBSCRIPTION}")
        if message.topic_arn not in self.topic_arns:
            raise SnsRefused(f"TopicArn {message.topic_arn!r} is not an allowed topic")
        url = message.subscribe_url or ""
        check_sns_url(url, "SubscribeURL")
        # SNS's SubscribeURL is the ConfirmSubscription API call: https://sns.<region>.amazonaws.com/?Action=...
        parts = urlsplit(url)
        if parts.path != "/" or parse_qs(parts.query).get("Action") != ["ConfirmSubscription"]:
            raise SnsRefused(f"SubscribeURL is not a ConfirmSubscription call: {url!r}")
        self._get(url, "SubscribeURL")

    def _check_timestamp(self, text: str) -> datetime:
        try:
            timestamp = datetime.fromisoformat(text)  # SNS writes "2012-05-02T00:54:06.655Z"
            if timestamp.tzinfo is None:
                raise SnsRefused(f"Timestamp {text!r} has no time zone")
            timestamp = timestamp.astimezone(UTC)
        except (ValueError, OverflowError):  # "9999-12-31T23:00:00-05:00" is past datetime's end in UTC
            raise SnsRefused(f"Timestamp {text!r} is not an ISO 8601 time") from None
        now = self.clock()
        if now - timestamp > self.max_age:
            raise SnsRefused(f"Timestamp {text} is older than {self.max_age} (a replay?)")
        if timestamp - now > MAX_SKEW:
            raise SnsRefused(f"Timestamp {text} is in the future")
        return timestamp

    def _public_key(self, url: str) -> rsa.RSAPublicKey:
        cert = self._certificate(url)
        now = self.clock()
        # Checked on every use, not once: a cached certificate expires too.
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SnsRefused(f"signing certificate {url} is not valid at {now:%Y-%m-%dT%H:%M:%SZ} "
                             f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRefused(f"signing certificate {url} does not hold an RSA key")
        return key

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cert = self._certs.get(url)
        if cert is not None:
            return cert
        pem = self._get(url, "signing certificate")
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise SnsRefused(f"signing certificate {url} cannot be parsed: {exc}") from None
        with self._lock:
            if len(self._certs) >= CACHE_SIZE:  # SNS rotates certificates rarely: drop the oldest
                del self._certs[next(iter(self._certs))]
            self._certs[url] = cert
        return cert

    def _get(self, url: str, what: str) -> bytes:
        try:
            return self.fetch(url)
        except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
            raise SnsRefused(f"cannot fetch {what} {url}: {exc}") from None


def _check_shape(data: dict) -> None:
    kind = data.get("Type")
    if not isinstance(kind, str) or kind not in SIGNED_KEYS:
        raise SnsRefused(f"Type {kind!r} is not one of {', '.join(SIGNED_KEYS)}")
    required = ENVELOPE_KEYS + (("SubscribeURL", "Token") if kind != NOTIFICATION else ())
    missing = [key for key in required if key not in data]
    if missing:
        raise SnsRefused(f"SNS {kind} lacks {', '.join(missing)}")
    # Subject is optional; a null one is treated as absent (it is then not signed either).
    wrong = [key for key in required if not isinstance(data[key], str)]
    wrong += [key for key in ("Subject",) if data.get(key) is not None and not isinstance(data[key], str)]
    if wrong:
        raise SnsRefused(f"SNS {kind} fields are not strings: {', '.join(wrong)}")


def _check_cert_url(url: str) -> None:
    check_sns_url(url, "SigningCertURL")
    # No query either: a GET on the SNS host with ?Action=Unsubscribe&SubscriptionArn=… is an
    # unauthenticated API call, which a forged message must not make us perform.
    parts = urlsplit(url)
    if parts.query or not CERT_PATH.fullmatch(parts.path):
        raise SnsRefused(f"SigningCertURL path is not an SNS certificate: {url!r}")


def _decode_signature(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SnsRefused("Signature is not base64") from None


def _message(data: dict, timestamp: datetime) -> SnsMessage:
    return SnsMessage(type=data["Type"], message_id=data["MessageId"], topic_arn=data["TopicArn"],
                      message=data["Message"], timestamp=timestamp,
                      subject=data.get("Subject") if data["Type"] == NOTIFICATION else None,  # signed only there
                      subscribe_url=data.get("SubscribeURL"), raw=data)
