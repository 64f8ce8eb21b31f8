"""Amazon SES v2 through boto3: the only module (with sqs.py) that imports boto3.

Errors come back as TransportError, classified by what they prove about the
message (after django-anymail's classification, tightened for exactly-once):
- `retryable` only when SES cannot have accepted it: a throttling answer, or a
  connection that never opened;
- `ambiguous` when it may have: a 5xx answer (SES may have queued the message
  before failing), a read timeout or a reset connection. These are never resent
  here, and botocore must not resend them either (its standard and legacy retry
  modes retry 5xx and connection errors): retries are switched off below;
- `fatal` when the account cannot send (paused, suspended, bad credentials);
- otherwise a 4xx refusal of this one message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
)

from .errors import TransportError

# 4xx answers that refuse for now, not for good: the message was not accepted.
THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
FATAL = {"SendingPausedException", "AccountSendingPausedException", "AccountSuspendedException",
         "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
         "ConfigurationSetDoesNotExistException", "ConfigurationSetSendingPausedException"}


@dataclass(frozen=True)
class Quota:
    max_rate: float  # messages per second
    max_24h: float  # -1: unlimited
    sent_24h: float

    @property
    def remaining(self) -> float | None:
        return None if self.max_24h < 0 else max(0.0, self.max_24h - self.sent_24h)


# The request never left: nothing can have been accepted.
NOT_CONNECTED = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)


def _classify(exc: Exception) -> TransportError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in FATAL:
            return TransportError(f"SES {code}: {message}", code=code, fatal=True)
        if code in THROTTLED or status == 429:
            return TransportError(f"SES {code or status}: {message}", code=code or "Throttling", retryable=True)
        if status >= 500 or not status:
            return TransportError(f"SES answered {status or 'nothing readable'} ({code or 'no code'}: {message}) "
                                  "after the message was handed over: it may have been accepted",
                                  code=code or f"HTTP{status}", ambiguous=True)
        return TransportError(f"SES {code or status}: {message}", code=code)
    if isinstance(exc, NOT_CONNECTED):
        return TransportError(f"cannot reach SES: {exc}", code="NotConnected", retryable=True)
    # A read timeout, a reset or closed connection, a broken stream: the request went out.
    return TransportError(f"no answer from SES ({exc}): the message may have been accepted",
                          code=type(exc).__name__, ambiguous=True)


class SesTransport:
    """SES v2 SendEmail with Content.Raw; message tags map events back to the ledger."""

    name = "ses"

    def __init__(self, configuration_set: str | None = None):
        # Retries are ours, and only for answers that prove nothing was accepted:
        # botocore's would resend after a 5xx or a reset, and duplicate messages.
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=32)
        try:
            self.client = boto3.client("sesv2", config=config)
            self._v1 = boto3.client("ses", config=config)
        except BotoCoreError as exc:
            raise TransportError(f"cannot set up SES: {exc}", fatal=True) from None
        self.configuration_set = configuration_set

    def quota(self) -> Quota:
        """The account's send rate and 24-hour quota: v2 GetAccount, else v1 GetSendQuota."""
        try:
            sq = self.client.get_account()["SendQuota"]
            return Quota(sq["MaxSendRate"], sq["Max24HourSend"], sq["SentLast24Hours"])
        except ClientError:
            pass  # GetAccount needs a permission v1 does not; moto does not implement it
        except BotoCoreError as exc:
            raise _classify(exc) from None
        try:
            v1 = self._v1.get_send_quota()
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from None
        return Quota(v1["MaxSendRate"], v1["Max24HourSend"], v1["SentLast24Hours"])

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        request: dict[str, Any] = {
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": k, "Value": v} for k, v in tags.items()],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            return str(self.client.send_email(**request)["MessageId"])
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from None
