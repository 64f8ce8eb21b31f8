"""One message to one person, outside any send's ledger (the sign-up confirmation)."""
from __future__ import annotations

from components import RenderedIssue

from .message import Envelope, MessageTemplate, Recipient
from .transports import Transport


def send_one(transport: Transport, rendered: RenderedIssue, envelope: Envelope, to: str,
             kind: str = "confirmation") -> str:
    """Build and send it; returns the transport's message id. Raises TransportError.

    To: is the bare address: a display name would be whatever a stranger typed into a form.
    """
    raw = MessageTemplate(rendered, envelope, bulk=False).personalise(Recipient(to, ""))
    # "send" names the outbox folder of the file transport and the SES message tag, as for a send.
    return transport.send(raw, to, {"send": f"{kind}s", "kind": kind})
