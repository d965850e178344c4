"""Tests for the streaming helpers of the object stores (Swift, S3)."""

from __future__ import annotations

import hashlib

import pytest

from glance_clone.common import exception
from glance_clone.store.streaming import SourceReader
from tests.unit.store.backends import CapExceeded, chunks_of, image


def test_source_reader_splits_chunks_and_hashes() -> None:
    data = image(300_000)
    reader = SourceReader(chunks_of(data, 100_000))
    first = reader.window(150_000)
    got = b"".join(iter(lambda: first.read(64 * 1024), b""))
    assert got == data[:150_000]
    assert not reader.at_end()
    rest = b"".join(iter(lambda: reader.read(-1), b""))
    assert got + rest == data
    assert reader.at_end() and reader.read(10) == b""
    assert reader.bytes_read == len(data)
    assert reader.md5.hexdigest() == hashlib.md5(data).hexdigest()


def test_source_reader_keeps_the_iterators_error() -> None:
    reader = SourceReader(chunks_of(b"x" * 300, 100, fail_after=200))
    assert reader.read(1000) == b"x" * 100
    reader.read(1000)
    with pytest.raises(CapExceeded):
        reader.read(1000)
    assert isinstance(reader.error, CapExceeded)


def test_exact_window_refuses_short_data() -> None:
    reader = SourceReader([b"abc"])
    window = reader.window(5, exact=True)
    assert window.read(10) == b"abc"
    with pytest.raises(exception.ImageDataMismatch):
        window.read(10)
    assert isinstance(reader.error, exception.ImageDataMismatch)
