"""glance-download: a queued image filled from an image of another region
(a second in-process deployment)."""

from __future__ import annotations

import gzip
import hashlib
import pathlib
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain.remote_glance import RemoteGlance
from tests.support.stack import Stack, make_stack
from tests.support.wsgi_adapter import session_for

from .conftest import V2
from .test_import import staged_files, wait_status
from .test_import_plugins import finished, plugins

DATA = b"remote-bytes" * 20_000


@pytest.fixture
def regions(tmp_path: pathlib.Path) -> tuple[V2, V2]:
    for name in ("east", "here"):
        (tmp_path / name).mkdir()
    east = make_stack(tmp_path / "east")
    here = make_stack(tmp_path / "here", {
        "enabled_import_methods": ["glance-direct", "glance-download"],
        "enabled_regions": ["east"],
        "region_east.api_url": "http://east.example",
        "region_east.auth": "identity_headers"})
    here.v2.importer.downloads.remote_factory = (
        lambda region, context: RemoteGlance(region, context, session_for(east.api)))
    return V2(here), V2(east)


def remote_image(east: V2, data: bytes = DATA, **extra: Any) -> dict:
    image = east.create(name="r", disk_format="raw", container_format="bare",
                        os_distro="debian", hw_disk_bus="scsi", other="x", **extra)
    if data:
        assert east.upload(image["id"], data).status_int == 204
    return image


def download(here: V2, image_id: str, region: Any = "east", remote_id: Any = None,
             **kw: Any) -> Any:
    return here.call("POST", "/images/%s/import" % image_id, {"method": {
        "name": "glance-download", "glance_region": region,
        "glance_image_id": remote_id}}, **kw)


def queued(here: V2) -> dict:
    return here.create(name="local", disk_format="qcow2", container_format="ovf")


def stored(stack: Stack) -> list[str]:
    return stack.stored_files() if pathlib.Path(stack.datadir).exists() else []


def test_glance_download_copies_metadata_and_data(regions: tuple[V2, V2]) -> None:
    here, east = regions
    remote = remote_image(east, b"\0" * 100_000)
    image = queued(here)
    res = download(here, image["id"], remote_id=remote["id"])
    assert res.status_int == 202, res.text
    shown = wait_status(here, image["id"], "active")
    assert (shown["disk_format"], shown["container_format"]) == ("raw", "bare")
    assert shown["os_distro"] == "debian"
    assert shown["hw_disk_bus"] == "scsi" and "other" not in shown
    assert shown["checksum"] == hashlib.md5(b"\0" * 100_000,
                                            usedforsecurity=False).hexdigest()
    assert here.call("GET", "/images/%s/file" % image["id"]).body == b"\0" * 100_000


def test_glance_download_refusals(regions: tuple[V2, V2]) -> None:
    here, east = regions
    remote = remote_image(east)
    image = queued(here)
    for region, remote_id, status, text in [
            ("west", remote["id"], 400, "Unknown region"),
            ("east", "not-a-uuid", 400, "glance_image_id"),
            ("east", "00000000-0000-0000-0000-000000000000", 404, "has no image"),
            ("east", remote_image(east, b"")["id"], 409, "not active")]:
        res = download(here, image["id"], region, remote_id)
        assert res.status_int == status and text in res.text, res.text
    # The region answers as the caller: another project's image is not there.
    other = east.create(name="o", disk_format="raw", container_format="bare",
                        visibility="private", caller={"tenant": "t2"})
    res = download(here, image["id"], remote_id=other["id"])
    assert res.status_int == 404
    assert here.call("GET", "/images/" + image["id"]).json["status"] == "queued"


def test_data_that_does_not_match_the_region_is_not_kept(regions: tuple[V2, V2]) -> None:
    here, east = regions
    remote = remote_image(east, DATA)
    path = pathlib.Path(east.stack.datadir) / remote["id"]
    path.write_bytes(b"y" * len(DATA))
    image = here.create(name="local", disk_format="qcow2", container_format="ovf",
                        os_distro="mine")
    assert download(here, image["id"], remote_id=remote["id"]).status_int == 202
    shown = wait_status(here, image["id"], "queued")
    assert shown["os_glance_failed_import"]
    assert stored(here.stack) == []
    # The image's own metadata is back: formats, a property it had, none
    # of the ones the region's image added.
    assert (shown["disk_format"], shown["container_format"]) == ("qcow2", "ovf")
    assert shown["os_distro"] == "mine" and "hw_disk_bus" not in shown


