"""The v2 list query string, as a registry search.

``GET /v2/images?name=in:a,b&created_at=gt:2020-01-01T00:00:00Z&tag=x&
sort=name:asc,size:desc&limit=20&marker=<id>``: every parameter is checked
here (400 naming the problem) and turned into the structured search the
registry's ``POST /images/search`` takes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from glance_clone.common import exception
from glance_clone.common.timeutil import naive_utc

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id",
             "created_at", "updated_at")
SORT_DIRS = ("asc", "desc")
VISIBILITIES = ("public", "private", "shared", "community", "all")
MEMBER_STATUSES = ("pending", "accepted", "rejected", "all")
# Exact values, an "in:" list, or "eq:".
LIST_COLUMNS = ("name", "id", "status", "container_format", "disk_format")
TEXT_COLUMNS = ("checksum", "os_hash_value", "owner")
INTEGER_COLUMNS = ("min_ram", "min_disk", "size", "virtual_size")
# Inclusive ranges, as Glance reads "<column>_min" / "<column>_max".
RANGES = tuple(column + end for column in INTEGER_COLUMNS for end in ("_min", "_max"))
TIME_COLUMNS = ("created_at", "updated_at")
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
PAGING = ("limit", "marker", "sort", "sort_key", "sort_dir")
INTEGER = re.compile(r"[0-9]+")


def _bad(message: str) -> exception.Invalid:
    return exception.Invalid(message)


def _integer(name: str, value: str) -> int:
    if not INTEGER.fullmatch(value.strip()):
        raise _bad("Invalid value for %s: %r is not a non-negative integer"
                   % (name, value))
    return int(value)


def _boolean(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise _bad("Invalid value for %s: %r (use true or false)" % (name, value))
    return value == "true"


def split_in(value: str) -> list[str]:
    """The values of an ``in:`` list: commas split, a value with a comma
    is quoted ("a,b"), and \\" is a quote inside quotes. Raises Invalid."""
    values: list[str] = []
    current: list[str] = []
    quoted = False
    at_start = True
    index = 0
    while index < len(value):
        char = value[index]
        if quoted:
            if char == "\\" and value[index + 1:index + 2] == '"':
                current.append('"')
                index += 1
            elif char == '"':
                quoted = False
                if index + 1 < len(value) and value[index + 1] != ",":
                    raise _bad("Invalid in: list: a closing quote must end the value")
            else:
                current.append(char)
        elif char == '"':
            if not at_start:
                raise _bad("Invalid in: list: a quote may only start a value")
            quoted = True
        elif char == ",":
            values.append("".join(current))
            current = []
            at_start = True
            index += 1
            continue
        else:
            current.append(char)
        at_start = False
        index += 1
    if quoted:
        raise _bad("Invalid in: list: unbalanced quotes")
    values.append("".join(current))
    return values


def _time(name: str, value: str) -> str:
    text = value.strip()
    try:
        return naive_utc(text).isoformat()
    except (ValueError, OverflowError):
        raise _bad("Invalid time for %s: %r is not ISO 8601" % (name, value)) from None


def _operator(value: str) -> tuple[str | None, str]:
    head, sep, rest = value.partition(":")
    if sep and re.fullmatch(r"[a-z]+", head):
        return head, rest
    return None, value


def _column_filter(name: str, value: str) -> list[Any]:
    operator, operand = _operator(value)
    if name in TIME_COLUMNS:
        if operator is None:
            return ["eq", _time(name, value)]
        if operator not in TIME_OPERATORS:
            raise _bad("Invalid operator %r for %s; use one of %s"
                       % (operator, name, ", ".join(TIME_OPERATORS)))
        return [operator, _time(name, operand)]
    if operator == "in":
        return ["in", split_in(operand)]
    if operator == "eq":
        return ["eq", operand]
    if operator in TIME_OPERATORS:
        raise _bad("Invalid operator %r for %s: only in: and eq: apply" % (operator, name))
    return ["eq", value]


def filters(params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The search's filters; raises Invalid."""
    search: dict[str, Any] = {"columns": {}, "properties": {}, "tags": []}
    for name, value in params:
        if name in PAGING:
            continue
        if name == "tag":
            # Stripped as Glance does: tags are compared without the blanks
            # around them.
            search["tags"].append(value.strip())
        elif name == "visibility":
            if value not in VISIBILITIES:
                raise _bad("Invalid visibility value: %s" % value)
            search["visibility"] = value
        elif name == "member_status":
            if value not in MEMBER_STATUSES:
                raise _bad("Invalid status value: %s" % value)
            search["member_status"] = value
        elif name == "changes-since":
            raise _bad("changes-since is not a v2 filter; use updated_at=gte:<time>")
        elif name in RANGES:
            search[name] = _integer(name, value)
        elif name == "os_hidden":
            # Any case: openstacksdk sends "True" and "False".
            search["os_hidden"] = _boolean(name, value.lower())
        elif name == "protected":
            search["columns"]["protected"] = ["eq", _boolean(name, value)]
        elif name in LIST_COLUMNS or name in TIME_COLUMNS:
            search["columns"][name] = _column_filter(name, value)
        elif name in TEXT_COLUMNS:
            search["columns"][name] = ["eq", value]
        elif name in INTEGER_COLUMNS:
            search["columns"][name] = ["eq", _integer(name, value)]
        else:
            search["properties"][name] = value
    return search


def _sort_pairs(params: Sequence[tuple[str, str]]) -> list[list[str]]:
    new = [value for name, value in params if name == "sort"]
    keys = [value.strip() for name, value in params if name == "sort_key"]
    dirs = [value.strip() for name, value in params if name == "sort_dir"]
    if new and (keys or dirs):
        raise _bad("The 'sort' parameter cannot be combined with sort_key or sort_dir")
    pairs: list[list[str]] = []
    if new:
        for item in ",".join(new).split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append([key.strip(), direction.strip() or "desc"])
        # Each key of the new syntax carries a direction (desc unsaid).
        directions = [direction for _, direction in pairs]
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise _bad("The number of sort_dir values must be one or match sort_key")
        for index, key in enumerate(keys):
            direction = dirs[index] if len(dirs) > 1 else (dirs[0] if dirs else "desc")
            pairs.append([key, direction])
        if not keys and dirs:
            pairs.append(["created_at", dirs[0]])
        directions = dirs
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise _bad("Invalid sort key: %s; use one of %s" % (key, ", ".join(SORT_KEYS)))
        if direction not in SORT_DIRS:
            raise _bad("Invalid sort direction: %s; use asc or desc" % direction)
    # As Glance: the tie-breakers follow the one direction given, if only
    # one was; with several (even all alike) they are desc.
    tie = directions[0] if len(directions) == 1 else "desc"
    if not pairs:
        pairs = [["created_at", "desc"]]
    for key in ("created_at", "id"):
        if key not in [k for k, _ in pairs]:
            pairs.append([key, tie])
    return pairs


def search(params: Sequence[tuple[str, str]], limit_default: int,
           limit_max: int) -> dict[str, Any]:
    """The whole registry search of a list request; raises Invalid."""
    found = filters(params)
    query = dict(params)
    if "limit" in query:
        limit = _integer("limit", query["limit"])
    else:
        limit = limit_default
    found["limit"] = min(limit, limit_max)
    found["marker"] = query.get("marker")
    found["sort"] = _sort_pairs(params)
    return found
