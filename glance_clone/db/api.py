"""Context-first queries of the registry database.

``Database`` wraps an Engine; its queries come from one module per
aggregate: ``images`` (one image, its properties, tags and locations),
``tags`` (one tag at a time), ``listing`` (pages of images as v1 lists
them), ``search`` (as v2 lists them), ``members`` (memberships), ``tasks``
and ``purge``.
What they share (transactions, visibility, prebuilt statements) is in
``base``.
"""

from __future__ import annotations

from glance_clone.db.base import (
    LOCATION_STATUSES,
    MAX_BIGINT,
    MAX_INT,
    MEMBER_STATUSES,
    STATUSES,
    VISIBILITIES,
)
from glance_clone.db.images import ImageQueries
from glance_clone.db.listing import SORT_DIRS, SORT_KEYS, ImageListing
from glance_clone.db.members import MemberQueries
from glance_clone.db.purge import Purge
from glance_clone.db.search import ImageSearch
from glance_clone.db.tags import TagQueries
from glance_clone.db.tasks import TASK_SORT_KEYS, TASK_STATUSES, TaskQueries

__all__ = ["LOCATION_STATUSES", "MAX_BIGINT", "MAX_INT", "MEMBER_STATUSES",
           "SORT_DIRS", "SORT_KEYS", "STATUSES", "TASK_SORT_KEYS", "TASK_STATUSES",
           "VISIBILITIES", "Database"]


class Database(ImageQueries, TagQueries, ImageListing, ImageSearch,
               MemberQueries, TaskQueries, Purge):
    """The registry's queries, context first."""
