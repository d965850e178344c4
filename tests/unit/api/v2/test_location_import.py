"""The v2.17 location API: POST /v2/images/{id}/locations checks the
request at once (4xx), then a location_import task holding the import
lock reads the data, checks the given hash and the disk format, and only
then activates the image with its location; any failure fails the task
and leaves the image queued without the lock."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import eventlet
import pytest

from glance_clone.common.context import admin_context
from tests.support import disk_images
from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2
from .test_import import wait_status
from .test_import_reliability import _age, _tasks_of

FORMATS = {"disk_format": "raw", "container_format": "bare"}
# A service acting in the image's project (it must be able to read it: a
# Keystone token for member also carries reader).
SERVICE = {"tenant": "t1", "roles": "reader,member,service", "user": "cinder"}
DATA = b"written by a service" * 1000


def post_location(v2: V2, image_id: str, body: Any, **caller: Any) -> Any:
    return v2.call("POST", "/images/%s/locations" % image_id, body, **caller)


def hashed(algo: str, data: bytes = DATA) -> dict:
    return {"os_hash_algo": algo, "os_hash_value": hashlib.new(algo, data).hexdigest()}


def _hold(v2: V2) -> list:
    """Keep accepted location imports from running (the node 'dies')."""
    started: list = []
    v2.stack.v2.location_import.spawn = lambda run, context, task: started.append(
        (run, context, task))
    return started


def _task(v2: V2, image_id: str) -> dict:
    [task] = _tasks_of(v2, image_id)
    return task


def _finished(v2: V2, image_id: str, status: str) -> tuple[dict, dict]:
    """The image (which must be ``status``) once its task is over, and the
    task."""
    for _ in range(500):
        task = _task(v2, image_id)
        if task["status"] in ("success", "failure"):
            break
        eventlet.sleep(0.01)
    assert task["status"] in ("success", "failure"), task
    shown = v2.call("GET", "/images/" + image_id).json
    assert shown["status"] == status, (shown, task)
    return shown, task


def _queued_again(v2: V2, image_id: str) -> dict:
    shown, task = _finished(v2, image_id, "queued")
    assert task["status"] == "failure"
    assert not any(name.startswith("os_glance") for name in shown), shown
    assert (shown["size"], shown["checksum"], shown["os_hash_value"]) == (None,) * 3
    assert v2.call("GET", "/images/%s/locations" % image_id, **ADMIN).json == []
    assert v2.stack.stored_files() == []
    return task


@pytest.mark.parametrize("algo", ["sha256", "md5", "sha1", "sha512"])
def test_a_service_gives_a_queued_image_its_location(v2: V2, remote, algo) -> None:
    url = remote.add("svc", DATA)
    image = v2.create(name="q", **FORMATS)
    res = post_location(v2, image["id"], {"url": url, "validation_data": hashed(algo)},
                        **SERVICE)
    assert res.status_int == 202 and res.body == b"", res.text
    shown, task = _finished(v2, image["id"], "active")
    assert task["status"] == "success", task
    assert (task["type"], task["result"]) == ("location_import", {"image_id": image["id"]})
    assert task["input"] == {"image_id": image["id"], "loc_url": url,
                             "validation_data": hashed(algo)}
    assert (shown["size"], shown["os_hash_algo"], shown["os_hash_value"]) == (
        len(DATA), algo, hashed(algo)["os_hash_value"])
    assert shown["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert not any(name.startswith("os_glance") for name in shown), shown
    assert "locations" not in shown  # show_multiple_locations is off
    listed = v2.call("GET", "/images/%s/locations" % image["id"], **SERVICE)
    assert listed.status_int == 200 and listed.json == [{"url": url, "metadata": {}}]
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA
    assert v2.stack.stored_files() == []   # the data stays where it is
    # Only a queued image takes one.
    assert post_location(v2, image["id"], {"url": url + "2"}, **SERVICE).status_int == 409


def test_without_validation_data_the_hash_comes_from_the_data(v2: V2, remote) -> None:
    url = remote.add("plain", DATA)
    image = v2.create(name="q", **FORMATS)
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    shown, _task_ = _finished(v2, image["id"], "active")
    assert (shown["os_hash_algo"], shown["os_hash_value"]) == (
        "sha512", hashlib.sha512(DATA).hexdigest())


def test_the_task_holds_the_import_lock_and_shows_in_the_task_lists(v2: V2,
                                                                    remote) -> None:
    url = remote.add("held", DATA)
    image = v2.create(name="q", **FORMATS)
    held = _hold(v2)
    assert post_location(v2, image["id"], {"url": url}, **SERVICE).status_int == 202
    [(run, context, task)] = held
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "importing"
    assert shown["os_glance_import_task"] == task["id"]
    assert (task["type"], task["status"], task["owner"]) == (
        "location_import", "pending", "t1")
    listed = v2.call("GET", "/tasks", **ADMIN).json["tasks"]
    assert [(t["id"], t["type"]) for t in listed] == [(task["id"], "location_import")]
    of_image = v2.call("GET", "/images/%s/tasks" % image["id"]).json["tasks"]
    assert [t["id"] for t in of_image] == [task["id"]]
    # Meanwhile: no second location, no import, no upload.
    assert post_location(v2, image["id"], {"url": url}, **SERVICE).status_int == 409
    assert v2.upload(image["id"], b"other").status_int == 409
    run(context, task)
    shown, done = _finished(v2, image["id"], "active")
    assert done["status"] == "success" and "os_glance_import_task" not in shown


def test_progress_on_the_image_while_the_location_is_read(v2: V2, remote) -> None:
    from glance_clone.common.chunking import CHUNK_SIZE
    from glance_clone.domain.task_lease import Lease

    data = b"p" * (CHUNK_SIZE * 3)
    url = remote.add("big", data)
    image = v2.create(name="q", **FORMATS)
    imports = v2.stack.v2.location_import
    ticks = iter(range(0, 10_000, 100))   # an interval passes at every look
    imports.lease_factory = functools.partial(Lease, clock=lambda: next(ticks))
    seen: list[tuple[str, str]] = []
    show = imports.lock.show_progress

    def recorded(*args: Any) -> None:
        show(*args)
        props = v2.call("GET", "/images/" + image["id"]).json
        seen.append((props["os_glance_import_copied"], props["os_glance_import_size"]))

    imports.lock.show_progress = recorded
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    shown, task = _finished(v2, image["id"], "active")
    assert task["status"] == "success" and seen, task
    assert {size for _done, size in seen} == {str(len(data))}
    assert [int(done) for done, _size in seen] == sorted(int(d) for d, _s in seen)
    assert not any(name.startswith("os_glance") for name in shown)


def test_a_hash_that_differs_fails_the_task(v2: V2, remote) -> None:
    url = remote.add("other", b"not what the service said")
    image = v2.create(name="q", **FORMATS)
    res = post_location(v2, image["id"], {"url": url, "validation_data": hashed("sha256")},
                        **SERVICE)
    assert res.status_int == 202
    task = _queued_again(v2, image["id"])
    given = hashed("sha256")["os_hash_value"]
    assert "not the %s of validation_data" % given in task["message"], task
    # Queued again: a location with the right data is taken.
    good = remote.add("good", DATA)
    assert post_location(v2, image["id"], {"url": good, "validation_data":
                                           hashed("sha256")}, **SERVICE).status_int == 202
    wait_status(v2, image["id"], "active")


def test_an_unreadable_source_fails_the_task(v2: V2, remote) -> None:
    image = v2.create(name="q", **FORMATS)
    res = post_location(v2, image["id"], {"url": remote.base_url + "/missing"}, **ADMIN)
    assert res.status_int == 202
    task = _queued_again(v2, image["id"])
    assert task["message"], task


def test_data_over_the_size_cap_fails_the_task(v2_with, remote) -> None:
    v2 = v2_with({"image_size_cap": 100})
    for sized in (True, False):
        image = v2.create(name="q", **FORMATS)
        url = remote.add("big%s" % sized, DATA, sized=sized)
        assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
        assert "100 bytes" in _queued_again(v2, image["id"])["message"]


def test_the_disk_format_is_inspected(v2: V2, remote, tmp_path) -> None:
    qcow2 = disk_images.qcow2(tmp_path)
    image = v2.create(name="q", disk_format="qcow2", container_format="bare")
    assert post_location(v2, image["id"], {"url": remote.add("disk", qcow2)},
                         **ADMIN).status_int == 202
    shown, _task_ = _finished(v2, image["id"], "active")
    assert shown["virtual_size"] and shown["size"] == len(qcow2)
    unsafe = v2.create(name="u", disk_format="qcow2", container_format="bare")
    url = remote.add("unsafe", disk_images.qcow2_with_backing_file(tmp_path))
    assert post_location(v2, unsafe["id"], {"url": url}, **ADMIN).status_int == 202
    assert "safety" in _queued_again(v2, unsafe["id"])["message"]


def test_refusals_at_request_time_change_nothing(v2_with, tmp_path, remote) -> None:
    v2 = v2_with({"oslo_policy.policy_file": policy_file(tmp_path, {
        "add_image_location": "role:member or role:service"})})
    url = remote.add("x", DATA)
    image = v2.create(name="q", **FORMATS)
    for body, code in (
            ({"url": url, "extra": 1}, 400),
            ({}, 400),
            ({"url": 5}, 400),
            ({"url": url, "validation_data": {"os_hash_algo": "crc32",
                                              "os_hash_value": "00"}}, 400),
            ({"url": url, "validation_data": {"os_hash_algo": "sha256",
                                              "os_hash_value": "ab"}}, 400),
            ({"url": url, "validation_data": {"os_hash_algo": "md5",
                                              "os_hash_value": "z" * 32}}, 400),
            ({"url": url, "validation_data": {"os_hash_algo": "md5"}}, 400),
            ({"url": url, "validation_data": dict(hashed("md5"), checksum="0")}, 400),
            ({"url": "file:///etc/passwd"}, 403),     # not http, not a service
            ({"url": "http://169.254.169.254/x"}, 400)):  # the source filter
        res = post_location(v2, image["id"], body)
        assert res.status_int == code, (body, res.text)
    assert post_location(v2, image["id"], {"url": "file:///etc/passwd"},
                         **SERVICE).status_int == 400
    assert post_location(v2, image["id"], {"url": url}, tenant="t2").status_int == 404
    no_formats = v2.create(name="f")
    assert post_location(v2, no_formats["id"], {"url": url}).status_int == 400
    for created in (image, no_formats):
        shown = v2.call("GET", "/images/" + created["id"]).json
        assert shown["status"] == "queued"
        assert not any(name.startswith("os_glance") for name in shown)
    assert v2.call("GET", "/tasks", **ADMIN).json["tasks"] == []


def test_without_the_http_store_only_admins_and_services_add(v2_with, tmp_path,
                                                            remote) -> None:
    v2 = v2_with({"glance_store.stores": ["file"],
                  "oslo_policy.policy_file": policy_file(tmp_path, {
                      "add_image_location": "role:member or role:service"})})
    image = v2.create(name="q", **FORMATS)
    url = remote.add("x", DATA)
    res = post_location(v2, image["id"], {"url": url})
    assert res.status_int == 403 and "http store" in res.text
    # A service gets the source filter's answer: no store reads http.
    assert post_location(v2, image["id"], {"url": url}, **SERVICE).status_int == 400
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "queued"


def test_a_stale_lock_is_broken_a_live_one_is_not(v2: V2, remote) -> None:
    url = remote.add("x", DATA)
    image = v2.create(name="q", **FORMATS)
    held = _hold(v2)
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    [(_run, _context, first)] = held
    # Not run, then looked at later: its lock is stale, and broken.
    v2.stack.v2.registry.update_image(admin_context(), image["id"],
                                      {"status": "queued"})
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 409
    _age(v2, first["id"])
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    old = v2.stack.v2.task_repository.get(admin_context(), first["id"])
    assert (old["status"], old["message"]) == ("failure", "Expired lock preempted")


def test_the_reaper_puts_back_the_image_of_a_dead_node(v2: V2, remote) -> None:
    url = remote.add("x", DATA)
    image = v2.create(name="q", **FORMATS)
    held = _hold(v2)
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    [(_run, _context, task)] = held
    _age(v2, task["id"])
    assert v2.stack.v2.task_reaper.reap() == 1
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and "os_glance_import_task" not in shown
    failed = v2.stack.v2.task_repository.get(admin_context(), task["id"])
    assert failed["status"] == "failure" and "interrupted" in failed["message"]
    # The image takes a location again.
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    run, context, again = held[1]
    run(context, again)
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "active"


def test_location_api_is_for_services_and_owners_by_default(v2: V2, v2_with,
                                                            remote) -> None:
    # New defaults: services, and members of the owning project, add; only
    # services (and admins) read them back.
    image = v2.create(name="q", **FORMATS)
    url = remote.add("y", DATA)
    assert post_location(v2, image["id"], {"url": url}, roles="reader").status_int == 403
    assert post_location(v2, image["id"], {"url": url}, tenant="t2").status_int == 404
    assert v2.call("GET", "/images/%s/locations" % image["id"]).status_int == 403
    assert v2.call("GET", "/images/%s/locations" % image["id"], **ADMIN).json == []
    assert post_location(v2, image["id"], {"url": url}).status_int == 202
    # The old defaults: admins and services only.
    legacy = v2_with({"oslo_policy.enforce_new_defaults": False})
    image = legacy.create(name="q", **FORMATS)
    assert post_location(legacy, image["id"], {"url": url}).status_int == 403


def test_the_sweep_undoes_a_finished_location_import_as_its_own(v2: V2, remote) -> None:
    """An image left importing under a location import that is over (its
    node died between failing the task and putting the image back) is put
    back by the reaper's sweep the location import's way: queued, with no
    store named as a failed import target (the task wrote to none)."""
    url = remote.add("x", DATA)
    image = v2.create(name="q", **FORMATS)
    held = _hold(v2)
    assert post_location(v2, image["id"], {"url": url}, **ADMIN).status_int == 202
    [(_run, _context, task)] = held
    repository = v2.stack.v2.task_repository
    repository.move(admin_context(), repository.get(admin_context(), task["id"]),
                    "failure", message="its node stopped")
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "importing"
    assert v2.stack.v2.task_reaper.reap() == 0
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued"
    assert not any(name.startswith("os_glance") for name in shown), shown
