"""Image statuses (model.md section 3)."""

QUEUED = "queued"
SAVING = "saving"
ACTIVE = "active"
KILLED = "killed"
DELETED = "deleted"
PENDING_DELETE = "pending_delete"
DEACTIVATED = "deactivated"

ALL = frozenset((QUEUED, SAVING, ACTIVE, KILLED, DELETED, PENDING_DELETE, DEACTIVATED))
