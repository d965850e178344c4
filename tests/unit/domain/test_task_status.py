"""The one table of task status moves."""

from __future__ import annotations

import pytest

from glance_clone.common import exception
from glance_clone.domain import task_status as ts


@pytest.mark.parametrize("from_status, to_status", [
    ("pending", "processing"), ("pending", "failure"),
    ("processing", "success"), ("processing", "failure")])
def test_allowed_moves(from_status, to_status):
    ts.check(from_status, to_status)


@pytest.mark.parametrize("from_status, to_status", [
    ("pending", "success"), ("processing", "pending"), ("success", "failure"),
    ("failure", "processing"), ("success", "success")])
def test_refused_moves(from_status, to_status):
    with pytest.raises(exception.InvalidTaskStatusTransition):
        ts.check(from_status, to_status)
    assert not ts.allowed(from_status, to_status)


def test_final_statuses():
    assert ts.FINAL == {"success", "failure"}
