"""The ``os_glance_*`` image properties: written by glance-api itself,
shown to callers, never set, changed or removed by them (403).

- ``os_glance_import_task``: the id of the task importing the image (the
  import lock): while that task lives no other import starts.
- ``os_glance_importing_to_stores``: stores an import is still writing
  (comma separated, sorted).
- ``os_glance_failed_import``: stores an import failed to write.
- ``os_glance_import_copied`` and ``os_glance_import_size``: bytes an
  import (any method, copy-image included) or a location import has
  moved so far, and how many it expects (when known); updated at most
  every ``[task] task_progress_interval`` seconds, removed with the lock.
- ``os_glance_stage_host``: the node (``worker_self_reference_url``)
  holding the image's staged data; not shown (``HIDDEN``): it is the
  deployment's internal address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from glance_clone.common import exception

PREFIX = "os_glance"
IMPORT_TASK = "os_glance_import_task"
IMPORTING_TO = "os_glance_importing_to_stores"
FAILED_IMPORT = "os_glance_failed_import"
STAGE_HOST = "os_glance_stage_host"
IMPORT_COPIED = "os_glance_import_copied"
IMPORT_SIZE = "os_glance_import_size"
# Never in an image's view, v1 or v2.
HIDDEN = frozenset({STAGE_HOST})


def shown(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The properties an image's view may show: all but ``HIDDEN``."""
    return {name: value for name, value in properties.items() if name not in HIDDEN}


def is_reserved(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def kept(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a caller's write of properties (which may purge the ones
    it leaves out), with every ``os_glance_*`` property of ``old`` kept.

    Raises ReservedProperty when the write would add or change one.
    """
    for name, value in new.items():
        if is_reserved(name) and (name not in old or old[name] != value):
            raise exception.ReservedProperty(property=name)
    result = dict(new)
    result.update((name, value) for name, value in old.items() if is_reserved(name))
    return result


def as_write(old: Mapping[str, Any], properties: Mapping[str, Any],
             purge: bool) -> tuple[dict[str, Any], list[str]]:
    """A caller's write of ``properties`` (all of them, with ``purge``)
    over the ``old`` ones, as sent to the registry: the values to set and
    the names to remove, never an ``os_glance_*`` one and never a purge.
    glance-api may change those properties between the caller's read and
    its write (an import ending): a purge, or the values read, would put
    back what it removed or remove what it added."""
    written = {name: value for name, value in properties.items() if not is_reserved(name)}
    removed = [name for name in old
               if purge and name not in properties and not is_reserved(name)]
    return written, removed


def check_new(names: Iterable[Any]) -> None:
    """Raises ReservedProperty for an ``os_glance_*`` name in a create."""
    for name in names:
        if is_reserved(name):
            raise exception.ReservedProperty(property=name)


def store_list(value: Any) -> list[str]:
    """A comma-separated store list property as a list."""
    return [s for s in (value or "").split(",") if s]


def joined(stores: Iterable[str]) -> str:
    return ",".join(sorted(set(stores)))
