"""Fixtures that run real glance processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional import harness


@pytest.fixture
def glance(tmp_path) -> Iterator[harness.Deployment]:
    """A running registry + api pair (trusted-auth, SQLite, file store)."""
    yield from harness.deployment(tmp_path)
