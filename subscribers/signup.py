"""The public side of lists: sign-up with double opt-in, confirmation, one-click leave.

Who may be put on a list by a stranger's form? Nobody who has not confirmed
from their own mailbox, unless the list is single opt-in and the address is
new to it. Someone who unsubscribed or is suppressed comes back only by
confirming a link mailed to them: the form alone never re-subscribes anyone
(design §8), and confirming is their own, fresh consent.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, func, select

from .addresses import Address, address_hash, normalise
from .db import Database, as_utc, utcnow
from .errors import NotAllowed, SubscriberNotFound
from .lists import get_list
from .membership import _leave, _status, refusals
from .people import find, upsert
from .schema import lists, memberships, signup_attempts, subscribers, suppressions

# Sign-ups an address may make in a day, and a client IP in an hour: enough for a
# household behind one router, too few to mail-bomb a stranger.
PER_ADDRESS = (3, dt.timedelta(days=1))
PER_IP = (20, dt.timedelta(hours=1))


@dataclass(frozen=True)
class ListMember:
    subscriber_id: int
    list_id: int
    email: str
    name: str
    list_name: str
    list_title: str
    status: str | None  # None: not on the list (any more)


@dataclass(frozen=True)
class SignUp:
    outcome: str  # "confirm": mail a confirmation; "subscribed": done (single opt-in); "nothing": already on it
    member: ListMember


def sign_up(db: Database, email: str, list_name: str, name: str = "") -> SignUp:
    """What the sign-up form does; the caller mails the confirmation when asked to."""
    address = normalise(email)
    with db.begin() as conn:
        mailing_list = get_list(conn, list_name)
        person = find(conn, address)
        member = _status(conn, mailing_list.id, person.id) if person else None
        # The one guard (membership.refusals): whoever left or is suppressed comes back only by confirming.
        refused = refusals(conn, mailing_list, [address]).get(address.key)
        if member is not None and member.status == "subscribed" and refused is None:
            return SignUp("nothing", _member(conn, person.id, mailing_list.id))
        confirm = mailing_list.double_opt_in or refused is not None
        # A stranger's form never renames someone who is already known.
        subscriber_id = person.id if person else upsert(conn, address, name.strip()[:300], {})[0]
        now = utcnow()
        if member is None:
            conn.execute(memberships.insert().values(
                list_id=mailing_list.id, subscriber_id=subscriber_id, status="unconfirmed" if confirm else "subscribed",
                source="form", subscribed_at=now, confirmed_at=None if confirm else now, updated_at=now))
        elif member.status == "unconfirmed" and not confirm:
            _set_subscribed(conn, subscriber_id, mailing_list.id, now)
        return SignUp("confirm" if confirm else "subscribed", _member(conn, subscriber_id, mailing_list.id))


def confirm_subscription(db: Database, subscriber_id: int, list_id: int,
                         issued_at: dt.datetime | None = None) -> ListMember:
    """The confirmation link was followed: subscribed, and no longer suppressed (they asked, from that mailbox).

    A link made before the person last unsubscribed is stale: following it must
    not undo that (NotAllowed); they can sign up again and get a fresh one.
    """
    with db.begin() as conn:
        found = _member(conn, subscriber_id, list_id)
        if found.status == "subscribed":
            return found
        left = conn.execute(select(memberships.c.unsubscribed_at).where(
            memberships.c.subscriber_id == subscriber_id, memberships.c.list_id == list_id)).scalar()
        # Token times are whole seconds, rounded down: only a leave after that second is surely later.
        if issued_at is not None and left is not None and as_utc(left) >= issued_at + dt.timedelta(seconds=1):
            raise NotAllowed("this confirmation link was made before you unsubscribed; please sign up again")
        now = utcnow()
        if found.status is None:
            conn.execute(memberships.insert().values(
                list_id=list_id, subscriber_id=subscriber_id, status="subscribed", source="form",
                subscribed_at=now, confirmed_at=now, updated_at=now))
        else:
            _set_subscribed(conn, subscriber_id, list_id, now)
        key = conn.execute(select(subscribers.c.email_key).where(subscribers.c.id == subscriber_id)).scalar_one()
        conn.execute(delete(suppressions).where(suppressions.c.email_hash == address_hash(key)))
        return _member(conn, subscriber_id, list_id)


def list_member(db: Database, subscriber_id: int, list_id: int) -> ListMember:
    """Who and which list a link names (raises SubscriberNotFound / NotAllowed when gone)."""
    with db.begin() as conn:
        return _member(conn, subscriber_id, list_id)


def leave(db: Database, subscriber_id: int, list_id: int, source: str = "link") -> tuple[ListMember, bool]:
    """Unsubscribe through a link: idempotent; True when this call changed something."""
    with db.begin() as conn:
        found = _member(conn, subscriber_id, list_id)
        changed = bool(_leave(conn, subscriber_id, list_id, source))
        return (_member(conn, subscriber_id, list_id) if changed else found), changed


def allow_attempt(db: Database, address: Address, client: str, now: dt.datetime | None = None) -> bool:
    """Count a sign-up attempt against the address's and the client's limits; False when over either."""
    now = now or utcnow()
    keys = [("address", address.hash, PER_ADDRESS), ("ip", _hash(client), PER_IP)]
    with db.begin() as conn:
        oldest = now - max(PER_ADDRESS[1], PER_IP[1])
        conn.execute(delete(signup_attempts).where(signup_attempts.c.at < oldest))
        for bucket, key, (limit, window) in keys:
            if _attempts(conn, bucket, key, now - window) >= limit:
                return False
        conn.execute(signup_attempts.insert(), [{"bucket": b, "key_hash": k, "at": now} for b, k, _ in keys])
    return True


def _attempts(conn: Connection, bucket: str, key: str, since: dt.datetime) -> int:
    return int(conn.execute(select(func.count()).select_from(signup_attempts).where(
        signup_attempts.c.bucket == bucket, signup_attempts.c.key_hash == key, signup_attempts.c.at > since,
    )).scalar() or 0)


def _hash(text: str) -> str:
    return hashlib.sha256(f"newsletter.client:{text}".encode()).hexdigest()


def _set_subscribed(conn: Connection, subscriber_id: int, list_id: int, now: dt.datetime) -> None:
    conn.execute(memberships.update().where(
        memberships.c.list_id == list_id, memberships.c.subscriber_id == subscriber_id,
    ).values(status="subscribed", confirmed_at=now, unsubscribed_at=None, updated_at=now, source="form"))


def _member(conn: Connection, subscriber_id: int, list_id: int) -> ListMember:
    row = conn.execute(
        select(subscribers.c.email, subscribers.c.name, lists.c.name.label("list_name"), lists.c.title,
               lists.c.removed_at, memberships.c.status)
        .select_from(subscribers.join(lists, lists.c.id == list_id).outerjoin(
            memberships, and_(memberships.c.subscriber_id == subscribers.c.id, memberships.c.list_id == list_id)))
        .where(subscribers.c.id == subscriber_id)).first()
    if row is None:
        raise SubscriberNotFound("this link names nobody we hold any more")
    if row.removed_at is not None:
        raise NotAllowed(f"the list {row.list_name!r} no longer exists")
    return ListMember(subscriber_id, list_id, row.email, row.name, row.list_name, row.title or row.list_name,
                      row.status)
