"""Fixtures for the image cache tests: a cache directory, the in-process
api + registry stack with the cache and cachemanage filters in its pipeline,
and store streams and fallbacks for driving fills."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webob
from oslo_config import cfg

from glance_clone.api import property_protections
from glance_clone.api.middleware.cache import CacheFilter, open_cache
from glance_clone.api.middleware.cache_manage import CacheManageFilter
from glance_clone.cache import fill as fill_mod
from glance_clone.cache import options
from glance_clone.cache.fill import Role
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import policy
from glance_clone.common.context import admin_context
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store import backend
from glance_clone.store.base import ChunkIterator
from tests.support.stack import Stack, make_stack
from tests.support.wsgi_transport import transport_for


def cache_conf(cache_dir: pathlib.Path, **overrides: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], project="glance", default_config_files=[])
    conf.set_override("image_cache_dir", str(cache_dir))
    for name, value in overrides.items():
        conf.set_override(name, value)
    return conf


@pytest.fixture(params=["sqlite", "xattr"])
def driver_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cache_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def cache(cache_dir: pathlib.Path, driver_name: str) -> ImageCache:
    return ImageCache(cache_conf(cache_dir, image_cache_driver=driver_name))


class StoreReads:
    """Counts StoreSet.get and get_range calls; can hold ``get``'s data back
    until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()
        original = backend.StoreSet.get
        reads = self

        def counting_get(store_set: backend.StoreSet, url: str) -> Any:
            with reads.lock:
                reads.count += 1
            chunks, size = original(store_set, url)
            gate = reads.gate
            if gate is None:
                return chunks, size
            first = [True]

            def read(amount: int) -> bytes:
                if first[0]:
                    first[0] = False
                else:
                    assert gate.wait(30), "store gate never opened"
                return next(chunks, b"")

            return ChunkIterator(read, chunks.close), size

        monkeypatch.setattr(backend.StoreSet, "get", counting_get)
        original_range = backend.StoreSet.get_range

        def counting_range(store_set: backend.StoreSet, url: str, offset: int,
                           length: int) -> Any:
            with reads.lock:
                reads.count += 1
            return original_range(store_set, url, offset, length)

        monkeypatch.setattr(backend.StoreSet, "get_range", counting_range)

    def hold(self) -> threading.Event:
        """From now on stores give their first chunk, then wait for the event."""
        self.gate = threading.Event()
        return self.gate


@dataclasses.dataclass
class CacheStack:
    stack: Stack
    cache: ImageCache
    cache_dir: pathlib.Path
    registry: RegistryClient
    reads: StoreReads

    @property
    def conf(self) -> cfg.ConfigOpts:
        return self.stack.conf

    def request(self, path: str, method: str = "GET", **kwargs: Any) -> webob.Response:
        return self.stack.request(path, method, **kwargs)

    def upload(self, data: bytes, tenant: str = "t1", public: bool = False,
               properties: dict[str, str] | None = None) -> str:
        headers = {"x-image-meta-name": "img", "x-image-meta-disk-format": "raw",
                   "x-image-meta-container-format": "bare",
                   "x-image-meta-is-public": "true" if public else "false"}
        for name, value in (properties or {}).items():
            headers["x-image-meta-property-" + name] = value
        roles = "admin" if public else "member"
        response = self.request("/v1/images", "POST", body=data, headers=headers,
                                tenant=tenant, roles=roles)
        assert response.status_int == 201, response.body
        image = json.loads(response.body)["image"]
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        return str(image["id"])

    def register(self, data: bytes, status: str = "active", checksum: str | None = None,
                 owner: str = "t1") -> str:
        """An image created straight in the registry, its data in the file store."""
        image_id = str(uuid.uuid4())
        path = self.store_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.registry.add_image(admin_context(), {
            "id": image_id, "name": "registered", "status": status, "size": len(data),
            "checksum": checksum or hashlib.md5(data).hexdigest(), "owner": owner,
            "disk_format": "raw", "container_format": "bare", "is_public": False,
            "location": "file://%s" % path})
        return image_id

    def get(self, image_id: str, tenant: str = "t1", roles: str = "reader,member",
            headers: dict[str, str] | None = None) -> webob.Response:
        return self.request("/v1/images/" + image_id, tenant=tenant, roles=roles,
                            headers=headers)

    def cached_files(self) -> list[str]:
        return sorted(p.name for p in self.cache_dir.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.name != "cache.db")

    def files_in(self, sub: str) -> list[str]:
        return sorted(p.name for p in (self.cache_dir / sub).iterdir())

    def store_path(self, image_id: str) -> pathlib.Path:
        return pathlib.Path(self.stack.datadir) / image_id


