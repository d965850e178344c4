"""Range headers: the one range served, what is ignored, what is unsatisfiable."""

from __future__ import annotations

import pytest

from glance_clone.common import byte_range, exception


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-200", 100, (90, 10)),
    ("bytes=10-", 100, (10, 90)),
    ("bytes=-30", 100, (70, 30)),
    ("bytes=-300", 100, (0, 100)),
    ("Bytes = 5 - 5", 100, (5, 1)),
])
def test_ranges_resolve_to_offset_and_length(header: str, size: int,
                                             expected: tuple[int, int]) -> None:
    wanted = byte_range.parse(header)
    assert wanted is not None and wanted.resolve(size) == expected


@pytest.mark.parametrize("header", [
    None, "", "bytes=", "bytes=-", "items=0-9", "bytes=0-9,20-29", "bytes=9-0", "bytes=a-b"])
def test_what_is_not_served_as_a_range_means_everything(header: str | None) -> None:
    assert byte_range.parse(header) is None


@pytest.mark.parametrize("header, size", [("bytes=100-", 100), ("bytes=-0", 100),
                                          ("bytes=-5", 0), ("bytes=0-0", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    wanted = byte_range.parse(header)
    assert wanted is not None
    with pytest.raises(exception.RangeNotSatisfiable) as err:
        wanted.resolve(size)
    assert err.value.size == size


def test_content_range() -> None:
    assert byte_range.content_range(10, 5, 100) == "bytes 10-14/100"
