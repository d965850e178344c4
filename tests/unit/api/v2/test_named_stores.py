"""Named stores (enabled_backends) as v2 shows them."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable
from typing import Any

import eventlet
import pytest

from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.context import admin_context

from .conftest import ADMIN, V2
from .test_tasks import _finish


def named_stores(v2_with: Callable[..., V2], tmp_path: pathlib.Path, **extra) -> V2:
    """An api with the file stores fast (the default) and cheap, and web (http)."""
    return v2_with({
        "enabled_backends": {"fast": "file", "cheap": "file", "web": "http"},
        "glance_store.default_backend": "fast",
        "fast.filesystem_store_datadir": str(tmp_path / "fast"),
        "fast.store_description": "Local SSD",
        "cheap.filesystem_store_datadir": str(tmp_path / "cheap"),
        **extra})


def test_info_stores_lists_the_named_stores(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    assert v2.call("GET", "/info/stores").json == {"stores": [
        {"id": "fast", "description": "Local SSD", "default": "true"},
        {"id": "cheap"}, {"id": "web", "read-only": "true"}]}
    res = v2.call("GET", "/info/stores", raw=b'{"x": 1}', content_type="application/json")
    assert res.status_int == 400 and "A body is not expected" in res.text


def test_uploads_go_to_the_default_store_and_say_so(v2_with,
                                                    tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    res = v2.call("POST", "/images", {"name": "i", "disk_format": "raw",
                                      "container_format": "bare"})
    assert res.headers["OpenStack-image-store-ids"] == "fast,cheap"
    image = res.json
    assert "stores" not in image
    assert v2.upload(image["id"], b"data").status_int == 204
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["stores"] == "fast"
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == [image["id"]]
    # Read-only: a client cannot claim stores.
    res = v2.call("POST", "/images", {"name": "x", "stores": "cheap"})
    assert res.status_int == 403


def copy(v2: V2, image_id: str, **body) -> Any:
    return v2.call("POST", "/images/%s/import" % image_id,
                   dict({"method": {"name": "copy-image"}}, **body), **ADMIN)


def wait_copied(v2: V2, image_id: str) -> dict:
    for _ in range(500):
        shown = v2.call("GET", "/images/" + image_id).json
        if "os_glance_import_task" not in shown:
            return shown
        eventlet.sleep(0.01)
    raise AssertionError("the copy of %s never ended" % image_id)


def uploaded(v2: V2, data: bytes = b"data" * 1000) -> dict:
    image = v2.create(name="i", disk_format="raw", container_format="bare")
    assert v2.upload(image["id"], data).status_int == 204
    return image


def test_copy_image_to_another_store(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    assert "copy-image" in v2.call("GET", "/info/import").json[
        "import-methods"]["value"]
    image = uploaded(v2)
    res = copy(v2, image["id"], stores=["cheap"])
    assert res.status_int == 202, res.text
    shown = wait_copied(v2, image["id"])
    assert shown["stores"] == "fast,cheap" and shown["status"] == "active"
    assert "os_glance_importing_to_stores" not in shown
    assert "os_glance_failed_import" not in shown
    assert sorted(p.name for p in (tmp_path / "cheap").iterdir()) == [image["id"]]
    task = _finish(v2, v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]["id"])
    assert task["status"] == "success" and task["result"] == {"image_id": image["id"]}
    # Nothing left to copy with all_stores: 202 and no task.
    assert copy(v2, image["id"], all_stores=True).status_int == 202
    assert len(v2.call("GET", "/tasks", **ADMIN).json["tasks"]) == 1
    # Deleting the image removes every copy.
    assert v2.call("DELETE", "/images/" + image["id"]).status_int == 204
    assert list((tmp_path / "cheap").iterdir()) == []
    assert list((tmp_path / "fast").iterdir()) == []


def test_copy_image_refusals(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = uploaded(v2)
    # Admin-only by default, also for the owner.
    assert v2.call("POST", "/images/%s/import" % image["id"],
                   {"method": {"name": "copy-image"}, "stores": ["cheap"]}
                   ).status_int == 403
    assert copy(v2, image["id"], stores=["fast"]).status_int == 400
    assert copy(v2, image["id"], stores=["tape"]).status_int == 409
    assert copy(v2, image["id"], stores=["web"]).status_int == 409
    assert copy(v2, image["id"], stores=["cheap"], all_stores=True).status_int == 400
    queued = v2.create(name="q", disk_format="raw", container_format="bare")
    assert copy(v2, queued["id"], stores=["cheap"]).status_int == 409
    assert v2.call("GET", "/tasks", **ADMIN).json["tasks"] == []


def test_failed_copy_is_recorded_and_taken_back(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = uploaded(v2)
    # The data in the default store no longer matches: every copy fails.
    path = tmp_path / "fast" / image["id"]
    path.write_bytes(b"x" * path.stat().st_size)
    assert copy(v2, image["id"], stores=["cheap"]).status_int == 202
    shown = wait_copied(v2, image["id"])
    assert shown["os_glance_failed_import"] == "cheap" and shown["stores"] == "fast"
    assert list((tmp_path / "cheap").iterdir()) == []
    task = _finish(v2, v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]["id"])
    assert task["status"] == "failure" and "checksum" in task["message"]


@pytest.mark.parametrize("must_succeed", [True, False])
def test_one_store_failing_among_several(v2_with, tmp_path: pathlib.Path,
                                         must_succeed: bool) -> None:
    v2 = v2_with({
        "enabled_backends": {"fast": "file", "cheap": "file", "third": "file"},
        "glance_store.default_backend": "fast",
        **{"%s.filesystem_store_datadir" % name: str(tmp_path / name)
           for name in ("fast", "cheap", "third")}})
    image = uploaded(v2)
    # "third" already has a file under this id (not the image's): refused.
    (tmp_path / "third" / image["id"]).write_bytes(b"someone else's")
    assert copy(v2, image["id"], all_stores=True,
                all_stores_must_succeed=must_succeed).status_int == 202
    shown = wait_copied(v2, image["id"])
    task = _finish(v2, v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]["id"])
    assert shown["os_glance_failed_import"] == "third"
    assert (tmp_path / "third" / image["id"]).read_bytes() == b"someone else's"
    if must_succeed:
        # The copy to cheap is taken back.
        assert task["status"] == "failure" and shown["stores"] == "fast"
        assert list((tmp_path / "cheap").iterdir()) == []
    else:
        assert task["status"] == "success" and shown["stores"] == "fast,cheap"
        assert task["result"] == {"image_id": image["id"]}


def test_copy_progress_on_the_image_while_it_runs(v2_with, tmp_path: pathlib.Path) -> None:
    from glance_clone.domain.task_lease import Lease

    v2 = v2_with({
        "enabled_backends": {"fast": "file", "cheap": "file", "third": "file"},
        "glance_store.default_backend": "fast",
        **{"%s.filesystem_store_datadir" % name: str(tmp_path / name)
           for name in ("fast", "cheap", "third")}})
    data = b"d" * (CHUNK_SIZE * 2 + 100)   # 3 chunks from the file store
    image = uploaded(v2, data)
    copies = v2.stack.v2.importer.copies
    # Each look at the clock is an interval later: progress after every chunk.
    ticks = iter(range(0, 10_000, 100))
    copies.runner.lease_factory = functools.partial(Lease, clock=lambda: next(ticks))
    seen: list[tuple[str, str]] = []
    lock = copies.lock
    show = lock.show_progress

    def recorded(*args: Any) -> None:
        show(*args)
        props = v2.call("GET", "/images/" + image["id"]).json
        seen.append((props["os_glance_import_copied"], props["os_glance_import_size"]))

    lock.show_progress = recorded
    assert copy(v2, image["id"], stores=["cheap", "third"]).status_int == 202
    shown = wait_copied(v2, image["id"])
    assert set(shown["stores"].split(",")) == {"fast", "cheap", "third"}
    total = str(2 * len(data))
    assert len(seen) == 6 and {size for _done, size in seen} == {total}
    copied = [int(done) for done, _size in seen]
    assert copied == sorted(copied) and copied[-1] == 2 * len(data)
    # Done: the progress goes with the lock.
    assert "os_glance_import_copied" not in shown and "os_glance_import_size" not in shown
    task = _finish(v2, v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]["id"])
    assert task["status"] == "success"


def test_a_copy_whose_node_died_is_undone(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    copies = v2.stack.v2.importer.copies
    copies.spawn = lambda *args: None  # the node dies before the copy runs
    image = uploaded(v2)
    assert copy(v2, image["id"], stores=["cheap"]).status_int == 202
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["os_glance_importing_to_stores"] == "cheap"
    # A second copy waits for the first.
    assert copy(v2, image["id"], stores=["cheap"]).status_int == 409
    partial = tmp_path / "cheap" / (".%s.0123.partial" % image["id"])
    partial.write_bytes(b"half")
    task = v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]
    task = v2.call("GET", "/tasks/" + task["id"], **ADMIN).json
    reaper = v2.stack.v2.task_reaper
    reaper.reverters["api_image_import"](admin_context(), task, "stalled")
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert "os_glance_import_task" not in shown and shown["status"] == "active"
    assert shown["os_glance_failed_import"] == "cheap"
    assert list((tmp_path / "cheap").iterdir()) == []


def test_no_store_ids_without_named_stores(v2: V2) -> None:
    res = v2.call("POST", "/images", {"name": "i"})
    assert res.status_int == 201 and "OpenStack-image-store-ids" not in res.headers
