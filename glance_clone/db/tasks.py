"""Tasks: asynchronous work with an owner and a status (the v2 Tasks API).

A task's row is in ``tasks``, its input, result and message (JSON, JSON
and text) in ``task_info``. Callers see the tasks of their own project;
admins see all. A task whose ``expires_at`` has passed is gone for every
caller: it is never shown or listed, and ``db purge`` removes it.

Status changes are a compare-and-swap on the status left (``from_state``):
two api nodes can never both claim, or both finish, one task. Which moves
are allowed is the domain's rule (``domain/task_status.py``); here only the
names of statuses are checked.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.common.timeutil import naive_utc
from glance_clone.db import models
from glance_clone.db.base import MAX_ID_LENGTH, DatabaseBase, utcnow
from glance_clone.db.listing import null_stand_in, nulls_lowest, rows_after

TASKS = models.tasks
TASK_INFO = models.task_info

TASK_STATUSES = ("pending", "processing", "success", "failure")
# A list sorts by and filters on any column of the task's row (not on
# input, result or message: they are task_info's).
TASK_SORT_KEYS = tuple(TASKS.c.keys())
TASK_FILTERS = TASK_SORT_KEYS
# Written by callers; the rest (timestamps, deleted) are the database's.
TASK_VALUES = ("id", "type", "status", "owner", "expires_at", "image_id",
               "request_id", "user_id")
INFO_VALUES = ("input", "result", "message")
_JSON_INFO = ("input", "result")

_SELECT = (sa.select(TASKS, TASK_INFO.c.input, TASK_INFO.c.result,
                     TASK_INFO.c.message)
           .select_from(TASKS.outerjoin(TASK_INFO,
                                        TASK_INFO.c.task_id == TASKS.c.id)))
_TASK = _SELECT.where(TASKS.c.id == sa.bindparam("id"))
_TASK_EXISTS = sa.select(TASKS.c.id).where(TASKS.c.id == sa.bindparam("id"))
_UPDATE_TASK = sa.update(TASKS).where(TASKS.c.id == sa.bindparam("_id"))
_UPDATE_TASK_FROM = _UPDATE_TASK.where(TASKS.c.status == sa.bindparam("_from"))
_UPDATE_INFO = sa.update(TASK_INFO).where(TASK_INFO.c.task_id == sa.bindparam("_id"))


def _task_dict(row: sa.Row[Any]) -> dict[str, Any]:
    task = row._asdict()
    for key in _JSON_INFO:
        task[key] = json.loads(task[key]) if task[key] else None
    task["message"] = task["message"] or ""
    return task


def _info(values: Mapping[str, Any]) -> dict[str, Any]:
    info = {key: values[key] for key in INFO_VALUES if key in values}
    for key in _JSON_INFO:
        if key in info and info[key] is not None:
            info[key] = json.dumps(info[key])
    return info


def _live(now: Any) -> sa.ColumnElement[bool]:
    """Not deleted, not expired."""
    return sa.and_(TASKS.c.deleted == sa.false(),
                   sa.or_(TASKS.c.expires_at.is_(None), TASKS.c.expires_at > now))


def _matching(column: sa.Column[Any], value: Any) -> sa.ColumnElement[bool]:
    """The filter ``column`` = ``value`` (text as a query string has it,
    or the typed value). A time matches within its second: tasks show
    their times to the second."""
    if isinstance(column.type, sa.DateTime):
        if not isinstance(value, (str, datetime.datetime)):
            raise exception.Invalid("Tasks cannot be filtered on %s %r" % (column.name,
                                                                         value))
        try:
            when = naive_utc(value)
        except (ValueError, OverflowError):
            raise exception.Invalid("Tasks cannot be filtered on %s '%s': not an "
                                    "ISO 8601 time" % (column.name, value)) from None
        start = when.replace(microsecond=0)
        return sa.and_(column >= start, column < start + datetime.timedelta(seconds=1))
    if isinstance(column.type, sa.Boolean):
        flag = {"true": True, "false": False}.get(str(value).lower(), value)
        if not isinstance(flag, bool):
            raise exception.Invalid("Tasks cannot be filtered on %s '%s': use true "
                                    "or false" % (column.name, value))
        return column == (sa.true() if flag else sa.false())
    return column == value


def _check_status(status: Any) -> None:
    if status not in TASK_STATUSES:
        raise exception.Invalid("Task status must be one of %s"
                                % ", ".join(TASK_STATUSES))


class TaskQueries(DatabaseBase):
    """Tasks of the caller's project (all of them for admins)."""

    def _visible_task(self, connection: sa.engine.Connection,
                      context: RequestContext, task_id: Any) -> dict[str, Any]:
        if not isinstance(task_id, str) or len(task_id) > MAX_ID_LENGTH:
            raise exception.TaskNotFound(task_id=task_id)
        row = connection.execute(
            _TASK.where(_live(utcnow())), {"id": task_id}).first()
        if row is None:
            raise exception.TaskNotFound(task_id=task_id)
        task = _task_dict(row)
        if not context.is_admin and (context.owner is None
                                     or task["owner"] != context.owner):
            raise exception.TaskNotFound(task_id=task_id)
        return task

    def task_get(self, context: RequestContext, task_id: str) -> dict[str, Any]:
        """The task, with input, result and message; raises TaskNotFound
        (unknown, deleted, expired or another project's)."""
        with self._reading() as connection:
            return self._visible_task(connection, context, task_id)

    def task_create(self, context: RequestContext,
                    values: Mapping[str, Any]) -> dict[str, Any]:
        """Add a task; ``values`` name its id, type, status and owner.

        Raises Duplicate (the id is taken), Invalid, ReadOnly.
        """
        for key in ("id", "type", "status", "owner"):
            if not isinstance(values.get(key), str) or not values[key]:
                raise exception.Invalid("A task needs '%s'" % key)
        _check_status(values["status"])
        now = utcnow()
        row = {key: values.get(key) for key in TASK_VALUES}
        row.update(created_at=now, updated_at=now, deleted_at=None, deleted=False)
        info = {"input": None, "result": None, "message": ""} | _info(values)
        with self._writing(context) as connection:
            if connection.execute(_TASK_EXISTS, {"id": row["id"]}).first():
                raise exception.Duplicate("Task %s already exists" % row["id"])
            connection.execute(sa.insert(TASKS), row)
            connection.execute(sa.insert(TASK_INFO), dict(info, task_id=row["id"]))
            return _task_dict(connection.execute(_TASK, {"id": row["id"]}).one())

    def task_update(self, context: RequestContext, task_id: str,
                    values: Mapping[str, Any],
                    from_state: str | None = None) -> dict[str, Any]:
        """Change a task (while its status is ``from_state``, when given).

        ``values`` may set status, expires_at, image_id, result, message
        and input. Raises TaskNotFound, StatusConflict (the status is no
        longer ``from_state``), Invalid, ReadOnly.
        """
        if "status" in values:
            _check_status(values["status"])
        changes = {key: values[key] for key in ("status", "expires_at", "image_id")
                   if key in values}
        changes["updated_at"] = utcnow()
        info = _info(values)
        with self._writing(context) as connection:
            self._visible_task(connection, context, task_id)
            if from_state is None:
                connection.execute(_UPDATE_TASK, dict(changes, _id=task_id))
            else:
                result = connection.execute(
                    _UPDATE_TASK_FROM, dict(changes, _id=task_id, _from=from_state))
                if result.rowcount != 1:
                    # The default message: the registry client maps it
                    # back to StatusConflict.
                    raise exception.StatusConflict()
            if info:
                connection.execute(_UPDATE_INFO, dict(info, _id=task_id))
            return _task_dict(connection.execute(_TASK, {"id": task_id}).one())

    def task_list(self, context: RequestContext,
                  filters: Mapping[str, Any] | None = None,
                  sort_key: str = "created_at", sort_dir: str = "desc",
                  limit: int | None = None, marker: str | None = None,
                  updated_before: Any = None) -> list[dict[str, Any]]:
        """A page of visible tasks, sorted by ``sort_key`` then created_at
        and id (the tie-breakers), after the task ``marker``.

        ``filters`` match columns of ``TASK_FILTERS`` by equality (times
        within the second given); ``updated_before`` keeps tasks last
        changed before that time.
        Raises Invalid (unknown sort key or filter), TaskNotFound (marker).
        """
        if sort_key not in TASK_SORT_KEYS:
            raise exception.InvalidSortKey()
        if sort_dir not in ("asc", "desc"):
            raise exception.InvalidSortDir()
        query = _SELECT.where(_live(utcnow()))
        for name, value in (filters or {}).items():
            if name not in TASK_FILTERS:
                raise exception.Invalid("Tasks cannot be filtered on '%s'" % name)
            query = query.where(_matching(TASKS.c[name], value))
        if not context.is_admin:
            if context.owner is None:
                return []
            query = query.where(TASKS.c.owner == context.owner)
        if updated_before is not None:
            query = query.where(TASKS.c.updated_at < updated_before)
        keys = [sort_key] + [k for k in ("created_at", "id") if k != sort_key]
        expressions = [nulls_lowest(TASKS.c[k]) for k in keys]
        directions = [sort_dir] * len(keys)
        with self._reading() as connection:
            if marker is not None:
                after = self._visible_task(connection, context, marker)
                values = [null_stand_in(TASKS.c[k]) if after[k] is None else after[k]
                          for k in keys]
                query = query.where(rows_after(expressions, directions, values))
            order = [e.desc() if sort_dir == "desc" else e.asc() for e in expressions]
            query = query.order_by(*order)
            if limit is not None:
                query = query.limit(limit)
            return [_task_dict(row) for row in connection.execute(query)]