ROOT = RequestContext(user="root", tenant="admin-t", roles=("admin",), is_admin=True)


def remote_with(east: V2, data: bytes, algorithm: str, value: str) -> dict:
    """A remote image whose multihash the region records as given."""
    image = remote_image(east, data)
    east.stack.v2.registry.update_image(ROOT, image["id"], {"os_hash_algo": algorithm,
                                                            "os_hash_value": value})
    return image


def fetched(here: V2, remote: dict) -> tuple[dict, dict]:
    """A queued image glance-downloaded from ``remote``: it and its finished task."""
    image = queued(here)
    assert download(here, image["id"], remote_id=remote["id"]).status_int == 202
    return image, finished(here, image["id"])


def test_data_whose_multihash_does_not_match_is_not_kept(regions: tuple[V2, V2]) -> None:
    """The MD5 matches; the multihash the region records does not."""
    here, east = regions
    image, task = fetched(here, remote_with(east, DATA, "sha512", "0" * 128))
    assert task["status"] == "failure", task
    assert ("does not match its image (sha512 %s, expected %s)"
            % (hashlib.sha512(DATA).hexdigest(), "0" * 128)) in task["message"]
    shown = wait_status(here, image["id"], "queued")
    assert shown["os_glance_failed_import"] and shown["size"] is None
    assert stored(here.stack) == [] and staged_files(here) == []


def test_the_multihash_of_another_algorithm_is_checked_too(regions: tuple[V2, V2]) -> None:
    here, east = regions
    good = remote_with(east, DATA, "sha256", hashlib.sha256(DATA).hexdigest())
    image, task = fetched(here, good)
    assert task["status"] == "success", task
    shown = here.call("GET", "/images/" + image["id"]).json
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    _image, task = fetched(here, remote_with(east, DATA, "sha256", "1" * 64))
    assert task["status"] == "failure" and "sha256" in task["message"], task
    # An algorithm we cannot compute: the MD5 is still checked.
    _image, task = fetched(here, remote_with(east, DATA, "blake9", "2" * 64))
    assert task["status"] == "success", task


def test_the_multihash_is_of_the_bytes_fetched_before_plugins(
        regions: tuple[V2, V2], tmp_path: pathlib.Path) -> None:
    """With image_decompression the region's hash is of the compressed
    bytes it serves; ours is of what the plugin made of them."""
    here, east = regions
    plugins(here, tmp_path, "[image_import_opts]\n"
                            "image_import_plugins = image_decompression\n")
    packed = gzip.compress(DATA)
    first, task = fetched(here, remote_with(east, packed, "sha512",
                                            hashlib.sha512(packed).hexdigest()))
    assert task["status"] == "success", task
    shown = here.call("GET", "/images/" + first["id"]).json
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert here.call("GET", "/images/%s/file" % first["id"]).body == DATA
    # A mismatch there leaves nothing staged either.
    image, task = fetched(here, remote_with(east, packed, "sha512", "3" * 128))
    assert task["status"] == "failure" and "sha512" in task["message"], task
    assert wait_status(here, image["id"], "queued")["size"] is None
    assert staged_files(here) == [] and stored(here.stack) == [first["id"]]


def test_an_import_that_does_not_start_keeps_the_images_metadata(
        regions: tuple[V2, V2], monkeypatch) -> None:
    here, east = regions
    remote = remote_image(east)
    image = here.create(name="local", disk_format="qcow2", container_format="ovf",
                        os_distro="mine")

    def refused(*args, **kwargs):
        raise exception.Conflict("taken meanwhile")

    monkeypatch.setattr(here.stack.v2.importer.lock, "take", refused)
    assert download(here, image["id"], remote_id=remote["id"]).status_int == 409
    shown = here.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued"
    assert (shown["disk_format"], shown["container_format"]) == ("qcow2", "ovf")
    assert shown["os_distro"] == "mine" and "hw_disk_bus" not in shown
