"""Which stores an import writes to: one rule for every import method.

With named stores (``enabled_backends``) the request picks them, in this
order: ``"all_stores": true`` -> every store that takes data (read-only
http stores are left out; reserved ``os_glance_*`` ids cannot be
configured); else ``"stores": [ids]``; else the ``X-Image-Meta-Store``
header; else the default store. Naming them two ways at once is refused
(400), and so is a store that is not configured (409) or that only reads
(409). Without named stores the import goes to the one default store and
``stores``, ``all_stores`` and the header are ignored; an import that
tolerates failing stores (``"all_stores_must_succeed": false``) has no
meaning there and is refused (400).

``all_stores_must_succeed`` (default true): every store must take the
data, else the import is undone; false: a failing store is recorded in
``os_glance_failed_import`` and the others carry on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from glance_clone.common import exception

# The request header naming the one store an import (or upload) goes to.
STORE_HEADER = "X-Image-Meta-Store"


@dataclasses.dataclass(frozen=True)
class Flags:
    """The request's ``all_stores`` and ``all_stores_must_succeed``."""

    all_stores: bool
    must_succeed: bool


def _flag(request: dict, name: str, default: bool) -> bool:
    value = request.get(name, default)
    if not isinstance(value, bool):
        raise exception.Invalid("'%s' must be true or false" % name)
    return value


def flags(request: dict) -> Flags:
    """The two flags of an import body; raises Invalid when either is there
    but not a JSON boolean."""
    return Flags(_flag(request, "all_stores", False),
                 _flag(request, "all_stores_must_succeed", True))


def chosen(stores: Any, request: dict, header: str | None) -> list[str | None]:
    """The store ids the import ``request`` (its body) writes to, in order;
    ``[None]`` (the default store) without named stores.

    Raises Invalid (flags not booleans, stores named two ways, a bad
    ``stores`` list, ``all_stores_must_succeed`` false without named
    stores) and Conflict (a store not configured, or read-only).
    """
    wanted = flags(request)
    if not stores.multi:
        if not wanted.must_succeed:
            raise exception.Invalid("'all_stores_must_succeed': false needs several "
                                    "stores (enabled_backends); none are configured")
        return [None]
    named = request.get("stores")
    if wanted.all_stores:
        if named is not None or header:
            raise exception.Invalid("'all_stores' cannot be given with 'stores' or the "
                                    "%s header" % STORE_HEADER)
        return list(stores.writable())
    if named is not None:
        if header:
            raise exception.Invalid("'stores' cannot be given with the %s header"
                                    % STORE_HEADER)
        if (not isinstance(named, list) or not named
                or not all(isinstance(s, str) for s in named)):
            raise exception.Invalid("'stores' must be a list of store ids")
        picked = list(dict.fromkeys(named))
    else:
        picked = [header or stores.default_id]
    for store_id in picked:
        store = stores.stores.get(store_id)
        if store is None:
            raise exception.Conflict("Unknown store '%s'; stores: %s"
                                     % (store_id, ", ".join(stores.stores)))
        if store.read_only:
            raise exception.Conflict("Store '%s' is read-only" % store_id)
    return list(picked)


def listed(stores: Any, targets: list[str | None]) -> list[str]:
    """The targets by id, as ``os_glance_*`` store lists name them (the
    default store's id for None)."""
    return [target or str(stores.default_id) for target in targets]
