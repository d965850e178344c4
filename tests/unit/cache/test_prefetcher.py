"""glance-cache-prefetcher logic against the in-process registry and file store."""

from __future__ import annotations

import hashlib
import os

import pytest

from glance_clone.cache.prefetcher import Prefetcher
from glance_clone.common.context import admin_context
from glance_clone.store import backend
from tests.unit.cache.conftest import CacheStack, body_of

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(200000)


def prefetcher(cstack: CacheStack) -> Prefetcher:
    return Prefetcher(cstack.cache, cstack.registry, backend.StoreSet(cstack.conf))


def test_fetches_queued_images(cstack: CacheStack) -> None:
    ready = cstack.register(DATA)
    waiting = cstack.register(DATA, status="queued")
    absent = "11111111-2222-3333-4444-555555555555"
    for image_id in (ready, waiting, absent):
        assert cstack.cache.queue(image_id)
    result = prefetcher(cstack).run()
    assert result.fetched == [ready]
    assert sorted(result.skipped) == sorted([waiting, absent])
    assert cstack.cached_files() == [ready]
    assert cstack.cache.list_queued() == [waiting]   # may become active later
    reads = cstack.reads.count
    assert body_of(cstack.get(ready)) == DATA          # a hit now
    assert cstack.reads.count == reads


def test_bad_checksum_is_not_cached(cstack: CacheStack) -> None:
    image_id = cstack.register(DATA, checksum="0" * 32)
    cstack.cache.queue(image_id)
    result = prefetcher(cstack).run()
    assert result.failed == [image_id]
    assert cstack.cached_files() == []
    assert cstack.files_in("invalid") == [image_id]
    assert cstack.cache.list_queued() == [image_id]


def test_bad_multihash_is_not_cached(cstack: CacheStack) -> None:
    image_id = cstack.register(DATA)
    cstack.registry.update_image(admin_context(), image_id, {
        "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(b"other").hexdigest()})
    cstack.cache.queue(image_id)
    assert prefetcher(cstack).run().failed == [image_id]
    assert cstack.cached_files() == [] and cstack.files_in("invalid") == [image_id]
    cstack.registry.update_image(admin_context(), image_id, {
        "os_hash_value": hashlib.sha512(DATA).hexdigest()})
    assert prefetcher(cstack).run().fetched == [image_id]
    entry = cstack.cache.driver.get_entry(image_id)
    assert entry is not None and entry.multihash == ("sha512", hashlib.sha512(DATA).hexdigest())


def test_nothing_queued(cstack: CacheStack) -> None:
    result = prefetcher(cstack).run()
    assert (result.fetched, result.skipped, result.failed) == ([], [], [])


def test_already_cached_is_dequeued(cstack: CacheStack) -> None:
    image_id = cstack.register(DATA)
    body_of(cstack.get(image_id))
    open(cstack.cache.layout.queued(image_id), "wb").close()
    assert prefetcher(cstack).run().skipped == [image_id]
    assert cstack.cache.list_queued() == []
