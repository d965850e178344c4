"""Disk-format inspection on the import paths, as on uploads: unsafe or
mismatched data is refused when staged (415) or fails the web-download
task with the reason; the image is queued again and nothing is left."""

from __future__ import annotations

from pathlib import Path

from tests.support import disk_images
from tests.support.file_server import served  # noqa: F401 (fixture)

from .conftest import V2
from .test_import import do_import, stage, staged_files, wait_status
from .test_import_reliability import _tasks_of
from .test_named_stores import named_stores
from .test_resumable_staging import piece


def _image(v2: V2, disk_format: str) -> dict:
    return v2.create(name="i", disk_format=disk_format, container_format="bare")


def test_staging_refuses_unsafe_or_mismatched_data(v2: V2, tmp_path: Path) -> None:
    unsafe = disk_images.qcow2_with_backing_file(tmp_path)
    for disk_format, data in (("qcow2", unsafe), ("raw", unsafe),
                              ("vmdk", disk_images.qcow2(tmp_path))):
        image = _image(v2, disk_format)
        res = stage(v2, image["id"], data)
        assert res.status_int == 415, (disk_format, res.text)
        assert "Image data refused" in res.text
        shown = v2.call("GET", "/images/" + image["id"]).json
        assert shown["status"] == "queued" and shown["size"] is None
    assert staged_files(v2) == []
    # In pieces: judged on all the data, the staged bytes included.
    image = _image(v2, "vmdk")
    data = disk_images.qcow2(tmp_path)
    assert piece(v2, image["id"], 0, data[:100], total=len(data)).status_int == 204
    assert piece(v2, image["id"], 100, data[100:], total=len(data)).status_int == 415
    assert staged_files(v2) == []
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "queued"
    good = _image(v2, "qcow2")
    assert stage(v2, good["id"], data).status_int == 204


def test_a_web_download_of_unsafe_data_fails_its_task(v2: V2, served, tmp_path) -> None:  # noqa: F811
    folder, url = served
    (folder / "unsafe.qcow2").write_bytes(disk_images.qcow2_with_backing_file(tmp_path))
    image = _image(v2, "qcow2")
    assert do_import(v2, image["id"], "web-download", url + "/unsafe.qcow2").status_int == 202
    shown = wait_status(v2, image["id"], "queued")
    assert shown["os_glance_failed_import"] == "file" and shown["size"] is None
    [task] = _tasks_of(v2, image["id"])
    assert task["status"] == "failure" and "safety" in task["message"], task
    assert v2.stack.stored_files() == [] and staged_files(v2) == []


def test_an_import_into_several_stores_inspects_each_write(v2_with, served,  # noqa: F811
                                                           tmp_path: Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    folder, url = served
    (folder / "unsafe.qcow2").write_bytes(disk_images.qcow2_with_backing_file(tmp_path))
    image = _image(v2, "qcow2")
    res = v2.call("POST", "/images/%s/import" % image["id"], {
        "method": {"name": "web-download", "uri": url + "/unsafe.qcow2"},
        "all_stores": True, "all_stores_must_succeed": False})
    assert res.status_int == 202, res.text
    shown = wait_status(v2, image["id"], "queued")
    assert shown["os_glance_failed_import"] == "cheap,fast" and shown["size"] is None
    [task] = _tasks_of(v2, image["id"])
    assert task["status"] == "failure", task
    for store in ("fast", "cheap"):
        directory = tmp_path / store
        assert not directory.is_dir() or list(directory.iterdir()) == []
    assert staged_files(v2) == []
