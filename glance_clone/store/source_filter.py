"""Which external URLs glance-api may read image data from.

Image locations (``x-image-meta-location``) and copy-from URLs
(``x-glance-api-copy-from``) make glance-api fetch a URL chosen by the
caller. Unchecked, that lets any user probe or read services reachable only
from the API host (metadata services, admin ports, loopback daemons).
``check_source`` is applied to the URL a user supplies and, by the HTTP
store, to every redirect hop.

Options (section ``[import_filtering_opts]``, lists are comma separated):

``allowed_schemes`` (default ``http,https``) / ``disallowed_schemes``
    A scheme must be in the first (when non-empty) and not in the second.
    ``file``, ``filesystem`` and ``swift+config`` are always refused.
``allowed_hosts`` / ``disallowed_hosts``
    When ``allowed_hosts`` is non-empty only those hosts are accepted.
    A host is compared as written in the URL, lower-cased, without
    brackets or a trailing dot; a disallowed entry also matches any
    address the name resolves to.
``allowed_ports`` (default ``80,443``) / ``disallowed_ports``
    Port numbers; the scheme's default port counts when none is written.
    By default only the standard HTTP and HTTPS ports may be used, so a
    source URL cannot reach a service listening on some other port of a
    public host (SSH, databases, admin consoles). Set ``allowed_ports`` to
    an empty value to allow any port not in ``disallowed_ports``.

Beyond Glance: unless the host is listed in ``allowed_hosts``, its name is
resolved and every address must be public: loopback, private, link-local,
multicast, reserved, unspecified and other non-global addresses are
refused, whatever the spelling (``2130706433``, ``0x7f.1``, ``[::1]``,
``::ffff:127.0.0.1``, ``localhost``). To fetch from an internal server on
purpose, list its host name or address in ``allowed_hosts``.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from oslo_config import cfg, types

from glance_clone.common import exception

GROUP = "import_filtering_opts"

_PORT = types.Integer(min=1, max=65535)

OPTS = [
    cfg.ListOpt("allowed_schemes", default=["http", "https"],
                help="URL schemes external sources may use."),
    cfg.ListOpt("disallowed_schemes", default=[],
                help="URL schemes external sources may not use."),
    cfg.ListOpt("allowed_hosts", default=[],
                help="If set, the only hosts external sources may name; a "
                     "listed host may also be an internal address."),
    cfg.ListOpt("disallowed_hosts", default=[],
                help="Hosts (names or addresses) external sources may not use."),
    cfg.ListOpt("allowed_ports", item_type=_PORT, default=[80, 443],
                help="The only ports external sources may use (a URL without a "
                     "port uses its scheme's default). Empty: any port not in "
                     "disallowed_ports."),
    cfg.ListOpt("disallowed_ports", item_type=_PORT, default=[],
                help="Ports external sources may not use."),
]

#: Schemes that name local resources or operator credentials.
ALWAYS_REFUSED = frozenset({"file", "filesystem", "swift+config"})

DEFAULT_PORTS = {"http": 80, "https": 443, "swift+http": 80, "swift+https": 443,
                 "swift": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052) addresses carry an IPv4 address in their last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[import_filtering_opts]`` options."""
    conf.register_opts(OPTS, group=GROUP)


def normalize_host(host: str) -> str:
    """Lower-case ``host`` and drop IPv6 brackets and a trailing dot."""
    return host.strip().lower().strip("[]").rstrip(".")


def is_internal_address(address: str | IPAddress) -> bool:
    """True if ``address`` is not a public unicast address.

    IPv6 forms that embed an IPv4 address (mapped, 6to4, NAT64) are judged
    by the embedded address too; Teredo is refused outright.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.teredo is not None or (embedded is not None and is_internal_address(embedded)):
            return True
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """All addresses ``host`` resolves to, as the HTTP client would see them.

    Raises OSError/UnicodeError when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def host_is_allowed(conf: cfg.ConfigOpts, host: str) -> bool:
    """True if ``host`` (as written) is listed in ``allowed_hosts``."""
    allowed = {normalize_host(h) for h in conf[GROUP].allowed_hosts}
    return normalize_host(host) in allowed


def check_address(conf: cfg.ConfigOpts, host: str, address: str, url: str) -> None:
    """Refuse a connection to ``address`` (resolved from ``host``).

    For use once a socket is connected, so a name that resolves differently
    between the check and the connection (DNS rebinding) is still caught.
    Raises ExternalSourceRefused.
    """
    if host_is_allowed(conf, host):
        return
    disallowed = {normalize_host(h) for h in conf[GROUP].disallowed_hosts}
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as err:
        raise exception.ExternalSourceRefused(url=url) from err
    if is_internal_address(ip) or str(ip) in disallowed:
        raise exception.ExternalSourceRefused(url=url)


def check_resolved_host(conf: cfg.ConfigOpts, host: str, port: int | None, url: str) -> None:
    """Resolve ``host`` and refuse it if any address is internal or
    disallowed, unless the host is in ``allowed_hosts``.

    Raises ExternalSourceRefused, also when the name does not resolve.
    """
    if host_is_allowed(conf, host):
        return
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError, ValueError) as err:
        raise exception.ExternalSourceRefused(url=url) from err
    if not addresses:
        raise exception.ExternalSourceRefused(url=url)
    for address in addresses:
        check_address(conf, host, str(address), url)


def _split(url: str) -> tuple[SplitResult, str, int | None]:
    """Parse ``url`` strictly; raises ValueError if anything is odd.

    Whitespace, control characters and backslashes are refused because
    URL parsers disagree about them, and a parser disagreement is how a
    checked host becomes a different connected host.
    """
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise ValueError("unsafe characters")
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("no host")
    scheme = parts.scheme.lower()
    return parts, normalize_host(parts.hostname), parts.port or DEFAULT_PORTS.get(scheme)


def check_source(conf: cfg.ConfigOpts, url: str) -> None:
    """Refuse an external source URL the operator has not allowed.

    Raises Invalid for an empty URL and ExternalSourceRefused ("External
    sources are not supported: '<url>'") for a refused one.
    """
    if not url or not url.strip():
        raise exception.Invalid("External source should not be empty")
    opts = conf[GROUP]
    refused = exception.ExternalSourceRefused(url=url)
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    allowed_schemes = {s.strip().lower() for s in opts.allowed_schemes}
    if (not scheme or scheme in ALWAYS_REFUSED
            or (allowed_schemes and scheme not in allowed_schemes)
            or scheme in {s.strip().lower() for s in opts.disallowed_schemes}):
        raise refused
    try:
        _parts, host, port = _split(url)
    except ValueError as err:  # includes a non-numeric or out-of-range port
        raise refused from err
    if (opts.allowed_ports and port not in opts.allowed_ports) or port in opts.disallowed_ports:
        raise refused
    if opts.allowed_hosts and not host_is_allowed(conf, host):
        raise refused
    if host in {normalize_host(h) for h in opts.disallowed_hosts}:
        raise refused
    check_resolved_host(conf, host, port, url)
