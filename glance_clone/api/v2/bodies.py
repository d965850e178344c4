"""v2 request bodies: image create and JSON-patch documents, checked
against the image schema before anything reaches the domain.

Refused with 403: attributes only the service sets (read-only in the
schema), the links (``self``, ``file``, ``schema``), ``direct_url``,
``location``, ``deleted``/``deleted_at``, any name in the ``os_glance``
namespace, and ``locations`` at create (a PATCH may change them:
``/locations/<n>`` or ``/locations/-`` to add or remove one, ``/locations``
to replace them all; the domain decides who may). Refused with 400: anything the schema
refuses, property names over 255 characters, malformed patches.
Refused with 415: a PATCH media type other than the two v2 ones.
Refused with 400 as in newer Glance: any body on the reads, deletes and
actions that take none (``NoBody``).
"""

from __future__ import annotations

from typing import Any

from glance_clone.api.v1.images import has_body
from glance_clone.api.v2.schemas import Schemas
from glance_clone.common import exception
from glance_clone.domain.catalog import Change

PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_TYPES = (PATCH_V20, PATCH_V21)
# Never written by a caller; named apart from the schema's read-only ones
# because they are not (all) in the schema.
RESERVED = frozenset(("location", "locations", "deleted", "deleted_at", "direct_url",
                      "self", "file", "schema", "stores"))
RESERVED_PREFIX = "os_glance"
# Refused at create before the schema is consulted: the links and what
# only the stores tell. Every other refusal comes after it, so a value the
# schema refuses is a 400 whatever its name ({"status": "bogus"}).
NEVER_CREATED = frozenset(("self", "file", "schema", "direct_url", "stores"))
LOCATIONS = "locations"
NAME_LENGTH = 255
OPERATIONS = ("add", "remove", "replace")


def _forbidden(name: str) -> exception.Forbidden:
    return exception.Forbidden("Attribute '%s' is read-only." % name)


def _check_name(schemas: Schemas, name: str) -> None:
    """Raises Forbidden for names no caller writes, Invalid for long ones."""
    if name in RESERVED or name in schemas.read_only_properties():
        raise _forbidden(name)
    if name.startswith(RESERVED_PREFIX):
        raise exception.Forbidden("Attribute '%s' is reserved." % name)
    if len(name) > NAME_LENGTH:
        raise exception.Invalid("Property names are at most %d characters" % NAME_LENGTH)


def create_values(schemas: Schemas, body: Any) -> dict[str, Any]:
    """The base attributes and ``properties`` of a create body."""
    if not isinstance(body, dict):
        raise exception.Invalid("The request body must be a JSON object")
    for name in body:
        if name in NEVER_CREATED:
            raise _forbidden(name)
    schemas.validate_image(body)
    for name in body:
        _check_name(schemas, name)
    base = schemas.base_properties()
    values: dict[str, Any] = {"properties": {}}
    for name, value in body.items():
        if name in base:
            values[name] = value
        else:
            values["properties"][name] = value
    return values


def _pointer(path: Any, op: str) -> tuple[str, Any]:
    """The attribute a JSON pointer names, and for an add or remove of a
    location its position (an index or "-"); raises Invalid."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise exception.Invalid("Pointer `%s` does not start with \"/\"." % path)
    segments = [_segment(path, segment) for segment in path[1:].split("/")]
    depth = 2 if segments[0] == LOCATIONS and op != "replace" else 1
    if len(segments) != depth:
        raise exception.Invalid("Pointer `%s` must have %d segment(s) for this "
                                "operation." % (path, depth))
    if depth == 1:
        return segments[0], None
    position = segments[1]
    if position != "-" and not position.isdigit():
        raise exception.Invalid("Invalid position `%s` in pointer `%s`."
                                % (position, path))
    return LOCATIONS, position if position == "-" else int(position)


def _segment(path: str, segment: str) -> str:
    if not segment.strip():
        raise exception.Invalid("Pointer `%s` contains an empty segment." % path)
    if "~" in segment.replace("~0", "").replace("~1", ""):
        raise exception.Invalid("Pointer `%s` contains \"~\" not part of a "
                                "recognized escape sequence." % path)
    return segment.replace("~1", "/").replace("~0", "~").strip()


def _operation(raw: Any, media_type: str) -> tuple[str, Any]:
    if not isinstance(raw, dict):
        raise exception.Invalid("Each change must be a JSON object")
    if media_type == PATCH_V21:
        op = raw.get("op")
        if op not in OPERATIONS:
            raise exception.Invalid("Unable to find `op` in JSON Schema change. It "
                                    "must be one of: add, remove, replace.")
        if "path" not in raw:
            raise exception.Invalid("Unable to find 'path' in JSON Schema change")
        return op, raw["path"]
    found = [op for op in OPERATIONS if op in raw]
    if len(found) != 1:
        raise exception.Invalid("A change must have exactly one of add, remove, "
                                "replace")
    return found[0], raw[found[0]]


def patch_changes(schemas: Schemas, media_type: str, body: Any) -> list[Change]:
    """The changes of a PATCH body, each checked; raises Invalid, Forbidden."""
    if not isinstance(body, list):
        raise exception.Invalid("Request body must be a JSON array of operation "
                                "objects.")
    changes = []
    for raw in body:
        op, path = _operation(raw, media_type)
        name, position = _pointer(path, op)
        if name == "id":
            raise _forbidden(name)
        if name != LOCATIONS:
            _check_name(schemas, name)
        value = None
        if op != "remove":
            if "value" not in raw:
                raise exception.Invalid("Operation \"%s\" requires a member named "
                                        "\"value\"." % op)
            value = raw["value"]
            # One location is checked as a list of one.
            schemas.validate_image({name: [value] if position is not None else value},
                                   partial=True)
        changes.append(Change(op, name, value, add_conflicts=media_type == PATCH_V20,
                              position=position))
    return changes


def member_id(body: Any) -> str:
    """The member of ``{"member": "<project>"}``; raises Invalid."""
    if not isinstance(body, dict) or "member" not in body:
        raise exception.Invalid("Member to be added not specified")
    member = body["member"]
    if not isinstance(member, str) or not member.strip():
        raise exception.Invalid("Member can't be empty")
    if len(member) > NAME_LENGTH:
        raise exception.Invalid("Member is longer than %d characters" % NAME_LENGTH)
    return member


def member_status(body: Any) -> Any:
    """The status of ``{"status": ...}`` (checked by the domain)."""
    if not isinstance(body, dict) or "status" not in body:
        raise exception.Invalid("Status not specified")
    return body["status"]


class NoBody:
    """A deserializer whose ``actions`` take no body: a request that sends
    one (Content-Length or chunked) is refused before the action runs; the
    other actions go to ``inner``."""

    def __init__(self, inner: Any, actions: tuple[str, ...]) -> None:
        self.inner = inner
        self.actions = frozenset(actions)

    def dispatch(self, req: Any, action: str) -> dict[str, Any]:
        if action in self.actions and has_body(req):
            raise exception.Invalid("A body is not expected with this request.")
        result: dict[str, Any] = self.inner.dispatch(req, action)
        return result
