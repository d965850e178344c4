"""Image tags, one at a time (whole lists are written with the image)."""

from __future__ import annotations

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db.base import TAGS, DatabaseBase, utcnow

_LIVE_TAG = sa.select(TAGS.c.id).where(
    TAGS.c.image_id == sa.bindparam("image_id"),
    TAGS.c.value == sa.bindparam("value"), TAGS.c.deleted == sa.false())
_INSERT_TAG = sa.insert(TAGS)
_DELETE_TAG = (sa.update(TAGS).where(TAGS.c.id == sa.bindparam("_id"))
               .values(deleted=True, deleted_at=sa.bindparam("_now"),
                       updated_at=sa.bindparam("_now")))


class TagQueries(DatabaseBase):
    """Adding and removing one tag of an image the caller may change."""

    def image_tag_add(self, context: RequestContext, image_id: str,
                      value: str) -> None:
        """Tag an image (a tag it has already is no change); raises
        ImageNotFound, Forbidden, ReadOnly."""
        with self._writing(context) as connection:
            self._mutable_row(connection, context, image_id)
            params = {"image_id": image_id, "value": value}
            if connection.execute(_LIVE_TAG, params).first() is not None:
                return
            now = utcnow()
            connection.execute(_INSERT_TAG, dict(
                params, created_at=now, updated_at=now, deleted_at=None,
                deleted=False))

    def image_tag_delete(self, context: RequestContext, image_id: str,
                         value: str) -> None:
        """Untag an image; raises NotFound (no such tag), ImageNotFound,
        Forbidden, ReadOnly."""
        with self._writing(context) as connection:
            self._mutable_row(connection, context, image_id)
            row = connection.execute(
                _LIVE_TAG, {"image_id": image_id, "value": value}).first()
            if row is None:
                raise exception.NotFound(f"Tag {value} not found on image {image_id}")
            connection.execute(_DELETE_TAG, {"_id": row.id, "_now": utcnow()})
