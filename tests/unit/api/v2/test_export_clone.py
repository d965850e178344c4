"""The export and clone task types, run to the end in-process: export to a
local PUT target, clone to a second in-process deployment."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Callable
from typing import Any

import eventlet
import pytest

from glance_clone.common.context import RequestContext, admin_context
from glance_clone.domain.remote_glance import RemoteGlance
from tests.support.stack import Stack, make_stack
from tests.support.wsgi_adapter import session_for
from tests.unit.store.test_put_target import Target, serving

from .conftest import ADMIN, V2
from .test_import_reliability import _age
from .test_tasks import _finish

ROOT = RequestContext(user="root", tenant="admin-t", roles=("admin",), is_admin=True)

DATA = b"moved-bytes" * 30_000
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()


@pytest.fixture
def target() -> Any:
    yield from serving()


def active(v2: V2, data: bytes = DATA, **extra: Any) -> dict:
    image = v2.create(name="src", disk_format="raw", container_format="bare", **extra)
    assert v2.upload(image["id"], data).status_int == 204
    return image


def create_task(v2: V2, kind: str, **task_input: Any) -> Any:
    return v2.call("POST", "/tasks", {"type": kind, "input": task_input}, **ADMIN)


# -- export --------------------------------------------------------------------
def test_export_writes_the_image_to_the_target(v2: V2, target: Target) -> None:
    image = active(v2)
    url = target.url + "/container/obj?temp_url_sig=secret&temp_url_expires=1"
    res = create_task(v2, "export", image_id=image["id"], export_to=url)
    assert res.status_int == 201, res.text
    task = _finish(v2, res.json["id"])
    assert task["status"] == "success", task["message"]
    assert task["result"] == {"image_id": image["id"], "size": len(DATA),
                              "checksum": MD5, "etag": MD5, "verified": "etag",
                              "export_to": "http://127.0.0.1/container/obj"}
    assert target.objects == {"/container/obj?temp_url_sig=secret&temp_url_expires=1":
                              DATA}


def test_export_failures_leave_nothing_at_the_target(v2: V2, target: Target) -> None:
    image = active(v2)
    target.status = 403
    task = _finish(v2, create_task(v2, "export", image_id=image["id"],
                                   export_to=target.url + "/o").json["id"])
    assert task["status"] == "failure" and "answered 403" in task["message"]
    target.status, target.answer_etag = 201, "0" * 32
    task = _finish(v2, create_task(v2, "export", image_id=image["id"],
                                   export_to=target.url + "/o").json["id"])
    assert task["status"] == "failure" and "reports ETag" in task["message"]


def test_export_refusals_at_create(v2: V2, v2_with: Callable[..., V2],
                                   target: Target) -> None:
    image = active(v2)
    queued = v2.create(name="q", disk_format="raw", container_format="bare")
    cases = [
        ({"image_id": image["id"]}, 400, "'export_to'"),
        ({"image_id": image["id"], "export_to": target.url, "x": 1}, 400, "unknown"),
        ({"image_id": image["id"], "export_to": "file:///tmp/x"}, 400, "http or https"),
        ({"image_id": queued["id"], "export_to": target.url}, 409, "queued"),
        ({"image_id": "0" * 8, "export_to": target.url}, 404, "No image"),
    ]
    for task_input, status, text in cases:
        res = create_task(v2, "export", **task_input)
        assert res.status_int == status and text in res.text, (task_input, res.text)
    # Internal hosts are refused unless the operator allowed them.
    strict = v2_with({"import_filtering_opts.allowed_hosts": []})
    other = active(strict)
    res = create_task(strict, "export", image_id=other["id"], export_to=target.url)
    assert res.status_int == 400 and "External sources are not supported" in res.text
    # Refused: no task was made.
    assert v2.call("GET", "/tasks?type=export", **ADMIN).json["tasks"] == []
    assert target.objects == {}


# -- clone ---------------------------------------------------------------------
@pytest.fixture
def regions(tmp_path: pathlib.Path) -> tuple[V2, Stack]:
    """Here (the t1 project's images) and east, a second deployment."""
    for name in ("east", "here"):
        (tmp_path / name).mkdir()
    east = make_stack(tmp_path / "east")
    here = make_stack(tmp_path / "here", {"enabled_regions": ["east"],
                                 "region_east.api_url": "http://east.example",
                                 "region_east.auth": "identity_headers"})
    here.v2.task_types["clone"].remote_factory = (
        lambda region, context: RemoteGlance(region, context, session_for(east.api)))
    return V2(here), east


def east_images(east: Stack) -> list[dict]:
    return V2(east).call("GET", "/images", **ADMIN).json["images"]


def test_clone_copies_image_metadata_and_members(regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here, visibility="shared", os_distro="debian", tags=["a", "b"],
                   min_ram=64)
    assert here.call("POST", "/images/%s/members" % image["id"],
                     {"member": "t2"}).status_int == 200
    here.patch(image["id"], [{"op": "replace", "path": "/protected", "value": True}])
    res = create_task(here, "clone", image_id=image["id"], region="east")
    assert res.status_int == 201, res.text
    task = _finish(here, res.json["id"])
    assert task["status"] == "success", task["message"]
    clone_id = task["result"]["image_id"]
    assert task["result"] == {"image_id": clone_id, "region": "east"}
    remote = V2(east)
    clone = remote.call("GET", "/images/" + clone_id).json
    assert clone["owner"] == "t1" and clone["status"] == "active"
    assert clone["checksum"] == MD5 and clone["os_distro"] == "debian"
    assert sorted(clone["tags"]) == ["a", "b"] and clone["min_ram"] == 64
    assert clone["protected"] is True and clone["cloned_from_image"] == image["id"]
    assert remote.call("GET", "/images/%s/file" % clone_id).body == DATA
    members = remote.call("GET", "/images/%s/members" % clone_id).json["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [("t2", "pending")]
    # Again, after a change here: the same clone, updated, no second copy.
    here.patch(image["id"], [{"op": "add", "path": "/os_distro", "value": "ubuntu"}])
    task = _finish(here, create_task(here, "clone", image_id=image["id"],
                                     region="east").json["id"])
    assert task["status"] == "success" and task["result"]["image_id"] == clone_id
    assert [i["id"] for i in east_images(east)] == [clone_id]
    assert remote.call("GET", "/images/" + clone_id).json["os_distro"] == "ubuntu"


def test_clone_refusals_at_create(regions: tuple[V2, Stack]) -> None:
    here, _east = regions
    image = active(here)
    queued = here.create(name="q", disk_format="raw", container_format="bare")
    for task_input, status, text in [
            ({"image_id": image["id"], "region": "west"}, 400, "Unknown region"),
            ({"image_id": image["id"]}, 400, "'region'"),
            ({"image_id": queued["id"], "region": "east"}, 409, "queued")]:
        res = create_task(here, "clone", **task_input)
        assert res.status_int == status and text in res.text, (task_input, res.text)


def test_a_failed_clone_leaves_nothing_in_the_region(regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here)
    # The region refuses the data (its size cap): the clone it made goes.
    east.conf.set_override("image_size_cap", 10)
    task = _finish(here, create_task(here, "clone", image_id=image["id"],
                                     region="east").json["id"])
    assert task["status"] == "failure" and "Region east answered 413" in task["message"]
    assert east_images(east) == []
    # An active image there claiming to be the clone, with other data, is
    # refused and kept.
    east.conf.clear_override("image_size_cap")
    remote = V2(east)
    other = remote.create(name="other", disk_format="raw", container_format="bare",
                          cloned_from_image=image["id"])
    assert remote.upload(other["id"], b"other data").status_int == 204
    task = _finish(here, create_task(here, "clone", image_id=image["id"],
                                     region="east").json["id"])
    assert task["status"] == "failure" and "holds other data" in task["message"]
    assert [i["id"] for i in east_images(east)] == [other["id"]]
    # An unfinished clone (left queued by a node that died) is filled.
    remote.call("DELETE", "/images/" + other["id"])
    unfinished = remote.create(name="src", disk_format="raw", container_format="bare",
                               cloned_from_image=image["id"])
    task = _finish(here, create_task(here, "clone", image_id=image["id"],
                                     region="east").json["id"])
    assert task["status"] == "success" and task["result"]["image_id"] == unfinished["id"]


# -- clone: a node dying mid-clone -------------------------------------------
def held_clone(here: V2, image_id: str) -> dict:
    """A clone task accepted and claimed by a node that then dies."""
    held: list = []
    clone = here.stack.v2.task_types["clone"]
    clone.runner.spawn = lambda run, context, task: held.append(task)
    assert create_task(here, "clone", image_id=image_id, region="east").status_int == 201
    return here.stack.v2.task_repository.move(admin_context(), held[0], "processing")


def made_by(here: V2, task: dict, image_id: str) -> dict:
    """The clone the dying node made in the region, as the task makes it."""
    clone = here.stack.v2.task_types["clone"]
    context = RequestContext(user="u1", tenant="t1", roles=("reader", "member"))
    remote = clone.remote_factory(clone.regions.get("east"), context)
    record = here.stack.v2.catalog.get(context, image_id).record
    made: dict = remote.create_image(clone._create_body(context, record, task["id"]))
    return made


def cloned_again(here: V2, image_id: str) -> dict:
    """A clone task run to success on a live node."""
    here.stack.v2.task_types["clone"].runner.spawn = eventlet.spawn_n
    task = _finish(here, create_task(here, "clone", image_id=image_id,
                                     region="east").json["id"])
    assert task["status"] == "success", task
    return task


def test_the_reaper_deletes_the_clone_its_dead_task_left(regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here)
    task = held_clone(here, image["id"])
    made_by(here, task, image["id"])
    # A clone of the same image another task fills is not this task's.
    other = held_clone(here, image["id"])
    kept = made_by(here, other, image["id"])
    assert len(east_images(east)) == 2
    _age(here, task["id"])
    assert here.stack.v2.task_reaper.reap() == 1
    failed = here.call("GET", "/tasks/" + task["id"], **ADMIN).json
    assert failed["status"] == "failure" and "interrupted" in failed["message"]
    assert [i["id"] for i in east_images(east)] == [kept["id"]]


def test_a_retry_takes_over_the_clone_of_a_dead_task(regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here)
    dead = held_clone(here, image["id"])
    unfinished = made_by(here, dead, image["id"])
    assert cloned_again(here, image["id"])["result"]["image_id"] == unfinished["id"]
    clone = V2(east).call("GET", "/images/" + unfinished["id"]).json
    assert clone["status"] == "active" and "cloned_by_task" not in clone
    # The reaper failing the dead task leaves the finished clone alone.
    _age(here, dead["id"])
    assert here.stack.v2.task_reaper.reap() == 1
    assert [i["id"] for i in east_images(east)] == [unfinished["id"]]


def test_a_clone_stuck_in_saving_is_made_again(regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here)
    dead = held_clone(here, image["id"])
    stuck = made_by(here, dead, image["id"])
    east.v2.registry.update_image(ROOT, stuck["id"], {"status": "saving"})
    task = cloned_again(here, image["id"])
    [clone] = east_images(east)
    assert clone["id"] == task["result"]["image_id"] != stuck["id"]
    assert clone["status"] == "active" and clone["checksum"] == MD5


def test_the_reaper_asks_a_token_region_with_the_admin_token(
        regions: tuple[V2, Stack]) -> None:
    here, east = regions
    image = active(here)
    first, second = held_clone(here, image["id"]), held_clone(here, image["id"])
    for task in (first, second):
        made_by(here, task, image["id"])
    clone = here.stack.v2.task_types["clone"]
    seen: list = []
    identity_factory = clone.remote_factory

    def remote_factory(region: Any, context: RequestContext) -> Any:
        seen.append((region.auth, context.auth_token))
        return identity_factory(region, context)

    clone.remote_factory = remote_factory
    regions_known = clone.regions._regions
    regions_known["east"] = dataclasses.replace(regions_known["east"], auth="token")
    # Without admin credentials the region is not asked: the clone waits
    # for the next clone of the image to take it over.
    _age(here, first["id"])
    assert here.stack.v2.task_reaper.reap() == 1
    assert seen == [] and len(east_images(east)) == 2
    clone.admin_token = lambda: "admin-token"
    _age(here, second["id"])
    assert here.stack.v2.task_reaper.reap() == 1
    assert seen == [("token", "admin-token")]
