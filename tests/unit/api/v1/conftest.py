"""Fixtures of the glance-api v1 tests: an in-process api + registry (the
HTTP server for locations and copy-from sources is tests/unit/api's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.stack import Stack, make_stack


@pytest.fixture
def stack(tmp_path: Any) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def stack_with(tmp_path: Any) -> Callable[..., Stack]:
    """``stack_with(**overrides)``: a stack with config overrides
    (``group.name`` keys as in make_stack, passed as a dict)."""
    count = [0]

    def build(overrides: dict[str, Any] | None = None) -> Stack:
        count[0] += 1
        base = tmp_path / ("stack%d" % count[0])
        base.mkdir()
        return make_stack(base, overrides)
    return build
