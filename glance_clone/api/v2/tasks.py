"""``/v2/tasks``: create, show and list tasks.

Create bodies are validated by the task schema served at
``/v2/schemas/task`` (``task_schemas``). Every
call first passes ``tasks_api_access`` (admin-only by default, as in
newer Glance), then the task's own rule (add_task, get_task, get_tasks).
Tasks are never deleted through the API: they expire
(``[task] task_time_to_live`` hours after they finish) and
``glance-manage db purge`` removes them.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import urlencode

import jsonschema
import webob

from glance_clone.api.v2.images import json_response, path_text, query_items
from glance_clone.api.v2.schemas import UUID_PATTERN
from glance_clone.api.v2.task_schemas import CREATE_VALIDATOR
from glance_clone.api.v2.views import timestamp
from glance_clone.common import exception, policy, wsgi
from glance_clone.common.timeutil import naive_utc
from glance_clone.domain import task_status, tasks

SORT_DIRS = ("asc", "desc")
STUB_FIELDS = ("id", "type", "status", "owner", "created_at", "updated_at",
               "expires_at")
# Shown by the full view only, and only once set (as newer Glance does).
SET_FIELDS = ("image_id", "request_id", "user_id")
INTEGER = re.compile(r"[0-9]+")
# Why DELETE /v2/tasks/{id} is a 405: nothing removes a task on demand.
TASK_DELETE_REFUSED = ("Deleting a task is not permitted: a task is removed "
                       "automatically once the time in its expires_at has passed.")


def _create_values(body: Any) -> tuple[str, dict]:
    if not isinstance(body, dict):
        raise exception.Invalid("Body expected in request.")
    for key in ("type", "input"):
        if key not in body:
            raise exception.Invalid("Task '%s' is required" % key)
    error = jsonschema.exceptions.best_match(CREATE_VALIDATOR.iter_errors(body))
    if error is not None:
        raise exception.Invalid("Provided object does not match schema 'task': %s"
                                % error.message)
    if not isinstance(body["input"], dict):
        raise exception.Invalid("Task 'input' must be an object")
    return body["type"], body["input"]


def check_input_keys(task_input: dict, keys: frozenset[str]) -> None:
    """Raises Invalid unless ``task_input`` has exactly ``keys``."""
    missing = sorted(keys - set(task_input))
    if missing:
        raise exception.Invalid("Input does not contain '%s' field" % missing[0])
    extra = sorted(set(task_input) - keys)
    if extra:
        raise exception.Invalid("Input has unknown fields: %s" % ", ".join(extra))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise exception.Invalid("Invalid %s value: %s (use one of %s)"
                                % (name, value, ", ".join(choices)))
    return value


def _filter_value(name: str, value: str) -> str:
    """A filter's value as the registry takes it; raises Invalid."""
    if name == "status":
        return _choice(name, value, task_status.ALL)
    if name == "type":
        return _choice(name, value, tasks.ALL_TYPES)
    if name in tasks.LIST_FLAGS:
        return _choice(name, value.lower(), ("true", "false"))
    if name in tasks.LIST_TIMES:
        try:
            return naive_utc(value).isoformat()
        except (ValueError, OverflowError):
            raise exception.Invalid("Invalid %s value: %s (use an ISO 8601 time, "
                                    "such as 2024-01-31T12:00:00Z)" % (name, value)) from None
    return value


def list_params(params: dict[str, str], default_limit: int, max_limit: int) -> dict:
    """The registry list parameters of a query string; raises Invalid.
    A parameter named after a field of ``tasks.LIST_FIELDS`` filters on
    it; other names that are not paging parameters are ignored."""
    found: dict[str, Any] = {name: _filter_value(name, params[name])
                             for name in tasks.LIST_FIELDS if name in params}
    found["sort_key"] = _choice("sort_key", params.get("sort_key", "created_at"),
                                tasks.LIST_FIELDS)
    found["sort_dir"] = _choice("sort_dir", params.get("sort_dir", "desc"), SORT_DIRS)
    limit = params.get("limit")
    if limit is None:
        found["limit"] = default_limit
    elif not INTEGER.fullmatch(limit.strip()):
        raise exception.Invalid("limit param must be a non-negative integer")
    else:
        found["limit"] = min(int(limit), max_limit)
    marker = params.get("marker")
    if marker is not None:
        if not re.fullmatch(UUID_PATTERN, marker):
            raise exception.Invalid("Invalid marker format")
        found["marker"] = marker
    return found


def task_view(task: dict, stub: bool = False) -> dict[str, Any]:
    """A task as v2 shows it: a list's stubs leave out input, result,
    message and the ``SET_FIELDS``; expires_at only once set."""
    view: dict[str, Any] = {key: task.get(key) for key in STUB_FIELDS}
    if not stub:
        view.update(input=task.get("input"), result=task.get("result"),
                    message=task.get("message") or "")
        view.update((key, task[key]) for key in SET_FIELDS if task.get(key))
    for key in ("created_at", "updated_at", "expires_at"):
        view[key] = timestamp(view[key])
    if view["expires_at"] is None:
        del view["expires_at"]
    view["self"] = "/v2/tasks/%s" % task["id"]
    view["schema"] = "/v2/schemas/task"
    return view


