"""One ``Range: bytes=...`` request header, as image downloads honour it.

Only a single range is served: ``A-B``, ``A-`` (from A to the end) and
``-N`` (the last N bytes). A range that starts past the end is
unsatisfiable (416). The two APIs differ on the rest:

- v1 (``parse``): a header we do not serve (another unit, several ranges,
  bad syntax) is ignored and the whole image is sent, as HTTP allows.
- v2 (``parse_v2``, as the newest Glance): several ranges are a 400 and a
  header that does not parse is a 416. A request ``Content-Range: bytes
  A-B/T`` (or ``/*``), which older clients sent to resume, is read as the
  range A-B when there is no ``Range``; with ``*`` for the total, B past
  the end is a 416.
"""

from __future__ import annotations

import dataclasses
import re

from glance_clone.common import exception

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_LEGACY_SPEC = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """The first and last byte wanted (``last`` None: to the end); with
    ``first`` None, ``last`` counts the bytes wanted at the end."""

    first: int | None
    last: int | None
    # The last byte must exist (a legacy Content-Range of unknown total).
    last_within: bool = False

    def resolve(self, size: int) -> tuple[int, int]:
        """(offset, length) within an image of ``size`` bytes; raises
        RangeNotSatisfiable."""
        if self.last_within and self.last is not None and self.last >= size:
            raise exception.RangeNotSatisfiable(size=size)
        if self.first is None:
            assert self.last is not None
            if self.last == 0 or size == 0:
                raise exception.RangeNotSatisfiable(size=size)
            length = min(self.last, size)
            return size - length, length
        if self.first >= size:
            raise exception.RangeNotSatisfiable(size=size)
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last - self.first + 1


def parse(header: str | None) -> ByteRange | None:
    """The range a ``Range`` header asks for; None to send everything."""
    if not header:
        return None
    match = _SPEC.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return ByteRange(None, int(last))
    if last and int(last) < int(first):
        return None
    return ByteRange(int(first), int(last) if last else None)


# What v2 makes of a header it cannot read: no image can satisfy it (the
# last 0 bytes of anything).
UNSATISFIABLE = ByteRange(None, 0)


def parse_v2(range_header: str | None,
             content_range_header: str | None = None) -> ByteRange | None:
    """The range a v2 download asks for (None: everything); raises Invalid
    for several ranges. A header that does not parse gives a range every
    image refuses (416)."""
    if range_header is not None:
        if "," in range_header:
            raise exception.Invalid(
                "Requests with multiple ranges are not supported; make several "
                "single-range requests instead.")
        return parse(range_header) or UNSATISFIABLE
    if content_range_header is not None:
        match = _LEGACY_SPEC.match(content_range_header)
        if match is None or int(match.group(2)) < int(match.group(1)):
            return UNSATISFIABLE
        return ByteRange(int(match.group(1)), int(match.group(2)),
                         last_within=match.group(3) == "*")
    return None


def content_range(offset: int, length: int, size: int) -> str:
    return "bytes %d-%d/%d" % (offset, offset + length - 1, size)
