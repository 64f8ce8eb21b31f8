"""Who is asking: the socket peer, or what a trusted proxy says the client was.

X-Forwarded-For and Forwarded are whatever the sender wrote, so they count only when the
connection comes from a proxy named in NEWSLETTER_TRUSTED_PROXIES (none by default). Even
then only the hops those proxies added are believed: walking the list from the right (the
nearest hop), the first address that is not a trusted proxy is the client. Whatever the
client wrote itself sits to the left of that and is never read, so it cannot choose the
address the sign-up limits count against.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(names: Iterable[str]) -> tuple[Network, ...]:
    """The configured proxies (already checked by config) as networks."""
    return tuple(ipaddress.ip_network(name.strip(), strict=False) for name in names)


def client_address(peer: str, headers: Any, trusted: tuple[Network, ...]) -> str:
    """The client's IP address as text; `headers` is the request's (case-insensitive getlist)."""
    nearest = _ip(peer)
    if nearest is None or not _trusted(nearest, trusted):
        return peer
    # X-Forwarded-For first: it is what load balancers and reverse proxies add (ALB, nginx,
    # Caddy, Traefik); a proxy that writes Forwarded instead must not pass the client's own
    # X-Forwarded-For through.
    hops = _x_forwarded_for(headers) or _forwarded_for(headers)
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:  # "unknown" or garbage written by one of our proxies: the last hop it vouched for
            break
        nearest = ip
        if not _trusted(ip, trusted):
            break
    return str(nearest)


def _trusted(ip: Ip, trusted: tuple[Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def _x_forwarded_for(headers: Any) -> list[str]:
    # Several header lines are one list, in order (RFC 9110 §5.3).
    return [hop.strip() for line in headers.getlist("x-forwarded-for") for hop in line.split(",") if hop.strip()]


def _forwarded_for(headers: Any) -> list[str]:
    """The for= of each element of RFC 7239's Forwarded: `for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`."""
    hops = []
    for line in headers.getlist("forwarded"):
        for element in line.split(","):
            for pair in element.split(";"):
                key, _, value = pair.partition("=")
                if key.strip().lower() == "for":
                    hops.append(value.strip().strip('"'))
    return hops


def _ip(text: str) -> Ip | None:
    """An address from a hop, with its port or IPv6 brackets if any; None when it is not one."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
