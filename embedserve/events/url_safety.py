"""Where a webhook may go: http(s) URLs whose every address is public, unless private ones are allowed.

Checked when an endpoint is registered and again before every attempt, because what a name
resolves to can change (DNS rebinding): the attempt then connects to an address checked here,
never to a fresh lookup (embedserve/events/delivery.py pins it).
Refused: loopback, private (RFC 1918, unique-local), link-local (where cloud metadata services
live: 169.254.169.254, fd00:ec2::254), shared (100.64/10, Alibaba's metadata), unspecified,
multicast and reserved addresses: anything that is not globally routable.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# Longest URL an endpoint may have (what browsers and proxies handle everywhere).
MAX_URL_CHARS = 2048


class UnsafeURL(ValueError):
    """A webhook URL we will not send to; the message says why."""


class Unresolvable(UnsafeURL):
    """A webhook URL whose host has no address now (it may have one later)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`) and what to ask for."""

    scheme: str
    host: str  # as written: the Host header and TLS server name
    port: int
    path: str  # path and query
    address: str  # the checked IP the connection goes to


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, or UnsafeURL saying what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise UnsafeURL(f"a webhook URL is an http:// or https:// URL of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"the webhook URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"the webhook URL {url!r} must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeURL("the webhook URL must not carry a user name or password (the signature authenticates us)")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeURL("the webhook URL must not contain spaces or control characters")
    if not (parts.path + parts.query).isascii():  # http.client sends the request line in ASCII
        raise UnsafeURL("the webhook URL's path and query must be ASCII (percent-encode other characters)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def unsafe_reason(address: str) -> str | None:
    """Why an IP address is no place for a webhook, or None when it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    for reason in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{reason}"):
            return reason.replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


def resolve(url: str, allow_private: bool) -> Target:
    """Check `url` and its addresses now; the Target to connect to, or UnsafeURL.

    Every address the name has must pass, not just the first: otherwise a name with one public and
    one private address would pass here and reach the private one on another attempt.
    """
    scheme, host, port, path = parse(url)
    addresses = _addresses(host, port)
    if not allow_private:
        for address in addresses:
            reason = unsafe_reason(address)
            if reason is not None:
                raise UnsafeURL(f"the webhook URL's host {host!r} resolves to {address}, a {reason} address; "
                                "webhooks go only to public addresses unless EMBED_WEBHOOK_ALLOW_PRIVATE=true")
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def _addresses(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]  # a literal address needs no lookup
    except ValueError:
        pass
    # getaddrinfo has no timeout of its own; the resolver's (a few seconds) bounds it. Only the
    # sender thread waits on it, never a request.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"the webhook URL's host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolvable(f"the webhook URL's host {host!r} has no address")
    return addresses