class TaskType(Protocol):
    """What runs one type of task."""

    def check(self, context: Any, task_input: dict) -> None:
        """Raises a 4xx error for input that cannot work (for this caller)."""

    def start(self, context: Any, task: dict) -> None:
        """Run the new task off the request path."""


# Gates every /v2/tasks call (admin-only by default).
ACCESS_RULE = "tasks_api_access"


class TasksDeserializer(wsgi.JSONDeserializer):
    """Create and list are refused to callers without ``tasks_api_access``
    before their body or query is looked at: whoever may not use the API
    learns nothing from how it would have read the request (a malformed
    body is their 403 too, not a 400). Show and delete check it in the
    controller."""

    GATED = ("create", "index")

    def __init__(self, enforcer: policy.Enforcer) -> None:
        self.enforcer = enforcer

    def dispatch(self, req: wsgi.Request, action: str) -> dict[str, Any]:
        if action in self.GATED:
            self.enforcer.enforce(req.context, ACCESS_RULE, {})
        return super().dispatch(req, action)


class TasksController:
    def __init__(self, conf: Any, repository: tasks.TaskRepository,
                 enforcer: policy.Enforcer, types: dict[str, TaskType]) -> None:
        self.conf = conf
        self.repository = repository
        self.enforcer = enforcer
        self.types = types

    def _access(self, req: wsgi.Request, rule: str) -> None:
        self.enforcer.enforce(req.context, ACCESS_RULE, {})
        self.enforcer.enforce(req.context, rule, {})

    def create(self, req: wsgi.Request, body: Any = None) -> webob.Response:
        # tasks_api_access was checked by TasksDeserializer.
        self.enforcer.enforce(req.context, "add_task", {})
        task_type, task_input = _create_values(body)
        if task_type not in tasks.TYPES:
            raise exception.Invalid("Tasks of type %s are made by glance-api itself "
                                    "(use one of %s)" % (task_type, ", ".join(tasks.TYPES)))
        runner = self.types[task_type]
        runner.check(req.context, task_input)
        task = self.repository.create(req.context, task_type, task_input)
        runner.start(req.context, task)
        response = json_response(req, task_view(task), status=201)
        # application_url is where this app is mounted: it ends in /v2.
        response.headers["Location"] = "%s/tasks/%s" % (req.application_url, task["id"])
        return response

    def index(self, req: wsgi.Request) -> webob.Response:
        # tasks_api_access was checked by TasksDeserializer.
        self.enforcer.enforce(req.context, "get_tasks", {})
        params = dict(query_items(req))
        search = list_params(params, self.conf.limit_param_default,
                             self.conf.api_limit_max)
        found = self.repository.list(req.context, **search)
        query = {k: v for k, v in params.items() if k != "marker"}
        body: dict[str, Any] = {
            "tasks": [task_view(task, stub=True) for task in found],
            "first": "/v2/tasks" + ("?" + urlencode(query) if query else ""),
            "schema": "/v2/schemas/tasks",
        }
        if found and len(found) == search["limit"]:
            body["next"] = "/v2/tasks?" + urlencode(dict(query, marker=found[-1]["id"]))
        return json_response(req, body)

    def show(self, req: wsgi.Request, task_id: str) -> webob.Response:
        self._access(req, "get_task")
        return json_response(req, task_view(self.repository.get(req.context,
                                                                path_text(task_id))))

    def delete(self, req: wsgi.Request, task_id: str) -> webob.Response:
        self.enforcer.enforce(req.context, ACCESS_RULE, {})
        raise exception.MethodNotAllowed(TASK_DELETE_REFUSED, allow="GET")


# A task as GET /v2/images/{id}/tasks shows it: every column of its row.
ROW_KEYS = ("id", "type", "status", "owner", "expires_at", "created_at", "updated_at",
            "deleted_at", "deleted", "image_id", "request_id", "user_id", "input",
            "result", "message")


class ImageTasksController:
    """``GET /v2/images/{id}/tasks``: the tasks about one image (its
    imports), as newer Glance shows them. The image must be readable (policy
    ``get_image``, else 404); the caller sees its own project's tasks,
    admins all; expired tasks are gone. Not gated by ``tasks_api_access``:
    it is how an image's owner follows an import."""

    def __init__(self, conf: Any, catalog: Any, repository: tasks.TaskRepository) -> None:
        self.conf = conf
        self.catalog = catalog
        self.repository = repository

    def index(self, req: wsgi.Request, image_id: str) -> webob.Response:
        image = self.catalog.get(req.context, path_text(image_id))
        found = self.repository.list(req.context, image_id=image.id,
                                     limit=self.conf.api_limit_max)
        return json_response(req, {"tasks": [{key: task.get(key) for key in ROW_KEYS}
                                             for task in found]})
