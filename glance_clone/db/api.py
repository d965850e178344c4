"""Context-first queries of the registry database.

``Database`` wraps an Engine; its queries come from one module per
aggregate: ``images`` (one image, its properties and locations),
``listing`` (pages of images), ``members`` (memberships) and ``purge``.
What they share (transactions, visibility, prebuilt statements) is in
``base``.
"""

from __future__ import annotations

from glance_clone.db.base import (
    LOCATION_STATUSES,
    MAX_BIGINT,
    MAX_INT,
    STATUSES,
)
from glance_clone.db.images import ImageQueries
from glance_clone.db.listing import SORT_DIRS, SORT_KEYS, ImageListing
from glance_clone.db.members import MemberQueries
from glance_clone.db.purge import Purge

__all__ = ["LOCATION_STATUSES", "MAX_BIGINT", "MAX_INT", "SORT_DIRS",
           "SORT_KEYS", "STATUSES", "Database"]


class Database(ImageQueries, ImageListing, MemberQueries, Purge):
    """The registry's queries, context first."""
