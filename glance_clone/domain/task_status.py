"""Task statuses and the one table of the moves between them.

A task is created ``pending``; a worker claims it (``processing``) and
finishes it (``success`` or ``failure``). A task that never ran may fail
straight from ``pending`` (its input was refused, or its worker died
before claiming it). Every move is checked here and written as a
compare-and-swap on the status it leaves, so two api nodes never both
claim, or both finish, one task.
"""

from __future__ import annotations

from glance_clone.common import exception

PENDING = "pending"
PROCESSING = "processing"
SUCCESS = "success"
FAILURE = "failure"

ALL = (PENDING, PROCESSING, SUCCESS, FAILURE)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset((PROCESSING, FAILURE)),
    PROCESSING: frozenset((SUCCESS, FAILURE)),
    SUCCESS: frozenset(),
    FAILURE: frozenset(),
}
# Finished: the task expires task_time_to_live hours after reaching one.
FINAL = frozenset(status for status, moves in TRANSITIONS.items() if not moves)


def allowed(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, ())


def check(from_status: str, to_status: str) -> None:
    """Raises InvalidTaskStatusTransition for a move the table does not
    allow: a bug of ours, never the caller's."""
    if not allowed(from_status, to_status):
        raise exception.InvalidTaskStatusTransition(cur_status=from_status,
                                                    new_status=to_status)
