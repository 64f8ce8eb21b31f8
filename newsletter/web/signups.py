"""Sign-ups carried out after the answer has gone (design §7).

The form's answer must take the same time whoever asks: storing a new person and
rendering and mailing their confirmation takes far longer than finding someone already
subscribed, and that difference told a stranger who is on a list. So the request only
counts the attempt against the rate limits (the same database work for every address)
and queues the sign-up; one thread of the serve process itself stores it and mails the
confirmation within seconds. No separate worker process is needed. The queue lives in
memory: a sign-up queued when the process is killed is lost, and its owner signs up
again, which is also what they do when a confirmation goes astray.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("newsletter.web")

CAPACITY = 1000  # sign-ups waiting; past this the form answers 503 (try again shortly)


@dataclass(frozen=True)
class SignUpRequest:
    email: str  # normalised, as stored and sent
    list_name: str
    name: str  # stored for later issues' merge fields; never put in the confirmation


class SignUps:
    """A queue and the one thread that works through it: started with the app's lifespan, or by the
    first sign-up when the server runs none; stopped (after finishing what is queued) at shutdown."""

    def __init__(self, work: Callable[[SignUpRequest], None], capacity: int = CAPACITY):
        self._work = work
        self._queue: queue.Queue[SignUpRequest | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="newsletter-signups", daemon=True)
                self._thread.start()

    def submit(self, request: SignUpRequest) -> bool:
        """Queue it; False when the queue is full."""
        self.start()
        with self._idle:
            try:
                self._queue.put_nowait(request)
            except queue.Full:
                return False
            self._pending += 1
        return True

    def wait_idle(self, timeout: float) -> bool:
        """True once everything submitted so far has been carried out (or given up on)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (for at most `timeout` seconds), then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                self._work(request)
            except Exception as exc:  # noqa: BLE001 - one failed sign-up must not stop the others
                _log_failure(request, exc)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


def _log_failure(request: SignUpRequest, exc: Exception) -> None:
    from mailer import MailerError
    from subscribers import SubscribersError

    from .pages import mask
    what = f"the sign-up of {mask(request.email)} to {request.list_name!r} could not be finished"
    if isinstance(exc, (MailerError, SubscribersError)):  # the relay or the database: said in one line
        log.warning("%s: %s", what, exc)
    else:  # a bug: its traceback is wanted
        log.exception(what)


def sign_up_and_confirm(service: Any, request: SignUpRequest) -> None:
    """Store the sign-up; mail the confirmation when the list (or the person's past) asks for one."""
    from components import render_confirmation
    from mailer import send_one
    from subscribers import NotAllowed, display_address, sign_up

    from ..wiring import envelope
    try:
        signed = sign_up(service.db, request.email, request.list_name, request.name)
    except NotAllowed:
        return  # e.g. the list was removed meanwhile
    if signed.outcome == "subscribed":  # a single opt-in list: joined now
        from mailer import welcome_newcomer
        welcome_newcomer(service.db, signed.member.list_id, signed.member.subscriber_id)
    if signed.outcome != "confirm":
        return
    member = signed.member
    token = service.tokens.confirm(member.subscriber_id, member.list_id)
    url = f"{service.settings.base_url.rstrip('/')}/confirm/{token}"
    rendered = render_confirmation(list_title=member.list_title, email=display_address(member.email),
                                   confirm_url=url, theme=service.settings.theme, footer=service.footer)
    send_one(service.transport(), rendered, envelope(service.settings, member.list_name), member.email)
