"""Amazon SES v2 through boto3: the only module (with sqs.py) that imports boto3.

Errors come back as TransportError with `retryable` (throttling, 5xx) or
`fatal` (the account cannot send: stop the whole send) set, after the way
django-anymail classifies SES errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .errors import TransportError

RETRYABLE = {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable",
             "InternalFailure", "InternalServiceError", "RequestTimeout", "LimitExceededException"}
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


def _classify(exc: Exception) -> TransportError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        return TransportError(f"SES {code or status}: {message}", code=code,
                              retryable=code in RETRYABLE or status >= 500 or status == 429,
                              fatal=code in FATAL)
    if isinstance(exc, EndpointConnectionError):  # nothing answers: stop, resumably, rather than retry
        return TransportError(f"cannot reach SES: {exc}", fatal=True)
    return TransportError(f"SES: {exc}", retryable=True)


class SesTransport:
    """SES v2 SendEmail with Content.Raw; message tags map events back to the ledger."""

    name = "ses"

    def __init__(self, configuration_set: str | None = None):
        # Retries are ours (backoff with jitter, per recipient); botocore's would hide them.
        config = Config(retries={"total_max_attempts": 1}, max_pool_connections=32)
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
