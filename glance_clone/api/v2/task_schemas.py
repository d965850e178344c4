"""The task schemas: served at ``/v2/schemas/task`` and
``/v2/schemas/tasks``, and the very objects that validate task create
bodies. The type enum is every type a listed task can have, as in newer
Glance: the internal ones pass the schema and are refused by the
controller (glance-api makes them itself)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from glance_clone.api.v2.schemas import UUID_PATTERN
from glance_clone.domain import task_status, tasks


def _property(kind: Any, description: str, **extra: Any) -> dict:
    return dict({"type": kind, "description": description}, **extra)


TASK_PROPERTIES: dict = {
    "id": _property("string", "An identifier for the task", pattern=UUID_PATTERN),
    "type": _property("string", "The type of task represented by this content",
                      enum=list(tasks.ALL_TYPES)),
    "status": _property("string", "The current status of this task",
                        enum=list(task_status.ALL)),
    "input": _property(["null", "object"], "The parameters required by task, "
                       "JSON blob"),
    "result": _property(["null", "object"], "The result of current task, JSON blob"),
    "owner": _property("string", "An identifier for the owner of this task"),
    "message": _property("string", "Human-readable informative message only "
                         "included when appropriate (usually on failure)"),
    "expires_at": _property(["null", "string"], "Datetime when this resource "
                            "would be subject to removal"),
    "created_at": _property("string", "Datetime when this resource was created"),
    "updated_at": _property("string", "Datetime when this resource was updated"),
    "image_id": _property("string", "Image associated with the task"),
    "request_id": _property("string", "Request ID of the call that made the task"),
    "user_id": _property("string", "User who made the task"),
    "self": _property("string", "An identifier for this task", readOnly=True),
    "schema": _property("string", "An identifier for the schema of this task",
                        readOnly=True),
}
TASK_SCHEMA: dict = {"name": "task", "properties": TASK_PROPERTIES}
TASKS_SCHEMA: dict = {
    "name": "tasks",
    "properties": {
        "tasks": {"type": "array", "items": {
            "name": "task",
            "properties": {name: prop for name, prop in TASK_PROPERTIES.items()
                           if name not in ("input", "result", "message")}}},
        "schema": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}
SCHEMAS = {"task": TASK_SCHEMA, "tasks": TASKS_SCHEMA}
# Create bodies: the task schema, nothing else in it.
CREATE_VALIDATOR = jsonschema.Draft4Validator(
    dict(TASK_SCHEMA, additionalProperties=False))


def schema_document(name: str) -> dict:
    """``task`` or ``tasks`` as served (a copy)."""
    return copy.deepcopy(SCHEMAS[name])
