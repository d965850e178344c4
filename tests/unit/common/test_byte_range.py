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


@pytest.mark.parametrize("range_header, legacy, size, expected", [
    ("bytes=3-10", None, 100, (3, 8)),
    ("bytes=-5", "bytes 0-1/*", 100, (95, 5)),
    (None, "bytes 2-5/100", 100, (2, 4)),
    (None, "bytes 2-500/1000", 100, (2, 98)),
    (None, "bytes 2-99/*", 100, (2, 98)),
])
def test_v2_ranges(range_header: str | None, legacy: str | None, size: int,
                   expected: tuple[int, int]) -> None:
    wanted = byte_range.parse_v2(range_header, legacy)
    assert wanted is not None and wanted.resolve(size) == expected


@pytest.mark.parametrize("range_header, legacy", [
    ("bytes=9-1", None), ("lines=1-2", None), ("bytes=", None),
    (None, "bytes 2-100/*"), (None, "bytes 5-2/*"), (None, "bytes */100")])
def test_v2_refuses_what_it_cannot_read(range_header: str | None,
                                        legacy: str | None) -> None:
    wanted = byte_range.parse_v2(range_header, legacy)
    assert wanted is not None
    with pytest.raises(exception.RangeNotSatisfiable):
        wanted.resolve(100)


def test_v2_several_ranges_are_invalid_and_no_header_is_everything() -> None:
    with pytest.raises(exception.Invalid, match="multiple ranges"):
        byte_range.parse_v2("bytes=0-1,4-5")
    assert byte_range.parse_v2(None, None) is None
