"""URLs as they may be shown in error messages and log lines.

An image location or copy-from URL is chosen by a caller, and a redirect
target by a remote server. Either can carry secrets: user and password
before the host, a signed query string, a token in the path. An error
message reaches every tenant that can see the image, and logs reach
operators and log collectors, so a URL is only ever shown through
``redact_url``: scheme and host, nothing else.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A registered name or an IPv4 address, or an IPv6 address in brackets:
# anything else (spaces, line breaks...) is not echoed at all.
_HOST = re.compile(r"[A-Za-z0-9._~%-]*|\[[0-9A-Fa-f:.]+\]")
# No angle brackets: webob strips what looks like a tag from messages.
NO_SCHEME = "(a URL without a scheme)"


def redact_url(url: str) -> str:
    """``scheme://host`` of ``url``: no user, password, port, path, query
    or fragment. A URL without ``scheme://`` gives ``NO_SCHEME``."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return NO_SCHEME
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host.partition("]")[0] + "]"
    else:
        host = host.partition(":")[0]
    if not _HOST.fullmatch(host):
        host = "?"
    return "%s://%s" % (scheme.lower(), host.lower())
