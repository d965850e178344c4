"""The cache filter in the in-process api + registry stack."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Callable

import pytest
import webob

from glance_clone.api.middleware.cache import CacheFilter, open_cache
from glance_clone.cache import fill as fill_mod
from glance_clone.cache import layout
from glance_clone.cache.fill import CacheFillError
from glance_clone.common import exception, hashing
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.context import admin_context
from tests.unit.cache.conftest import (
    CacheStack,
    body_of,
    build_cache_stack,
    held_verdicts,
    run_threads,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(300 * 1024 + 7)


def test_miss_then_hit(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    first = cstack.get(image_id)
    assert first.status_int == 200
    assert body_of(first) == DATA
    assert cstack.reads.count == 1
    assert cstack.cached_files() == [image_id]
    second = cstack.get(image_id)
    assert second.status_int == 200
    assert body_of(second) == DATA
    assert cstack.reads.count == 1
    for name in ("Content-Type", "Content-Length", "ETag", "x-image-meta-checksum",
                 "x-image-meta-size", "x-image-meta-name", "x-image-meta-status"):
        assert second.headers[name] == first.headers[name], name
    assert second.headers["x-openstack-request-id"].startswith("req-")
    [entry] = cstack.cache.list_cached()
    assert (entry.image_id, entry.hits, entry.size) == (image_id, 1, len(DATA))


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_both_drivers_serve_hits(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                 driver: str) -> None:
    cstack = build_cache_stack(tmp_path, monkeypatch, driver=driver)
    image_id = cstack.upload(DATA)
    assert body_of(cstack.get(image_id)) == DATA
    assert body_of(cstack.get(image_id)) == DATA
    assert cstack.reads.count == 1
    assert cstack.cache.list_cached()[0].hits == 1


def test_head_and_a_range_of_an_uncached_image_are_not_cached(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    assert cstack.request("/v1/images/" + image_id, "HEAD", tenant="t1").status_int == 200
    ranged = cstack.get(image_id, headers={"Range": "bytes=0-9"})
    assert ranged.status_int == 206 and body_of(ranged) == DATA[:10]
    assert cstack.cached_files() == [] and cstack.reads.count == 1   # one ranged read


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("header, first, last", [
    ("bytes=0-9", 0, 9), ("bytes=-1000", len(DATA) - 1000, len(DATA) - 1),
    ("bytes=300000-", 300000, len(DATA) - 1)])
def test_a_range_of_a_cached_image_is_served_from_the_cache(
        cstack: CacheStack, api: str, header: str, first: int, last: int) -> None:
    image_id = cstack.upload(DATA)
    path = "/v1/images/" + image_id if api == "v1" else "/v2/images/%s/file" % image_id
    uncached = cstack.request(path, tenant="t1", headers={"Range": header})
    body_of(uncached)
    body_of(cstack.request(path, tenant="t1"))          # cached now
    reads = cstack.reads.count
    hit = cstack.request(path, tenant="t1", headers={"Range": header})
    assert hit.status_int == 206 and body_of(hit) == DATA[first:last + 1]
    assert cstack.reads.count == reads
    assert hit.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, len(DATA))
    # The API's own answer, header for header.
    assert sorted(k for k in hit.headers if k.lower() != "x-openstack-request-id") == \
        sorted(k for k in uncached.headers if k.lower() != "x-openstack-request-id")
    assert "Content-MD5" not in hit.headers and "ETag" not in hit.headers
    assert cstack.cache.list_cached()[0].hits == 1


@pytest.mark.parametrize("api, header, status", [
    ("v1", "bytes=%d-" % len(DATA), 416), ("v2", "bytes=%d-" % len(DATA), 416),
    ("v2", "bytes=0-1,4-5", 400), ("v2", "bytes=9-1", 416)])
def test_ranges_a_cached_image_cannot_serve_get_the_apis_answer(
        cstack: CacheStack, api: str, header: str, status: int) -> None:
    image_id = cstack.upload(DATA)
    path = "/v1/images/" + image_id if api == "v1" else "/v2/images/%s/file" % image_id
    body_of(cstack.request(path, tenant="t1"))
    response = cstack.request(path, tenant="t1", headers={"Range": header})
    assert response.status_int == status


def test_a_v2_legacy_content_range_is_a_part_of_a_cached_image(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    path = "/v2/images/%s/file" % image_id
    body_of(cstack.request(path, tenant="t1"))
    hit = cstack.request(path, tenant="t1", headers={"Content-Range": "bytes 5-9/*"})
    assert hit.status_int == 206 and body_of(hit) == DATA[5:10]
    assert cstack.reads.count == 1


def test_a_range_of_an_altered_cached_file_is_not_served(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    alter_in_place(cstack.cache_dir / image_id)
    ranged = cstack.get(image_id, headers={"Range": "bytes=0-9"})
    assert ranged.status_int == 206 and body_of(ranged) == DATA[:10]
    assert cstack.files_in("invalid") == [image_id]


def test_without_a_ctime_ranges_go_to_the_store(tmp_path: pathlib.Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cstack = build_cache_stack(tmp_path, monkeypatch, driver="xattr")
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    ranged = cstack.get(image_id, headers={"Range": "bytes=0-9"})
    assert ranged.status_int == 206 and body_of(ranged) == DATA[:10]
    assert cstack.cache.list_cached()[0].hits == 0


def test_visibility_is_enforced_on_hits(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA, tenant="t1")
    body_of(cstack.get(image_id, tenant="t1"))
    assert cstack.cached_files() == [image_id]
    response = cstack.get(image_id, tenant="t2")
    assert response.status_int == 404
    assert b"not found" in response.body
    assert cstack.cached_files() == [image_id]     # still someone's image


def test_download_policy_is_enforced_on_hits(tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"download_image": "role:member or role:admin"}))
    cstack = build_cache_stack(tmp_path, monkeypatch,
                               overrides={"oslo_policy.policy_file": str(policy_file)})
    image_id = cstack.upload(DATA, tenant="t1")
    body_of(cstack.get(image_id))
    miss_answer = cstack.get(image_id, roles="reader")
    assert miss_answer.status_int == 403
    cstack.cache.delete_all_cached()
    body_of(cstack.get(image_id))
    assert cstack.cached_files() == [image_id]
    hit_answer = cstack.get(image_id, roles="reader")
    assert hit_answer.status_int == 403
    assert hit_answer.body == miss_answer.body


def test_deactivated_image_is_refused_on_hits(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    cstack.registry.update_image(admin_context(), image_id, {"status": "deactivated"})
    response = cstack.get(image_id)
    assert response.status_int == 403
    assert b"deactivated" in response.body


def test_read_protected_properties_stay_hidden_on_hits(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "protections.conf"
    rules.write_text("[^secret_]\ncreate = member\nread = admin\nupdate = admin\n"
                     "delete = admin\n[.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n")
    cstack = build_cache_stack(tmp_path, monkeypatch,
                               overrides={"property_protection_file": str(rules)})
    image_id = cstack.upload(DATA, properties={"secret_key": "s3", "os": "linux"})
    miss = cstack.get(image_id)
    body_of(miss)
    hit = cstack.get(image_id)
    assert body_of(hit) == DATA
    assert cstack.reads.count == 1
    assert hit.headers["x-image-meta-property-os"] == "linux"
    assert "x-image-meta-property-secret_key" not in hit.headers
    assert "x-image-meta-property-secret_key" not in miss.headers


def test_delete_removes_the_cached_copy(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    cstack.cache.queue("someother")
    assert cstack.request("/v1/images/" + image_id, "DELETE", tenant="t1").status_int == 200
    assert cstack.cached_files() == []
    assert cstack.get(image_id).status_int == 404


def test_failed_delete_keeps_the_cached_copy(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    assert cstack.request("/v1/images/" + image_id, "DELETE", tenant="t2").status_int == 404
    assert cstack.cached_files() == [image_id]


def test_image_deleted_elsewhere_is_not_served_and_removed(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    # Another api node deleted it: only the registry knows.
    cstack.registry.update_image(admin_context(), image_id, {"status": "deleted"})
    cstack.registry.delete_image(admin_context(), image_id)
    response = cstack.get(image_id)
    assert response.status_int == 404
    assert cstack.cached_files() == []
    admin_answer = cstack.get(image_id, tenant="t1", roles="admin")
    assert admin_answer.status_int == 404


def test_altered_size_is_detected_before_serving(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    (cstack.cache_dir / image_id).write_bytes(b"evil" + DATA)
    response = cstack.get(image_id)
    assert body_of(response) == DATA
    assert cstack.reads.count == 2
    assert cstack.files_in("invalid") == [image_id]
    assert cstack.cached_files() == [image_id]      # cached again, correctly


def alter_in_place(path: pathlib.Path, offset: int = 1000) -> None:
    """Rewrite bytes, then set the mtime back, as a careful attacker would."""
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"X" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_hit_is_not_hashed_again(cstack: CacheStack, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    hashed: list[int] = []
    real_update = hashing.Digests.update
    monkeypatch.setattr(hashing.Digests, "update",
                        lambda self, data: (hashed.append(len(data)), real_update(self, data)))
    assert body_of(cstack.get(image_id)) == DATA
    assert hashed == [] and cstack.reads.count == 1


def test_altered_content_with_same_size_and_mtime_is_not_served(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    alter_in_place(cstack.cache_dir / image_id)
    # The ctime gives it away before the first byte: the store serves it.
    assert body_of(cstack.get(image_id)) == DATA
    assert cstack.reads.count == 2
    assert cstack.files_in("invalid") == [image_id]
    assert body_of(cstack.get(image_id)) == DATA


@pytest.mark.parametrize("change", ["alter", "truncate"])
def test_a_file_changed_while_it_is_served_never_completes(cstack: CacheStack,
                                                           change: str) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    image_id = cstack.upload(data)
    body_of(cstack.get(image_id))
    response = cstack.get(image_id)
    assert response.status_int == 200
    chunks = iter(response.app_iter)
    received = bytearray(next(chunks))
    path = cstack.cache_dir / image_id
    if change == "alter":
        alter_in_place(path, offset=len(data) - 20)
    else:
        os.truncate(path, len(data) - 20)
    with pytest.raises((CacheFillError, exception.StoreError)):
        for chunk in chunks:
            received += chunk
    response.app_iter.close()
    assert len(received) < len(data)
    assert cstack.files_in("invalid") == [image_id]


def test_without_a_ctime_a_hit_is_hashed(tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cstack = build_cache_stack(tmp_path, monkeypatch, driver="xattr")
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    alter_in_place(cstack.cache_dir / image_id)
    response = cstack.get(image_id)
    assert response.status_int == 200
    received = bytearray()
    with pytest.raises(CacheFillError, match="altered"):
        for chunk in response.app_iter:
            received += chunk
    response.app_iter.close()
    assert len(received) < len(DATA)
    assert cstack.files_in("invalid") == [image_id]


def test_without_a_ctime_a_hit_checks_the_multihash(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cstack = build_cache_stack(tmp_path, monkeypatch, driver="xattr")
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    # Without its md5 on record, only the multihash can tell the bytes changed.
    path = cstack.cache_dir / image_id
    os.removexattr(path, "user.checksum")
    alter_in_place(path)
    response = cstack.get(image_id)
    with pytest.raises(CacheFillError, match="altered .*sha512"):
        body_of(response)
    assert cstack.files_in("invalid") == [image_id]


def read_before_the_verdict(monkeypatch: pytest.MonkeyPatch,
                            get: Callable[[], webob.Response]) -> bytes:
    """The body of ``get()``'s miss, all read before the fill judges the
    file: a reader still behind when a mismatch is found is cut."""
    verdict = held_verdicts(monkeypatch)
    response = get()
    assert response.status_int == 200
    app_iter = response.app_iter
    try:
        return b"".join(app_iter)
    finally:
        verdict.set()
        app_iter.close()


def test_store_data_not_matching_the_checksum_is_not_cached(
        cstack: CacheStack, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = cstack.upload(DATA)
    store_file = cstack.store_path(image_id)
    store_file.write_bytes(b"Z" * len(DATA))
    # What the store sent, as uncached; the cache does not keep it.
    body = read_before_the_verdict(monkeypatch, lambda: cstack.get(image_id))
    assert body == b"Z" * len(DATA)
    assert cstack.cached_files() == []
    assert cstack.files_in("invalid") == [image_id]


def test_disk_error_while_caching_leaves_the_download_intact(
        cstack: CacheStack, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int, data: bytes, offset: int) -> None:
        # The disk fills up 100 kB in, whatever the size of the write.
        if offset + len(data) > 100000:
            raise OSError(28, "No space left on device")
        os.pwrite(fd, data, offset)

    monkeypatch.setattr(fill_mod, "_pwrite_all", disk_full)
    image_id = cstack.upload(DATA)
    assert body_of(cstack.get(image_id)) == DATA
    assert cstack.cached_files() == []
    assert cstack.files_in("incomplete") == []


def test_concurrent_misses_read_the_store_once(cstack: CacheStack) -> None:
    # More than the one chunk the held store gives: readers wait for the rest.
    data = DATA * 5
    image_id = cstack.upload(data)
    gate = cstack.reads.hold()
    responses: list[webob.Response] = []

    def fetch(index: int) -> bytes:
        response = cstack.get(image_id, tenant="t1")
        responses.append(response)
        return body_of(response)

    def readers() -> int:
        fill = cstack.cache.fills.get(image_id)
        return fill.readers if fill is not None else 0

    results: list[bytes] = []
    import threading

    def run() -> None:
        out, errors = run_threads(12, fetch)
        assert not errors, errors
        results.extend(out)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: readers() == 12, message="12 readers on one fill")
    gate.set()
    thread.join(60)
    assert results == [data] * 12
    assert cstack.reads.count == 1
    assert all(r.status_int == 200 for r in responses)
    assert cstack.cached_files() == [image_id]


def test_miss_while_another_process_writes_the_file_follows_it(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    incomplete = cstack.cache.layout.incomplete(image_id)
    writer = layout.open_locked(incomplete)        # another worker's fill
    assert writer is not None
    try:
        os.write(writer, DATA)
        # Checked like a hit: the API answers whoever may not download it.
        assert cstack.get(image_id, tenant="t2").status_int == 404
        followed = cstack.get(image_id)
        assert followed.status_int == 200
        assert body_of(followed) == DATA
        assert cstack.reads.count == 0
        assert cstack.cached_files() == [] and cstack.files_in("incomplete") == [image_id]
    finally:
        os.close(writer)
    os.unlink(incomplete)
    miss = cstack.get(image_id)
    assert body_of(miss) == DATA and cstack.reads.count == 1
    for name in ("Content-Type", "Content-Length", "ETag", "x-image-meta-checksum",
                 "x-image-meta-size", "x-image-meta-name", "x-image-meta-status"):
        assert followed.headers[name] == miss.headers[name], name


def test_followed_writer_stopping_short_falls_back_to_the_store(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    writer = layout.open_locked(cstack.cache.layout.incomplete(image_id))
    assert writer is not None
    os.write(writer, DATA[:100000])
    response = cstack.get(image_id)
    assert response.status_int == 200
    chunks = iter(response.app_iter)
    received = next(chunks)
    assert cstack.reads.count == 0
    os.close(writer)
    received += b"".join(chunks)
    response.app_iter.close()
    assert received == DATA
    assert cstack.reads.count == 1
    assert cstack.cached_files() == []


def test_waiters_retry_when_the_first_request_is_refused(tmp_path: pathlib.Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cstack = build_cache_stack(tmp_path, monkeypatch)
    image_id = cstack.upload(DATA, tenant="t1")
    assert cstack.get(image_id, tenant="t2").status_int == 404
    assert cstack.cache.fills.get(image_id) is None
    assert body_of(cstack.get(image_id, tenant="t1")) == DATA
    assert cstack.cached_files() == [image_id]


def test_missing_cache_directory_serves_uncached(tmp_path: pathlib.Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from tests.unit.cache.conftest import cache_conf
    conf = cache_conf(tmp_path / "nope")
    with caplog.at_level(logging.ERROR):
        cache, reason = open_cache(conf, "serving images uncached")
    assert cache is None and "does not exist" in reason
    assert "Image cache disabled, serving images uncached" in caplog.text

    def app(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from the api"]

    wrapped = CacheFilter(app, conf, None, None, None, None)  # type: ignore[arg-type]
    response = webob.Request.blank("/v1/images/abc").get_response(wrapped)
    assert response.body == b"from the api"


def test_zero_size_image_is_passed_through(cstack: CacheStack) -> None:
    response = cstack.request("/v1/images", "POST", tenant="t1", headers={
        "x-image-meta-name": "empty", "x-image-meta-size": "0",
        "x-image-meta-disk-format": "raw", "x-image-meta-container-format": "bare"})
    assert response.status_int == 201
    image_id = json.loads(response.body)["image"]["id"]
    got = cstack.get(image_id)
    assert got.status_int == 200 and body_of(got) == b""
    assert cstack.cached_files() == []


def test_checksum_of_cached_file_recorded(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    hit = cstack.cache.open_cached(image_id)
    assert hit is not None
    assert hit.entry.checksum == hashlib.md5(DATA).hexdigest()
    assert hit.entry.multihash == ("sha512", hashlib.sha512(DATA).hexdigest())
    hit.close()


def test_store_data_not_matching_the_multihash_is_not_cached(
        cstack: CacheStack, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = cstack.upload(DATA)
    other = hashlib.sha512(b"other").hexdigest()
    cstack.registry.update_image(admin_context(), image_id, {"os_hash_value": other})
    with caplog.at_level(logging.WARNING):
        assert read_before_the_verdict(monkeypatch, lambda: cstack.get(image_id)) == DATA
    assert "sha512 %s, expected %s" % (hashlib.sha512(DATA).hexdigest(), other) \
        in caplog.text
    assert cstack.cached_files() == []
    assert cstack.files_in("invalid") == [image_id]


def test_a_cached_file_of_another_multihash_is_not_served(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    body_of(cstack.get(image_id))
    hit = cstack.cache.open_cached(image_id)
    assert hit is not None
    image = cstack.registry.get_image(admin_context(), image_id)
    assert hit.mismatch(image) == ""
    assert "sha512" in hit.mismatch(dict(image, os_hash_value="0" * 128))
    # Another algorithm cannot be compared; an image without one neither.
    assert hit.mismatch(dict(image, os_hash_algo="sha256", os_hash_value="0" * 64)) == ""
    assert hit.mismatch(dict(image, os_hash_algo=None, os_hash_value=None)) == ""
    hit.close()


def test_v2_downloads_share_the_cache_and_its_rules(cstack: CacheStack) -> None:
    image_id = cstack.upload(DATA)
    path = "/v2/images/%s/file" % image_id
    first = cstack.request(path, tenant="t1", roles="reader,member")
    assert first.status_int == 200 and body_of(first) == DATA
    assert cstack.reads.count == 1 and cstack.cached_files() == [image_id]
    checksum = hashlib.md5(DATA).hexdigest()
    assert first.headers["Content-MD5"] == checksum
    # A hit through either API: no store read, each API's own headers.
    hit = cstack.request(path, tenant="t1", roles="reader,member")
    assert body_of(hit) == DATA and hit.headers["Content-MD5"] == checksum
    assert "x-image-meta-status" not in hit.headers
    assert body_of(cstack.get(image_id)) == DATA
    assert cstack.reads.count == 1
    # v2 rules: others get 404, a deactivated image is the admin's to read.
    assert cstack.request(path, tenant="t2", roles="reader,member").status_int == 404
    cstack.registry.update_image(admin_context(), image_id, {"status": "deactivated"})
    assert cstack.request(path, tenant="t1", roles="reader,member").status_int == 403
    admin = cstack.request(path, tenant="t1", roles="admin")
    assert admin.status_int == 200 and body_of(admin) == DATA
    assert cstack.get(image_id, roles="admin").status_int == 403
    assert cstack.reads.count == 1
    cstack.registry.update_image(admin_context(), image_id, {"status": "active"})
    assert cstack.request("/v2/images/" + image_id, "DELETE", tenant="t1").status_int == 204
    assert cstack.cached_files() == []
