"""``/tasks`` and ``/tasks/{id}``: the registry's tasks, our extension for
the v2 Tasks API.

- ``GET /tasks?<column>=&sort_key=&sort_dir=&limit=&marker=&updated_before=``
  -> ``{"tasks": [<task>, ...]}``; any column of the task's row (not
  input, result, message) filters by equality (times within their second)
  and may be the sort key.
- ``POST /tasks`` ``{"task": {...}}`` -> ``{"task": <task>}``; the caller
  picks the id, so that a lost answer can be checked by reading it.
- ``GET /tasks/{id}`` -> ``{"task": <task>}``
- ``PUT /tasks/{id}`` ``{"task": {...}, "from_state": "<status>"}`` ->
  ``{"task": <task>}``; with ``from_state`` only while the task has that
  status, else 409.

A task object: id, type, status, owner, input, result, message,
expires_at, image_id, request_id, user_id, created_at, updated_at,
deleted_at, deleted (timestamps ISO 8601, naive UTC). Callers see their
own project's tasks, admins all; expired tasks are gone.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception, wsgi
from glance_clone.common.timeutil import naive_utc
from glance_clone.db import tasks as db_tasks
from glance_clone.db.api import Database
from glance_clone.registry.api.v1 import images

TEXT_LIMITS = {"id": 36, "type": 30, "owner": 255, "image_id": 36,
               "request_id": 64, "user_id": 64}
VIEW_KEYS = ("id", "type", "status", "owner", "input", "result", "message",
             "expires_at", "image_id", "request_id", "user_id", "created_at",
             "updated_at", "deleted_at", "deleted")
# What a PUT may change: who made the task and its type never change.
MUTABLE = ("status", "expires_at", "image_id", "input", "result", "message")


def _time(name: str, value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise exception.Invalid("'%s' must be an ISO 8601 time or null" % name)
    try:
        return naive_utc(value)
    except (ValueError, OverflowError):
        raise exception.Invalid("'%s' must be an ISO 8601 time or null" % name) from None


def _values(body: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The checked ``task`` object of a body, limited to ``keys``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("task"), Mapping):
        raise exception.Invalid(
            'The request body must be a JSON object with a "task" object')
    values: dict[str, Any] = {}
    for key, value in body["task"].items():
        if key not in keys:
            raise exception.Invalid("'%s' cannot be set on a task" % key)
        if key in TEXT_LIMITS:
            values[key] = images._string(key, value, TEXT_LIMITS[key])
        elif key == "status":
            values[key] = images._choice(value, db_tasks.TASK_STATUSES,
                                         "Invalid task status '%s'")
        elif key == "expires_at":
            values[key] = _time(key, value)
        elif key == "message":
            values[key] = images._string(key, value) or ""
        else:  # input, result: JSON objects
            if value is not None and not isinstance(value, dict):
                raise exception.Invalid("'%s' must be an object or null" % key)
            values[key] = value
    return values


def view(task: Mapping[str, Any]) -> dict[str, Any]:
    return {key: images._timestamp(task.get(key)) for key in VIEW_KEYS}


class Controller:
    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        self.conf = conf
        self.db = db

    def index(self, req: wsgi.Request) -> dict[str, Any]:
        """A page of tasks; raises Invalid (bad parameter, unknown marker)."""
        params = images.query_params(req)
        filters = {name: params[name] for name in db_tasks.TASK_FILTERS
                   if name in params}
        try:
            found = self.db.task_list(
                req.context, filters,
                sort_key=params.get("sort_key", "created_at"),
                sort_dir=params.get("sort_dir", "desc"),
                limit=images._limit(params, self.conf),
                marker=params.get("marker"),
                updated_before=_time("updated_before", params.get("updated_before")))
        except exception.TaskNotFound:
            raise exception.Invalid("Invalid marker. Task could not be found.") from None
        return {"tasks": [view(task) for task in found]}

    def show(self, req: wsgi.Request, id: str) -> dict[str, Any]:
        return {"task": view(self.db.task_get(req.context, images.path_text(id)))}

    def create(self, req: wsgi.Request, body: Any = None) -> dict[str, Any]:
        """Add a task; raises Invalid, Duplicate, ReadOnly."""
        images.check_writable(req.context)
        values = _values(body, tuple(TEXT_LIMITS) + MUTABLE)
        return {"task": view(self.db.task_create(req.context, values))}

    def update(self, req: wsgi.Request, id: str, body: Any = None) -> dict[str, Any]:
        """Change a task; raises Invalid, TaskNotFound, StatusConflict, ReadOnly."""
        images.check_writable(req.context)
        values = _values(body, MUTABLE)
        from_state = None
        if isinstance(body, Mapping) and body.get("from_state") is not None:
            from_state = images._choice(body["from_state"], db_tasks.TASK_STATUSES,
                                        "Invalid task status '%s'")
        task = self.db.task_update(req.context, images.path_text(id), values,
                                   from_state=from_state)
        return {"task": view(task)}


def create_resource(conf: cfg.ConfigOpts, db: Database) -> wsgi.Resource:
    return wsgi.Resource(Controller(conf, db))
