"""``POST /images/search``: image lists as the v2 API asks for them.

Our extension of the v1 registry (Glance 11 had a JSON-RPC endpoint for
v2). glance-api parses the v2 query string (``in:``, ``gt:``...) and sends
the search as JSON; here every value is checked again, since the registry
trusts no caller, and handed to ``Database.image_search``. A POST because
the search is a document, but a read: nothing is written.

Body (all keys optional)::

    {"visibility": "public|private|shared|community|all" or null,
     "member_status": "pending|accepted|rejected|all",
     "os_hidden": true|false|null,
     "columns": {"<column>": ["<op>", <value or list for "in">]},
     "size_min": int, "size_max": int, (and the same for virtual_size,
     min_ram, min_disk: inclusive ranges)
     "properties": {"<name>": "<value>"}, "tags": ["<tag>", ...],
     "sort": [["<key>", "asc|desc"], ...], "marker": "<id>", "limit": int}

Answer: ``{"images": [<full image>, ...]}``, as ``/images/detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception, wsgi
from glance_clone.common.timeutil import naive_utc
from glance_clone.db import search
from glance_clone.db.api import MAX_BIGINT, SORT_DIRS, SORT_KEYS, Database
from glance_clone.registry.api.v1 import images

TEXT_COLUMNS = ("name", "id", "status", "container_format", "disk_format",
                "checksum", "os_hash_algo", "os_hash_value", "owner",
                "visibility")
INTEGER_COLUMNS = ("size", "virtual_size", "min_ram", "min_disk")
BOOLEAN_COLUMNS = ("protected",)
TIME_COLUMNS = ("created_at", "updated_at")
MAX_IN_VALUES = 500
MAX_TERMS = 64


def _bad(message: str) -> exception.Invalid:
    return exception.Invalid("Invalid image search: %s" % message)


def _scalar(column: str, value: Any) -> Any:
    if column in TEXT_COLUMNS:
        if not isinstance(value, str):
            raise _bad("%s values must be strings" % column)
        images.check_text(column, value)
        return value
    if column in INTEGER_COLUMNS:
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value <= MAX_BIGINT:
            raise _bad("%s values must be non-negative integers" % column)
        return value
    if column in BOOLEAN_COLUMNS:
        if not isinstance(value, bool):
            raise _bad("%s values must be true or false" % column)
        return value
    if not isinstance(value, str):
        raise _bad("%s values must be ISO 8601 times" % column)
    try:
        return naive_utc(value)
    except (ValueError, OverflowError):
        raise _bad("%s values must be ISO 8601 times" % column) from None


def _columns(value: Any) -> dict[str, tuple[str, Any]]:
    if not isinstance(value, dict) or len(value) > MAX_TERMS:
        raise _bad("'columns' must be an object of at most %d filters" % MAX_TERMS)
    columns: dict[str, tuple[str, Any]] = {}
    known = TEXT_COLUMNS + INTEGER_COLUMNS + BOOLEAN_COLUMNS + TIME_COLUMNS
    for column, term in value.items():
        if column not in known:
            raise _bad("no filter on '%s'" % column)
        if not isinstance(term, list) or len(term) != 2 \
                or term[0] not in search.COMPARISONS:
            raise _bad("a filter is [operator, value] with an operator of %s"
                       % ", ".join(search.COMPARISONS))
        operator, operand = term
        if operator == "in":
            if not isinstance(operand, list) or len(operand) > MAX_IN_VALUES:
                raise _bad("'in' takes a list of at most %d values" % MAX_IN_VALUES)
            columns[column] = (operator, [_scalar(column, v) for v in operand])
        else:
            columns[column] = (operator, _scalar(column, operand))
    return columns


def _strings(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TERMS \
            or not all(isinstance(item, str) for item in value):
        raise _bad("'%s' must be a list of at most %d strings" % (name, MAX_TERMS))
    for item in value:
        images.check_text(name, item)
    return list(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _bad("'%s' must be one of %s" % (name, ", ".join(choices)))
    return str(value)


def _sort(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value or len(value) > len(SORT_KEYS):
        raise _bad("'sort' must be a non-empty list of [key, direction]")
    keys = []
    for term in value:
        if not isinstance(term, list) or len(term) != 2:
            raise _bad("'sort' must be a list of [key, direction]")
        keys.append((_choice("sort key", term[0], SORT_KEYS),
                     _choice("sort direction", term[1], SORT_DIRS)))
    return keys


def _size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= MAX_BIGINT:
        raise _bad("'%s' must be a non-negative integer" % name)
    return value


def parse(body: Any, conf: cfg.ConfigOpts) -> dict[str, Any]:
    """The checked search of a request body; raises Invalid."""
    if not isinstance(body, Mapping):
        raise _bad("the body must be a JSON object")
    parsed: dict[str, Any] = {}
    if body.get("visibility") is not None:
        parsed["visibility"] = _choice("visibility", body["visibility"],
                                       search.SEARCH_VISIBILITIES)
    parsed["member_status"] = _choice(
        "member_status", body.get("member_status", "accepted"),
        search.SEARCH_MEMBER_STATUSES)
    hidden = body.get("os_hidden", False)
    if hidden is not None and not isinstance(hidden, bool):
        raise _bad("'os_hidden' must be true, false or null")
    parsed["os_hidden"] = hidden
    parsed["columns"] = _columns(body.get("columns") or {})
    for name in search.RANGES:
        if body.get(name) is not None:
            parsed[name] = _size(name, body[name])
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise _bad("'properties' must be an object")
    _strings("properties", list(properties) + list(properties.values()))
    parsed["properties"] = dict(properties)
    parsed["tags"] = _strings("tags", body.get("tags") or [])
    parsed["sort"] = _sort(body.get("sort") or [["created_at", "desc"]])
    marker = body.get("marker")
    if marker is not None and not isinstance(marker, str):
        raise _bad("'marker' must be an image id")
    parsed["marker"] = marker
    limit = body.get("limit")
    if limit is None:
        limit = int(conf.limit_param_default)
    limit = _size("limit", limit)
    parsed["limit"] = min(limit, int(conf.api_limit_max))
    return parsed


class Controller:
    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        self.conf = conf
        self.db = db

    def search(self, req: wsgi.Request, body: Any = None) -> dict[str, Any]:
        """A page of images; raises Invalid (bad search, unknown marker)."""
        query = parse(body, self.conf)
        try:
            found = self.db.image_search(req.context, query)
        except exception.NotFound:
            raise exception.Invalid("Invalid marker. Image could not be found.") from None
        return {"images": [images.full_view(image) for image in found]}


def create_resource(conf: cfg.ConfigOpts, db: Database) -> wsgi.Resource:
    return wsgi.Resource(Controller(conf, db))
