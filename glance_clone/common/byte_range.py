"""One ``Range: bytes=...`` request header, as image downloads honour it.

Only a single range is served: ``A-B``, ``A-`` (from A to the end) and
``-N`` (the last N bytes). A header we do not serve (another unit, several
ranges, bad syntax) is ignored and the whole image is sent, as HTTP allows.
A range that starts past the end is unsatisfiable (416).
"""

from __future__ import annotations

import dataclasses
import re

from glance_clone.common import exception

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """The first and last byte wanted (``last`` None: to the end); with
    ``first`` None, ``last`` counts the bytes wanted at the end."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """(offset, length) within an image of ``size`` bytes; raises
        RangeNotSatisfiable."""
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


def content_range(offset: int, length: int, size: int) -> str:
    return "bytes %d-%d/%d" % (offset, offset + length - 1, size)