def build_cache_stack(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                      driver: str = "sqlite", overrides: dict[str, Any] | None = None,
                      cache_dir: pathlib.Path | None = None) -> CacheStack:
    """make_stack's api with ``cache`` and ``cachemanage`` after its context filter."""
    stack = make_stack(tmp_path, overrides)
    conf = stack.conf
    options.register_opts(conf)
    if cache_dir is None:
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir()
    conf.set_override("image_cache_dir", str(cache_dir))
    conf.set_override("image_cache_driver", driver)
    registry = RegistryClient(conf, transport=transport_for(stack.registry_app),
                              base_url="http://registry")
    enforcer = policy.Enforcer(conf)
    rules = property_protections.PropertyRules(conf, enforcer)
    image_cache, reason = open_cache(conf, "in tests")
    context_filter = stack.context_filter
    root = context_filter.application
    manage = CacheManageFilter(root, conf, image_cache, enforcer, reason)
    context_filter.application = CacheFilter(manage, conf, image_cache, registry,
                                             enforcer, rules)
    reads = StoreReads(monkeypatch)
    assert image_cache is not None
    return CacheStack(stack, image_cache, cache_dir, registry, reads)


@pytest.fixture
def cstack(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> CacheStack:
    return build_cache_stack(tmp_path, monkeypatch)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until truthy or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(0.01)


def run_threads(count: int, target: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``target(i)`` in ``count`` threads; results and errors."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as err:  # collected for the test to assert on
            errors.append(err)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


def body_of(response: webob.Response) -> bytes:
    """Read a streamed body, closing the app_iter as a WSGI server would."""
    app_iter = response.app_iter
    try:
        return b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()


# -- fills ---------------------------------------------------------------------------
CHUNK = fill_mod.CHUNK_SIZE
DATA = bytes(range(256)) * (4 * CHUNK // 256) + b"tail"  # 4 chunks and a bit
GOOD = hashlib.md5(DATA).hexdigest()


class Upstream:
    """A store stream: counts pulls, remembers close, can fail or gate."""

    def __init__(self, data: bytes = DATA, chunk: int = CHUNK,
                 fail_at: int | None = None, gate: threading.Event | None = None) -> None:
        self.chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        self.pulled = 0
        self.closed = False
        self.fail_at = fail_at
        self.gate = gate
        self._it = self._generate()

    def _generate(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.gate is not None and index > 0:
                assert self.gate.wait(30)
            if self.fail_at == index:
                raise OSError("store connection lost")
            self.pulled += 1
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        self.closed = True


def held_verdicts(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every fill hashes its file (and so judges it) only once the
    returned event is set."""
    verdict = threading.Event()
    real = fill_mod.Fill._hash_written

    def held(fill: fill_mod.Fill) -> None:
        assert verdict.wait(30)
        real(fill)
    monkeypatch.setattr(fill_mod.Fill, "_hash_written", held)
    return verdict


def read_all(reader: fill_mod.FillReader) -> bytes:
    try:
        return b"".join(reader)
    finally:
        reader.close()


def start(cache: ImageCache, upstream: Upstream, image_id: str = "img",
          checksum: str | None = GOOD, size: int = len(DATA),
          fallback=None) -> fill_mod.FillReader:
    fill, ours = cache.claim(image_id)
    assert ours
    assert fill.acquire() is Role.WRITER
    reader = fill.start(upstream, size, checksum, fallback)
    assert reader is not None
    return reader


class Fallbacks:
    """A reader's fallback: a fresh store read, remembering the offset of each call."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.reader: fill_mod.FillReader | None = None

    def __call__(self) -> Iterator[bytes]:
        assert self.reader is not None
        self.offsets.append(self.reader.offset)
        return iter(Upstream(chunk=1000))


def with_fallback(make_reader) -> tuple[fill_mod.FillReader, Fallbacks]:
    fallbacks = Fallbacks()
    fallbacks.reader = make_reader(fallbacks)
    return fallbacks.reader, fallbacks
