"""Logging setup: other libraries' loggers kept quiet."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from glance_clone.common import log

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def restored() -> Iterator[logging.Logger]:
    logger = logging.getLogger("urllib3")
    level = logger.level
    try:
        yield logger
    finally:
        logger.setLevel(level)


def test_client_libraries_log_warnings_only_by_default(restored):
    assert "urllib3=WARNING" in log.LIBRARY_LEVELS
    log.set_library_levels(["urllib3 = info"])
    assert restored.level == logging.INFO
    log.set_library_levels(log.LIBRARY_LEVELS)
    assert restored.level == logging.WARNING
    assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.DEBUG)


def test_a_bad_entry_is_one_line_naming_the_option(restored):
    with pytest.raises(ValueError) as info:
        log.set_library_levels(["urllib3=LOUD"])
    assert str(info.value) == ("default_log_levels: 'urllib3=LOUD' is not logger=LEVEL "
                               "(DEBUG, INFO, WARNING, ERROR, CRITICAL)")
