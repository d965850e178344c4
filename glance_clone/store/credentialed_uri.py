"""Locations that carry their credentials, as Glance writes them for Swift and S3.

``<scheme>://<user>:<secret>@<address>/<container>/<object>``: user and
secret URL-quoted, the address being the endpoint without its scheme, which
the location scheme tells instead (``swift+http``, ``s3+https``...). One
``UriFormat`` per store formats and parses them; its messages name the store
and never the secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from glance_clone.common import exception

# (endpoint URL, user, secret)
CredentialFields = tuple[str, str, str]


def check_object_name(image_id: str) -> None:
    """Refuse ids that cannot be one object name in a location; raises Invalid."""
    if (not image_id or "/" in image_id or "@" in image_id or "\0" in image_id
            or len(image_id) > 200):
        raise exception.Invalid(f"Image id {image_id!r} cannot name a store object")


@dataclass(frozen=True)
class UriFormat:
    """How one store spells its locations, and names things in its messages."""

    store: str                   # "Swift": starts every message
    a_store: str                 # "a Swift": the store's name with its article
    prefixes: Mapping[str, str]  # endpoint scheme ("http") -> location scheme
    default: str                 # endpoint scheme of any other scheme
    credentials: str             # how the credentials are written, "user:key"
    missing: str                 # what a location without them lacks, "user:password"
    path: str                    # what the path names, "a host, a bucket and a key"

    def format(self, endpoint: str, user: str, secret: str, container: str,
               obj: str) -> str:
        """The location URI of ``obj`` (it contains the secret)."""
        scheme, _, address = endpoint.partition("://")
        prefix = self.prefixes.get(scheme, self.prefixes[self.default])
        userinfo = f"{quote(user, safe='')}:{quote(secret, safe='')}"
        return f"{prefix}://{userinfo}@{address.strip('/')}/{container}/{obj}"

    def parse(self, url: str, schemes: Iterable[str]) -> tuple[CredentialFields, str, str]:
        """Split a location into ((endpoint, user, secret), container, object).

        Raises BadStoreUri (whose message has no secret).
        """
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in schemes:
            raise exception.BadStoreUri(f"Not {self.a_store} location.")
        # The last '@' ends the credentials: Glance left '/' unquoted in secrets.
        userinfo, at, path = rest.rpartition("@")
        if not at:
            raise exception.BadStoreUri(
                f"{self.store} location is missing {self.missing} information.")
        user, colon, secret = userinfo.partition(":")
        if not colon or ":" in secret or not user:
            raise exception.BadStoreUri(f"Badly formed {self.store} credentials in "
                                        f"location: use URL-quoted {self.credentials}.")
        parts = path.split("?", 1)[0].split("/")
        if len(parts) < 3 or not all(parts[-2:]) or not parts[0]:
            raise exception.BadStoreUri(f"{self.store} location must name {self.path}.")
        endpoint_schemes = {prefix: http for http, prefix in self.prefixes.items()}
        http = endpoint_schemes.get(scheme, self.default)
        endpoint = f"{http}://{'/'.join(parts[:-2]).rstrip('/')}"
        return ((endpoint, unquote(user), unquote(secret)),
                unquote(parts[-2]), unquote(parts[-1]))
