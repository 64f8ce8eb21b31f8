"""SNS HTTP(S) message verification (mailer/sns.py).

Messages are signed here exactly as SNS signs them (AWS docs, "Verifying the signatures of
Amazon SNS messages"), with a test RSA key and a self-signed certificate served through an
injected fetcher: a dict of URL -> bytes that records every URL fetched, so a test can also
assert that a refused message made no request at all. The string to sign is built here
independently of mailer/sns.py, so a shared mistake cannot pass unnoticed.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from mailer.errors import MailerError
from mailer.sns import MAX_FETCH_BYTES, SnsMessage, SnsRefused, SnsVerifier, parse_sns, urllib_fetch

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:eu-west-2:123456789012:newsletter-events"
OTHER_TOPIC = "arn:aws:sns:eu-west-2:123456789012:someone-else"
CERT_URL = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
EXPIRED_URL = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
EC_URL = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-ec.pem"
JUNK_URL = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-junk.pem"
SUBSCRIBE_URL = ("https://sns.eu-west-2.amazonaws.com/?Action=ConfirmSubscription"
                 f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425dacbba")
SES_BOUNCE = json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
                         "bouncedRecipients": [{"emailAddress": "josé@example.com"}]},
                         "mail": {"messageId": "0100017c-example", "destination": ["josé@example.com"]}})


@dataclass(frozen=True)
class Keys:
    key: rsa.RSAPrivateKey
    pem: bytes  # self-signed, valid 2010-2040 (the AWS docs example is from 2012)
    other_key: rsa.RSAPrivateKey  # a forger's key: same shape, not in the certificate
    expired_pem: bytes
    ec_pem: bytes


def _certificate(key: Any, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def keys() -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(key=key, other_key=other,
                pem=_certificate(key, datetime(2010, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)),
                expired_pem=_certificate(key, NOW - timedelta(days=400), NOW - timedelta(days=1)),
                ec_pem=_certificate(ec.generate_private_key(ec.SECP256R1()), NOW - timedelta(days=1),
                                    NOW + timedelta(days=1)))


class FakeWeb:
    """The injected Fetcher: a dict lookup that records the URLs asked for."""

    def __init__(self, pages: dict[str, bytes]):
        self.pages = pages
        self.fetched: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.pages:
            raise OSError(f"HTTP Error 404: Not Found ({url})")
        return self.pages[url]


@pytest.fixture
def web(keys: Keys) -> FakeWeb:
    return FakeWeb({CERT_URL: keys.pem, EXPIRED_URL: keys.expired_pem, EC_URL: keys.ec_pem,
                    JUNK_URL: b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
                    SUBSCRIBE_URL: b"<ConfirmSubscriptionResponse/>"})


def verifier(web: FakeWeb, topics: tuple[str, ...] = (TOPIC,), now: datetime = NOW, **kwargs: Any) -> SnsVerifier:
    return SnsVerifier(topics, web, clock=lambda: now, **kwargs)


def sns_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # SNS: milliseconds and Z


def canonical(body: dict) -> bytes:
    """The string SNS signs, written out from the AWS docs (not imported from mailer.sns)."""
    if body["Type"] == "Notification":
        keys = ["Message", "MessageId", *(["Subject"] if "Subject" in body else []), "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{key}\n{body[key]}\n" for key in keys).encode("utf-8")


def sign(body: dict, key: rsa.RSAPrivateKey, version: str = "1") -> dict:
    body = {**body, "SignatureVersion": version}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    body["Signature"] = base64.b64encode(key.sign(canonical(body), padding.PKCS1v15(), digest)).decode()
    return body


def notification(**fields: Any) -> dict:
    body = {"Type": "Notification", "MessageId": "b7e5a3c1-54a2-5d93-9c2e-6f0e1d7c2a11", "TopicArn": TOPIC,
            "Message": SES_BOUNCE, "Timestamp": sns_time(NOW - timedelta(seconds=30)), "SigningCertURL": CERT_URL,
            "UnsubscribeURL": "https://sns.eu-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"}
    return {key: value for key, value in {**body, **fields}.items() if value is not None}


def confirmation(kind: str = "SubscriptionConfirmation", **fields: Any) -> dict:
    body = {"Type": kind, "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e2425dacbba",
            "TopicArn": TOPIC, "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the "
            "subscription, visit the SubscribeURL included in this message.", "SubscribeURL": SUBSCRIBE_URL,
            "Timestamp": sns_time(NOW - timedelta(seconds=5)), "SigningCertURL": CERT_URL}
    return {**body, **fields}


def encode(body: Any) -> bytes:
    return json.dumps(body, indent=2).encode()


def refused(check: Callable[[], object], match: str) -> SnsRefused:
    with pytest.raises(SnsRefused, match=match) as caught:
        check()
    return caught.value


# -- accepted ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_valid_notification_is_accepted_and_parsed(keys: Keys, web: FakeWeb, version: str) -> None:
    body = sign(notification(), keys.key, version)
    message = verifier(web).verify(encode(body), "Notification")
    assert message == SnsMessage(type="Notification", message_id=body["MessageId"], topic_arn=TOPIC,
                                 message=SES_BOUNCE, timestamp=NOW - timedelta(seconds=30), subject=None,
                                 subscribe_url=None, raw=body)
    assert message.timestamp.tzinfo is not None and message.timestamp.utcoffset() == timedelta(0)
    assert json.loads(message.message)["bounce"]["bouncedRecipients"][0]["emailAddress"] == "josé@example.com"
    assert web.fetched == [CERT_URL]


@pytest.mark.parametrize("version", ["1", "2"])
def test_subject_is_signed_when_present(keys: Keys, web: FakeWeb, version: str) -> None:
    body = sign(notification(Subject="Amazon SES Email Event Notification"), keys.key, version)
    message = verifier(web).verify(json.dumps(body))  # str bodies too
    assert message.subject == "Amazon SES Email Event Notification"


def test_body_and_header_may_agree(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(), keys.key))
    assert verifier(web).verify(body, "Notification").type == "Notification"
    assert verifier(web).verify(body, None).type == "Notification"


def test_subscription_confirmation_is_accepted_and_confirmed_once(keys: Keys, web: FakeWeb) -> None:
    sns = verifier(web)
    message = sns.verify(encode(sign(confirmation(), keys.key, "2")), "SubscriptionConfirmation")
    assert (message.type, message.subscribe_url, message.subject) == ("SubscriptionConfirmation", SUBSCRIBE_URL, None)
    sns.confirm_subscription(message)
    assert web.fetched == [CERT_URL, SUBSCRIBE_URL]


def test_unsubscribe_confirmation_is_accepted_but_never_followed(keys: Keys, web: FakeWeb) -> None:
    sns = verifier(web)
    message = sns.verify(encode(sign(confirmation("UnsubscribeConfirmation"), keys.key)))
    assert message.type == "UnsubscribeConfirmation"
    # Its SubscribeURL would re-subscribe the endpoint: that is a human decision.
    refused(lambda: sns.confirm_subscription(message), "only a SubscriptionConfirmation")
    assert SUBSCRIBE_URL not in web.fetched


def test_aws_documentation_examples_resigned(keys: Keys) -> None:
    """The notification and confirmation bodies of the AWS docs, keys and spacing as SNS sends them."""
    example = json.loads((FIXTURES / "sns-notification.json").read_text())
    assert list(example) == ["Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion",
                             "Signature", "SigningCertURL", "UnsubscribeURL"]
    cert_url = example["SigningCertURL"]
    confirm = json.loads((FIXTURES / "sns-subscription-confirmation.json").read_text())
    web = FakeWeb({cert_url: keys.pem, confirm["SubscribeURL"]: b"<ConfirmSubscriptionResponse/>"})
    sns = verifier(web, topics=(example["TopicArn"],), now=datetime(2012, 5, 2, 0, 54, 30, tzinfo=UTC),
                   max_age=timedelta(days=7))
    body = (FIXTURES / "sns-notification.json").read_text().replace(example["Signature"],
                                                                    sign(example, keys.key)["Signature"])
    message = sns.verify(body.encode(), "Notification")
    assert (message.subject, message.message, message.message_id) == ("My First Message", "Hello world!",
                                                                      "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")
    assert message.timestamp == datetime(2012, 5, 2, 0, 54, 6, 655000, tzinfo=UTC)
    confirmed = sns.verify(encode(sign(confirm, keys.key)), "SubscriptionConfirmation")
    sns.confirm_subscription(confirmed)
    assert web.fetched == [cert_url, confirm["SubscribeURL"]]


def test_certificate_is_fetched_once_per_url(keys: Keys, web: FakeWeb) -> None:
    sns = verifier(web)
    sns.verify(encode(sign(notification(), keys.key)))
    sns.verify(encode(sign(notification(MessageId="second"), keys.key, "2")))
    sns.verify(encode(sign(confirmation(), keys.key)))
    assert web.fetched == [CERT_URL]


def test_certificate_cache_is_bounded(keys: Keys) -> None:
    urls = [f"https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-{n:032x}.pem" for n in range(33)]
    web = FakeWeb(dict.fromkeys(urls, keys.pem))
    sns = verifier(web)
    for url in [*urls, urls[-1], urls[0]]:
        sns.verify(encode(sign(notification(SigningCertURL=url), keys.key)))
    # 33 URLs through a 32-entry cache: the last is still cached, the first was dropped and is fetched again.
    assert web.fetched == [*urls, urls[0]]


def test_parse_sns_unwraps_without_checking_signatures() -> None:
    body = notification(Signature="EXAMPLE", SignatureVersion="1")
    assert parse_sns(encode(body)) == body
    assert parse_sns(json.dumps(body)) == body


def test_refusals_are_mailer_errors() -> None:
    assert issubclass(SnsRefused, MailerError)


def test_a_single_arn_string_is_a_mistake() -> None:
    with pytest.raises(TypeError, match="not one string"):
        SnsVerifier(TOPIC)


# -- refused: body shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"not json", b"{\"Type\": ", b"\xff\xfe\x00garbage", b"[" * 100_000])
def test_non_json_body_is_refused(web: FakeWeb, body: bytes) -> None:
    refused(lambda: verifier(web).verify(body), "not JSON")
    refused(lambda: parse_sns(body), "not JSON")
    assert web.fetched == []


@pytest.mark.parametrize(("body", "kind"), [(b"[]", "list"), (b'"Notification"', "str"), (b"null", "NoneType"),
                                            (b"42", "int")])
def test_json_that_is_not_an_object_is_refused(web: FakeWeb, body: bytes, kind: str) -> None:
    refused(lambda: verifier(web).verify(body), f"JSON {kind}, not an object")
    refused(lambda: parse_sns(body), "not an object")


@pytest.mark.parametrize("key", ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion",
                                 "Signature", "SigningCertURL"])
def test_notification_missing_a_key_is_refused(keys: Keys, web: FakeWeb, key: str) -> None:
    body = sign(notification(), keys.key)
    del body[key]
    refused(lambda: verifier(web).verify(encode(body)), "is not one of" if key == "Type" else f"lacks {key}")
    assert web.fetched == []


@pytest.mark.parametrize("key", ["SubscribeURL", "Token"])
def test_confirmation_missing_a_key_is_refused(keys: Keys, web: FakeWeb, key: str) -> None:
    body = sign(confirmation(), keys.key)
    del body[key]
    refused(lambda: verifier(web).verify(encode(body)), f"SubscriptionConfirmation lacks {key}")


@pytest.mark.parametrize(("key", "value"), [("Message", {"notificationType": "Bounce"}), ("MessageId", 7),
                                            ("Timestamp", None), ("Subject", ["x"])])
def test_non_string_fields_are_refused(keys: Keys, web: FakeWeb, key: str, value: Any) -> None:
    body = {**sign(notification(), keys.key), key: value}
    refused(lambda: verifier(web).verify(encode(body)), f"not strings: {key}")


@pytest.mark.parametrize("kind", ["Bogus", "notification", "", ["Notification"], None])
def test_unknown_type_is_refused(keys: Keys, web: FakeWeb, kind: Any) -> None:
    body = {**sign(notification(), keys.key), "Type": kind}
    refused(lambda: verifier(web).verify(encode(body)), "is not one of Notification, SubscriptionConfirmation")


@pytest.mark.parametrize("header", ["SubscriptionConfirmation", "UnsubscribeConfirmation", "notification", ""])
def test_header_and_body_type_must_agree(keys: Keys, web: FakeWeb, header: str) -> None:
    body = encode(sign(notification(), keys.key))
    refused(lambda: verifier(web).verify(body, header), "x-amz-sns-message-type .* differs from Type 'Notification'")
    assert web.fetched == []


# -- refused: topic, version, certificate URL -------------------------------------------------------------


def test_unallowed_topic_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(TopicArn=OTHER_TOPIC), keys.key))
    refused(lambda: verifier(web).verify(body), f"TopicArn '{OTHER_TOPIC}' is not an allowed topic")
    assert web.fetched == []


def test_empty_allowed_set_refuses_everything(keys: Keys, web: FakeWeb) -> None:
    sns = verifier(web, topics=())
    refused(lambda: sns.verify(encode(sign(notification(), keys.key))), "not an allowed topic")
    refused(lambda: sns.verify(encode(sign(confirmation(), keys.key))), "not an allowed topic")
    assert web.fetched == []


@pytest.mark.parametrize("version", ["3", "0", "", "1 ", "SHA256"])
def test_unknown_signature_version_is_refused(keys: Keys, web: FakeWeb, version: str) -> None:
    body = {**sign(notification(), keys.key), "SignatureVersion": version}
    refused(lambda: verifier(web).verify(encode(body)), "SignatureVersion .* is not 1 or 2")
    assert web.fetched == []


PEM = "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
BAD_HOSTS = [
    f"https://sns.eu-west-2.amazonaws.com.evil.example/{PEM}",
    f"https://sns.cn-north-1.amazonaws.com.cn.evil.example/{PEM}",
    f"https://evil.amazonaws.com/{PEM}",
    f"https://s3.amazonaws.com/{PEM}",
    f"https://s3.eu-west-2.amazonaws.com/{PEM}",
    f"https://sns.amazonaws.com/{PEM}",
    f"https://xsns.eu-west-2.amazonaws.com/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com./{PEM}",
    f"https://sns.eu-west-2.evil.amazonaws.com/{PEM}",
    f"https://SNS.EU-WEST-2.AMAZONAWS.COM/{PEM}",
    f"https://user@evil.example/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com@evil.example/{PEM}",
    f"https://user:pass@sns.eu-west-2.amazonaws.com/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com\\@evil.example/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com:8443/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com:443/{PEM}",
    f"https://sns.eu-west-2.amazonaws.com:/{PEM}",
    f"https://evil.example/sns.eu-west-2.amazonaws.com/{PEM}",
    f"https://evil.example#@sns.eu-west-2.amazonaws.com/{PEM}",
    f"https:///{PEM}",
    f"//sns.eu-west-2.amazonaws.com/{PEM}",
]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_certificate_url_on_another_host_is_refused(keys: Keys, web: FakeWeb, url: str) -> None:
    web.pages[url] = keys.pem  # even a certificate that would verify is never fetched from there
    body = encode(sign(notification(SigningCertURL=url), keys.key))
    refused(lambda: verifier(web).verify(body), "SigningCertURL (host is not an Amazon SNS endpoint|is not https)")
    assert web.fetched == []


@pytest.mark.parametrize("url", [f"http://sns.eu-west-2.amazonaws.com/{PEM}", f"ftp://sns.eu-west-2.amazonaws.com/{PEM}",
                                 "file:///etc/ssl/certs/ca-certificates.crt", f"sns.eu-west-2.amazonaws.com/{PEM}"])
def test_certificate_url_must_be_https(keys: Keys, web: FakeWeb, url: str) -> None:
    body = encode(sign(notification(SigningCertURL=url), keys.key))
    refused(lambda: verifier(web).verify(body), "SigningCertURL is not https")
    assert web.fetched == []


@pytest.mark.parametrize("url", [f"https://sns.eu-west-2.amazonaws.com\n/{PEM}", f"https://sns.eu-west-2.amaz\tonaws.com/{PEM}",
                                 f"https://sns.eu-west-2.amazonaws.com/{PEM} ", f"https://sns.eu-west-2.amazonaws.com/{PEM}\n"])
def test_certificate_url_with_control_characters_is_refused(keys: Keys, web: FakeWeb, url: str) -> None:
    # urlsplit would silently drop the tab or newline and judge a different URL.
    body = encode(sign(notification(SigningCertURL=url), keys.key))
    refused(lambda: verifier(web).verify(body), "spaces or control characters")
    assert web.fetched == []


@pytest.mark.parametrize("path", ["/evil.pem", "/", "/SimpleNotificationService-.pem", "/a/" + PEM,
                                  f"/{PEM}/../evil.pem", "/SimpleNotificationService-ab%2Fc.pem",
                                  "/SimpleNotificationService-abc.pem.txt", "/SimpleNotificationService-abc.PEM",
                                  f"/{PEM}?Action=Unsubscribe&SubscriptionArn={TOPIC}:x", f"/{PEM}#top"])
def test_certificate_url_with_wrong_path_is_refused(keys: Keys, web: FakeWeb, path: str) -> None:
    url = "https://sns.eu-west-2.amazonaws.com" + path
    body = encode(sign(notification(SigningCertURL=url), keys.key))
    refused(lambda: verifier(web).verify(body), "SigningCertURL (path is not an SNS certificate|has a fragment)")
    assert web.fetched == []


@pytest.mark.parametrize("host", ["sns.us-east-1.amazonaws.com", "sns.ap-southeast-2.amazonaws.com",
                                  "sns.us-gov-west-1.amazonaws.com", "sns.cn-north-1.amazonaws.com.cn"])
def test_every_regional_sns_host_is_accepted(keys: Keys, web: FakeWeb, host: str) -> None:
    url = f"https://{host}/{PEM}"
    web.pages[url] = keys.pem
    assert verifier(web).verify(encode(sign(notification(SigningCertURL=url), keys.key))).topic_arn == TOPIC


# -- refused: signature and certificate -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_signature_by_another_key_is_refused(keys: Keys, web: FakeWeb, version: str) -> None:
    body = encode(sign(notification(), keys.other_key, version))
    refused(lambda: verifier(web).verify(body), "Signature does not verify")


@pytest.mark.parametrize(("key", "value"), [("Message", SES_BOUNCE.replace("Permanent", "Transient")),
                                            ("MessageId", "another-id"), ("Subject", "added after signing"),
                                            ("Timestamp", sns_time(NOW - timedelta(seconds=29)))])
def test_field_changed_after_signing_is_refused(keys: Keys, web: FakeWeb, key: str, value: str) -> None:
    body = {**sign(notification(), keys.key, "2"), key: value}
    refused(lambda: verifier(web).verify(encode(body)), "Signature does not verify")


def test_subject_removed_after_signing_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = sign(notification(Subject="signed"), keys.key)
    del body["Subject"]
    refused(lambda: verifier(web).verify(encode(body)), "Signature does not verify")


def test_confirmation_token_changed_after_signing_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = {**sign(confirmation(), keys.key), "SubscribeURL": SUBSCRIBE_URL.replace("eu-west-2", "us-east-1")}
    refused(lambda: verifier(web).verify(encode(body)), "Signature does not verify")


def test_signature_version_swapped_after_signing_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = {**sign(notification(), keys.key, "2"), "SignatureVersion": "1"}
    refused(lambda: verifier(web).verify(encode(body)), "Signature does not verify")


@pytest.mark.parametrize("signature", ["not base64!", "EXAMPLEw6JRN...", "QUJD\n", "QUJ"])
def test_signature_that_is_not_base64_is_refused(keys: Keys, web: FakeWeb, signature: str) -> None:
    body = {**sign(notification(), keys.key), "Signature": signature}
    refused(lambda: verifier(web).verify(encode(body)), "Signature is not base64")
    assert web.fetched == []


@pytest.mark.parametrize("signature", ["", "QUJD", base64.b64encode(bytes(512)).decode()])
def test_signature_of_wrong_length_is_refused(keys: Keys, web: FakeWeb, signature: str) -> None:
    body = {**sign(notification(), keys.key), "Signature": signature}
    refused(lambda: verifier(web).verify(encode(body)), "Signature does not verify")


def test_expired_certificate_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(SigningCertURL=EXPIRED_URL), keys.key))
    refused(lambda: verifier(web).verify(body),
            f"signing certificate {re.escape(EXPIRED_URL)} is not valid at 2026-11-20")


def test_certificate_not_yet_valid_is_refused(keys: Keys, web: FakeWeb) -> None:
    early = datetime(2009, 12, 31, 23, 59, tzinfo=UTC)
    body = encode(sign(notification(Timestamp=sns_time(early)), keys.key))
    refused(lambda: verifier(web, now=early).verify(body), "is not valid at 2009-12-31")


def test_cached_certificate_expires_too(keys: Keys, web: FakeWeb) -> None:
    now = [datetime(2039, 12, 31, 23, 0, tzinfo=UTC)]
    sns = SnsVerifier([TOPIC], web, clock=lambda: now[0])
    sns.verify(encode(sign(notification(Timestamp=sns_time(now[0])), keys.key)))
    now[0] = datetime(2040, 1, 1, 0, 30, tzinfo=UTC)
    refused(lambda: sns.verify(encode(sign(notification(Timestamp=sns_time(now[0])), keys.key))), "is not valid at")
    assert web.fetched == [CERT_URL]


def test_unparseable_certificate_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(SigningCertURL=JUNK_URL), keys.key))
    refused(lambda: verifier(web).verify(body), f"signing certificate {re.escape(JUNK_URL)} cannot be parsed")


def test_certificate_without_rsa_key_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(SigningCertURL=EC_URL), keys.key))
    refused(lambda: verifier(web).verify(body), "does not hold an RSA key")


@pytest.mark.parametrize("error", [OSError("connection refused"), TimeoutError("timed out")])
def test_fetcher_failure_is_refused_with_the_url(keys: Keys, error: OSError) -> None:
    def broken(url: str) -> bytes:
        raise error

    sns = SnsVerifier([TOPIC], broken, clock=lambda: NOW)
    refused(lambda: sns.verify(encode(sign(notification(), keys.key))),
            f"cannot fetch signing certificate {re.escape(CERT_URL)}: {error}")


def test_certificate_missing_at_its_url_is_refused(keys: Keys, web: FakeWeb) -> None:
    url = f"https://sns.eu-west-2.amazonaws.com/{PEM}"
    refused(lambda: verifier(web).verify(encode(sign(notification(SigningCertURL=url), keys.key))),
            "cannot fetch signing certificate .*404")


# -- refused: time ----------------------------------------------------------------------------------------


def test_replayed_old_message_is_refused(keys: Keys, web: FakeWeb) -> None:
    body = encode(sign(notification(), keys.key))  # signed at NOW - 30 s
    assert verifier(web, now=NOW + timedelta(minutes=59)).verify(body)
    refused(lambda: verifier(web, now=NOW + timedelta(hours=1)).verify(body), "older than 1:00:00 .a replay")
    refused(lambda: verifier(web, max_age=timedelta(seconds=10)).verify(body), "older than 0:00:10")


def test_message_from_the_future_is_refused(keys: Keys, web: FakeWeb) -> None:
    assert verifier(web).verify(encode(sign(notification(Timestamp=sns_time(NOW + timedelta(minutes=4))), keys.key)))
    body = encode(sign(notification(Timestamp=sns_time(NOW + timedelta(minutes=6))), keys.key))
    refused(lambda: verifier(web).verify(body), "is in the future")


@pytest.mark.parametrize(("timestamp", "match"), [("yesterday", "not an ISO 8601 time"), ("", "not an ISO 8601"),
                                                  ("2026-11-20T11:59:30", "has no time zone"),
                                                  ("2026-11-20", "has no time zone"),
                                                  # past datetime's end once in UTC: OverflowError, was a 500
                                                  ("9999-12-31T23:59:59-05:00", "not an ISO 8601"),
                                                  ("0001-01-01T00:00:00+01:00", "not an ISO 8601")])
def test_unparseable_timestamp_is_refused(keys: Keys, web: FakeWeb, timestamp: str, match: str) -> None:
    body = encode(sign(notification(Timestamp=timestamp), keys.key))
    refused(lambda: verifier(web).verify(body), match)
    assert web.fetched == []


def test_a_message_that_is_not_unicode_is_refused_not_a_crash(keys: Keys, web: FakeWeb) -> None:
    # "\ud800" in the envelope's JSON is a lone surrogate in Message: SNS signs UTF-8 and cannot have
    # produced it, and the string to sign cannot even be encoded (it raised UnicodeEncodeError: a 500).
    good = sign(notification(), keys.key)
    body = encode({**good, "Message": "bounce \ud800"})
    assert b"\\ud800" in body
    refused(lambda: verifier(web).verify(body), "not Unicode text")


# -- confirm_subscription ---------------------------------------------------------------------------------


@pytest.fixture
def confirmed(keys: Keys, web: FakeWeb) -> SnsMessage:
    message = verifier(web).verify(encode(sign(confirmation(), keys.key)))
    web.fetched.clear()
    return message


def test_confirm_refused_for_unallowed_topic(web: FakeWeb, confirmed: SnsMessage) -> None:
    refused(lambda: verifier(web, topics=(OTHER_TOPIC,)).confirm_subscription(confirmed), "not an allowed topic")
    refused(lambda: verifier(web, topics=()).confirm_subscription(confirmed), "not an allowed topic")
    assert web.fetched == []


@pytest.mark.parametrize("url", [
    "https://evil.example/?Action=ConfirmSubscription&Token=x",
    "https://sns.eu-west-2.amazonaws.com.evil.example/?Action=ConfirmSubscription&Token=x",
    "https://user@sns.eu-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x",
    "https://sns.eu-west-2.amazonaws.com:8443/?Action=ConfirmSubscription&Token=x",
    "http://sns.eu-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x",
    "https://sqs.eu-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x",
])
def test_confirm_refused_for_subscribe_url_on_wrong_host(web: FakeWeb, confirmed: SnsMessage, url: str) -> None:
    web.pages[url] = b"<ConfirmSubscriptionResponse/>"
    forged = dataclasses.replace(confirmed, subscribe_url=url)
    refused(lambda: verifier(web).confirm_subscription(forged),
            "SubscribeURL (host is not an Amazon SNS endpoint|is not https)")
    assert web.fetched == []


@pytest.mark.parametrize("url", [None, "", "https://sns.eu-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
                                 "https://sns.eu-west-2.amazonaws.com/evil?Action=ConfirmSubscription"])
def test_confirm_refused_for_something_else_than_a_confirm_call(web: FakeWeb, confirmed: SnsMessage,
                                                                url: str | None) -> None:
    forged = dataclasses.replace(confirmed, subscribe_url=url)
    refused(lambda: verifier(web).confirm_subscription(forged), "SubscribeURL")
    assert web.fetched == []


def test_confirm_refused_for_a_notification(keys: Keys, web: FakeWeb) -> None:
    message = verifier(web).verify(encode(sign(notification(), keys.key)))
    refused(lambda: verifier(web).confirm_subscription(message), "cannot confirm a Notification")


def test_confirm_fetch_failure_is_refused(web: FakeWeb, confirmed: SnsMessage) -> None:
    del web.pages[SUBSCRIBE_URL]
    refused(lambda: verifier(web).confirm_subscription(confirmed),
            f"cannot fetch SubscribeURL {re.escape(SUBSCRIBE_URL)}: HTTP Error 404")
    assert web.fetched == [SUBSCRIBE_URL]


# -- the default fetcher, against a real local HTTP server ------------------------------------------------


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            body = b""
        else:
            self.send_response(200)
            body = b"x" * (MAX_FETCH_BYTES + 1) if self.path == "/huge" else b"PEM"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_default_fetcher_gets_the_body(server: str) -> None:
    assert urllib_fetch(f"{server}/cert.pem") == b"PEM"


def test_default_fetcher_does_not_follow_redirects(server: str) -> None:
    # A redirect would lead to a host that never passed validation.
    with pytest.raises(OSError, match="302"):
        urllib_fetch(f"{server}/redirect")


def test_default_fetcher_caps_the_size(server: str) -> None:
    with pytest.raises(OSError, match="larger than"):
        urllib_fetch(f"{server}/huge")
