"""Image statuses and the one table of the moves between them.

Every status change of an image, whichever API asks for it, is checked
against ``TRANSITIONS`` (``check``) and written as a compare-and-swap on
the status it leaves (the registry's ``from_state``), so two writers can
never both move the same image. ``RegistryWrites`` runs the check on every
create, status swap and soft delete it sends, for v1 and v2 alike; callers
that need the formats rule too call ``check`` with them first.
"""

from __future__ import annotations

from glance_clone.common import exception

QUEUED = "queued"
SAVING = "saving"
ACTIVE = "active"
KILLED = "killed"
DELETED = "deleted"
PENDING_DELETE = "pending_delete"
DEACTIVATED = "deactivated"
# Interoperable import: data staged (uploading), then moved into a store
# (importing).
UPLOADING = "uploading"
IMPORTING = "importing"

ALL = frozenset((QUEUED, SAVING, ACTIVE, KILLED, DELETED, PENDING_DELETE, DEACTIVATED,
                 UPLOADING, IMPORTING))

TRANSITIONS: dict[str, frozenset[str]] = {
    # killed: v1 kills a queued image whose upload or copy never started.
    QUEUED: frozenset((SAVING, UPLOADING, IMPORTING, ACTIVE, KILLED, DELETED)),
    # queued: a failed v2 upload goes back to queued; v1 kills instead.
    SAVING: frozenset((ACTIVE, KILLED, DELETED, QUEUED)),
    UPLOADING: frozenset((IMPORTING, QUEUED, DELETED)),
    IMPORTING: frozenset((ACTIVE, DELETED, QUEUED)),
    ACTIVE: frozenset((PENDING_DELETE, DELETED, DEACTIVATED)),
    KILLED: frozenset((DELETED,)),
    # active, deactivated: a delete whose data could not be removed is
    # undone (the image gets back the status it had).
    PENDING_DELETE: frozenset((DELETED, ACTIVE, DEACTIVATED)),
    DEACTIVATED: frozenset((ACTIVE, PENDING_DELETE, DELETED)),
    DELETED: frozenset(),
}
# A new record: queued, or active straight away when there is no data to
# wait for (a v1 create declaring size 0).
INITIAL = frozenset((QUEUED, ACTIVE))
# Leaving these for a status with data needs both formats.
NEEDS_FORMATS_FROM = frozenset((QUEUED, UPLOADING))
WITH_DATA = frozenset((SAVING, ACTIVE, IMPORTING))


def allowed(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, ())


def check(from_status: str, to_status: str,
          disk_format: str | None = "set", container_format: str | None = "set") -> None:
    """Raises InvalidImageStatusTransition for a move the table does not
    allow, Invalid for data without both formats."""
    if not allowed(from_status, to_status):
        raise exception.InvalidImageStatusTransition(cur_status=from_status,
                                                     new_status=to_status)
    if from_status in NEEDS_FORMATS_FROM and to_status in WITH_DATA:
        for name, value in (("disk_format", disk_format),
                            ("container_format", container_format)):
            if not value:
                raise exception.Invalid("Property %s must be set prior to saving data."
                                        % name)


def check_initial(status: str) -> None:
    """Raises InvalidImageStatusTransition for a record created in a
    status it cannot start in."""
    if status not in INITIAL:
        raise exception.InvalidImageStatusTransition(cur_status="(new)",
                                                     new_status=status)
