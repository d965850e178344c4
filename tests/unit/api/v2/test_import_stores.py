"""Imports into chosen stores: stores, all_stores, X-Image-Meta-Store and
all_stores_must_succeed, the same for every import method."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.common.context import admin_context

from .conftest import ADMIN, V2
from .test_import import DATA, new_image, stage, staged_files, wait_status
from .test_named_stores import named_stores, wait_copied
from .test_tasks import DATA as SOURCE_DATA
from .test_tasks import (
    _finish,
    source,  # noqa: F401 (the local HTTP server fixture)
)


def files(tmp_path: pathlib.Path, store: str) -> list[str]:
    directory = tmp_path / store
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def start(v2: V2, image_id: str, method: dict, header: str | None = None,
          **body: Any) -> Any:
    return v2.call("POST", "/images/%s/import" % image_id, dict(body, method=method),
                   headers={"X-Image-Meta-Store": header} if header else None)


def staged(v2: V2) -> dict:
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    return image


def last_task(v2: V2) -> dict:
    return _finish(v2, v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]["id"])


DIRECT = {"name": "glance-direct"}


def test_glance_direct_into_named_stores(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = staged(v2)
    assert start(v2, image["id"], DIRECT, stores=["cheap"]).status_int == 202
    shown = wait_copied(v2, image["id"])
    assert shown["status"] == "active" and shown["stores"] == "cheap"
    assert files(tmp_path, "cheap") == [image["id"]] and files(tmp_path, "fast") == []
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA
    # Into every store that takes data (the http store does not).
    image = staged(v2)
    assert start(v2, image["id"], DIRECT, all_stores=True).status_int == 202
    shown = wait_copied(v2, image["id"])
    assert shown["status"] == "active" and shown["stores"] == "fast,cheap"
    assert shown["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert "os_glance_failed_import" not in shown
    assert staged_files(v2) == []
    assert last_task(v2)["status"] == "success"
    # The header picks the store when the body does not.
    image = staged(v2)
    assert start(v2, image["id"], DIRECT, header="cheap").status_int == 202
    assert wait_copied(v2, image["id"])["stores"] == "cheap"


def test_web_download_into_every_store(v2_with, tmp_path: pathlib.Path,
                                       source: str) -> None:  # noqa: F811
    v2 = named_stores(v2_with, tmp_path)
    image = new_image(v2)
    res = start(v2, image["id"], {"name": "web-download", "uri": source + "/image"},
                all_stores=True)
    assert res.status_int == 202, res.text
    shown = wait_copied(v2, image["id"])
    assert shown["status"] == "active" and shown["stores"] == "fast,cheap"
    for store in ("fast", "cheap"):
        assert (tmp_path / store / image["id"]).read_bytes() == SOURCE_DATA
    # Staged once for both stores, then removed.
    assert staged_files(v2) == []


@pytest.mark.parametrize("body,header,status,message", [
    ({"all_stores": "true"}, None, 400, "'all_stores' must be true or false"),
    ({"all_stores_must_succeed": None}, None, 400, "must be true or false"),
    ({"all_stores": True, "stores": ["cheap"]}, None, 400, "cannot be given"),
    ({"all_stores": True}, "cheap", 400, "cannot be given"),
    ({"stores": ["cheap"]}, "cheap", 400, "cannot be given with the"),
    ({"stores": ["tape"]}, None, 409, "Unknown store"),
    ({}, "tape", 409, "Unknown store"),
    ({"stores": ["web"]}, None, 409, "read-only"),
    ({"stores": "cheap"}, None, 400, "must be a list"),
])
def test_store_refusals(v2_with, tmp_path: pathlib.Path, body: dict,
                        header: str | None, status: int, message: str) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = staged(v2)
    res = start(v2, image["id"], DIRECT, header, **body)
    assert res.status_int == status and message in res.text, res.text
    # Nothing started: still staged, no task.
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "uploading"
    assert v2.call("GET", "/tasks", **ADMIN).json["tasks"] == []


def test_flags_are_checked_before_the_image(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    res = start(v2, "0" * 8 + "-0000-0000-0000-" + "0" * 12, DIRECT, all_stores=1)
    assert res.status_int == 400


def test_without_named_stores(v2: V2) -> None:
    """Stores, all_stores and the header are ignored; a store allowed to
    fail means nothing there: 400."""
    image = staged(v2)
    res = start(v2, image["id"], DIRECT, all_stores_must_succeed=False)
    assert res.status_int == 400 and "enabled_backends" in res.text
    res = start(v2, image["id"], DIRECT, "nowhere", stores=["tape"], all_stores=False)
    assert res.status_int == 202, res.text
    shown = wait_status(v2, image["id"], "active")
    assert shown["size"] == len(DATA)


def three_stores(v2_with, tmp_path: pathlib.Path) -> V2:
    return v2_with({
        "enabled_backends": {"fast": "file", "cheap": "file", "third": "file"},
        "glance_store.default_backend": "fast",
        **{"%s.filesystem_store_datadir" % name: str(tmp_path / name)
           for name in ("fast", "cheap", "third")}})


def broken(v2: V2, store: str) -> None:
    """Every write to ``store`` fails (as a full disk would)."""
    def add(*args: Any, **kwargs: Any) -> Any:
        raise exception.StorageFull("No space left on device")
    v2.stack.v2.stores.stores[store].driver.add = add


def test_a_failing_store_undoes_the_import(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = three_stores(v2_with, tmp_path)
    image = staged(v2)
    broken(v2, "third")
    assert start(v2, image["id"], DIRECT, all_stores=True).status_int == 202
    task = last_task(v2)
    assert task["status"] == "failure"
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert "stores" not in shown and "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == "cheap,fast,third"
    for store in ("fast", "cheap", "third"):
        assert files(tmp_path, store) == []
    assert staged_files(v2) == []


def test_a_failing_store_tolerated(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = three_stores(v2_with, tmp_path)
    image = staged(v2)
    # The first store fails: the image turns active with the second.
    broken(v2, "fast")
    assert start(v2, image["id"], DIRECT, all_stores=True,
                 all_stores_must_succeed=False).status_int == 202
    task = last_task(v2)
    assert task["status"] == "success" and task["result"] == {"image_id": image["id"]}
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "active" and shown["stores"] == "cheap,third"
    assert shown["os_glance_failed_import"] == "fast"
    assert "os_glance_importing_to_stores" not in shown
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA
    # A store's failure listed, a later import into it clears that.
    del v2.stack.v2.stores.stores["fast"].driver.add
    res = v2.call("POST", "/images/%s/import" % image["id"],
                  {"method": {"name": "copy-image"}, "stores": ["fast"]}, **ADMIN)
    assert res.status_int == 202
    shown = wait_copied(v2, image["id"])
    assert shown["stores"] == "cheap,third,fast"
    assert "os_glance_failed_import" not in shown


def test_no_store_taking_the_data_fails(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = staged(v2)
    for store in ("fast", "cheap"):
        broken(v2, store)
    assert start(v2, image["id"], DIRECT, all_stores=True,
                 all_stores_must_succeed=False).status_int == 202
    task = last_task(v2)
    assert task["status"] == "failure" and "None of the stores" in task["message"]
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued"
    assert shown["os_glance_failed_import"] == "cheap,fast"


def test_an_import_whose_node_died_between_stores(v2_with,
                                                  tmp_path: pathlib.Path) -> None:
    """The first store written, then the node died: the reaper's revert
    removes that data too."""
    v2 = named_stores(v2_with, tmp_path)
    importer = v2.stack.v2.importer
    importer.spawn = lambda *args: None
    image = staged(v2)
    assert start(v2, image["id"], DIRECT, all_stores=True).status_int == 202
    task = v2.call("GET", "/tasks", **ADMIN).json["tasks"][0]
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["os_glance_importing_to_stores"] == "cheap,fast"
    # What the dead node did: the first store written and recorded.
    runner = importer.runner
    record = runner.uploader.writes.read(admin_context(), image["id"])
    runner._write(admin_context(), record, iter([DATA]), len(DATA), "fast", False)
    (tmp_path / "cheap").mkdir(exist_ok=True)
    (tmp_path / "cheap" / (".%s.0123.partial" % image["id"])).write_bytes(b"half")
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "importing"
    task = v2.call("GET", "/tasks/" + task["id"], **ADMIN).json
    v2.stack.v2.task_reaper.reverters["api_image_import"](admin_context(), task,
                                                          "stalled")
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == "cheap,fast"
    assert files(tmp_path, "fast") == [] and files(tmp_path, "cheap") == []
