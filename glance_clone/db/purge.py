"""``glance-manage db purge``: removing rows soft-deleted long ago."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.db import models
from glance_clone.db.base import (
    IMAGE_CHILDREN,
    IMAGES,
    LOG,
    MAX_INT,
    DatabaseBase,
    _chunks,
    utcnow,
)


class Purge(DatabaseBase):
    """Hard deletes of old soft-deleted rows."""

    def purge_deleted_rows(self, age_in_days: int, max_rows: int) -> dict[str, int]:
        """Remove rows soft-deleted more than ``age_in_days`` ago, and
        tasks whose ``expires_at`` has passed (whatever their age: no
        caller can see them any more).

        At most ``max_rows`` per table (-1: no limit), children before their
        image; an image that still has rows in a child table waits for a
        later run. Purged image ids are recorded so they are never handed
        out again. Returns rows removed per table; raises Invalid.
        """
        if isinstance(age_in_days, bool) or not isinstance(age_in_days, int) \
                or age_in_days < 0:
            raise exception.Invalid("age_in_days must be a non-negative integer")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) \
                or not (max_rows == -1 or 1 <= max_rows <= MAX_INT):
            raise exception.Invalid(
                f"max_rows must be -1 (no limit) or between 1 and {MAX_INT}")
        cutoff = utcnow() - datetime.timedelta(days=age_in_days)
        counts: dict[str, int] = {}
        for table in IMAGE_CHILDREN:
            counts[table.name] = self._purge(table, cutoff, max_rows)
        no_children = [~sa.exists().where(child.c.image_id == IMAGES.c.id)
                       for child in IMAGE_CHILDREN]
        counts[IMAGES.name] = self._purge(IMAGES, cutoff, max_rows, no_children,
                                          record=models.purged_image_ids)
        tasks = models.tasks
        expired = sa.and_(tasks.c.expires_at.is_not(None),
                          tasks.c.expires_at <= utcnow())
        counts[tasks.name] = self._purge(
            tasks, cutoff, max_rows, also=expired,
            dependents=[(models.task_info, models.task_info.c.task_id)])
        for name, count in counts.items():
            LOG.info("Purged %d deleted row(s) from table %s", count, name)
        return counts

    def _purge(self, table: sa.Table, cutoff: datetime.datetime, max_rows: int,
               conditions: Sequence[sa.ColumnElement[bool]] = (),
               record: sa.Table | None = None,
               dependents: Sequence[tuple[sa.Table, sa.Column[Any]]] = (),
               also: sa.ColumnElement[bool] | None = None) -> int:
        """Rows deleted before ``cutoff`` that meet ``conditions``, or that
        meet ``also``."""
        old = sa.and_(table.c.deleted == sa.true(), table.c.deleted_at < cutoff,
                      *conditions)
        query = (sa.select(table.c.id)
                 .where(old if also is None else sa.or_(old, also))
                 .order_by(table.c.deleted_at, table.c.id))
        if max_rows != -1:
            query = query.limit(max_rows)
        with self._writer.begin() as connection:
            ids = list(connection.execute(query).scalars())
            for chunk in _chunks(ids):
                if record is not None:
                    connection.execute(sa.insert(record),
                                       [{"id": row_id} for row_id in chunk])
                for dependent, column in dependents:
                    connection.execute(sa.delete(dependent)
                                       .where(column.in_(chunk)))
                connection.execute(sa.delete(table).where(table.c.id.in_(chunk)))
        return len(ids)

