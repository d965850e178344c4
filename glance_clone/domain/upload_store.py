"""Which store an upload's ``X-Image-Meta-Store`` header sends the data to:
the one rule of ``PUT /v1/images`` (create or update with data, and
copy-from) and ``PUT /v2/images/{id}/file``.

With named stores (``enabled_backends``) the header names a store by its
id; v1 also still takes a driver's scheme (``file``, ``swift`` ...: that
scheme's first store, the default one first). Without named stores v1
takes the scheme of an enabled store and v2 ignores the header, as newer
Glance does. A name no enabled store answers to is refused (400) before
the image changes; a read-only store (http) refuses the data itself when
it comes (410).
"""

from __future__ import annotations

from typing import Any

from glance_clone.common import exception


def target(stores: Any, name: str | None, schemes: bool) -> str | None:
    """The store (an id or, for v1 ``schemes``, a scheme) the data goes to;
    None for the default store. Raises Invalid for a store not enabled."""
    if name is None or not (stores.multi or schemes):
        return None
    if name in stores.stores or (schemes and _has_scheme(stores, name)):
        return name
    enabled = stores.stores if stores.multi else stores.known_schemes()
    raise exception.Invalid("Required store %s is invalid; enabled: %s"
                            % (name, ", ".join(enabled)))


def _has_scheme(stores: Any, scheme: str) -> bool:
    """Whether an enabled store serves ``scheme`` (with named stores, http
    URLs may be read by a reader that is no store and takes no data)."""
    try:
        stores.target(scheme)
    except exception.UnknownScheme:
        return False
    return True
