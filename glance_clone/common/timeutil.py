"""Times as the database keeps them: naive datetimes in UTC."""

from __future__ import annotations

import datetime


def naive_utc(value: str | datetime.datetime) -> datetime.datetime:
    """An ISO 8601 time (text, a trailing ``Z`` included) or a datetime, as
    naive UTC; one without a zone is taken as UTC already. Raises
    ValueError for text that is no ISO 8601 time (and OverflowError for
    one whose conversion to UTC leaves the calendar)."""
    when = (value if isinstance(value, datetime.datetime)
            else datetime.datetime.fromisoformat(value))
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when
