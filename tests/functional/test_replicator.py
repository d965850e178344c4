"""glance-replicator between two complete deployments (api + registry each).

Both glance-api servers run the default pipeline (every caller is an
admin), as a replicator with an admin token would see them; the 401 test
uses a trusted-auth api, which refuses callers without identity headers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from glance_clone.replicator import Endpoint
from tests.functional import harness
from tests.support import disk_images

RUN_TIMEOUT = 120
SMALL = b"small image " * 100                    # 1200 bytes
BIG = bytes(range(256)) * 1024                   # 256 KiB: several chunks


@pytest.fixture
def master(tmp_path: Path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(tmp_path / "master", api_flavor=None)


@pytest.fixture
def slave(tmp_path: Path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(tmp_path / "slave", api_flavor=None)


def address(dep: harness.Deployment) -> str:
    return "127.0.0.1:%d" % dep.api.port


def replicator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glance_clone.cmd.replicator", *args],
                          env=harness.server_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def upload(dep: harness.Deployment, data: bytes | None, name: str,
           **headers: str) -> dict:
    all_headers = {"x-image-meta-name": name, "x-image-meta-disk-format": "raw",
                   "x-image-meta-container-format": "bare"}
    if data is not None:
        all_headers["Content-Type"] = "application/octet-stream"
    all_headers.update(headers)
    response = requests.post(dep.url + "/v1/images", headers=all_headers, data=data,
                             timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["image"]


def head(dep: harness.Deployment, image_id: str) -> dict[str, str] | None:
    response = requests.head("%s/v1/images/%s" % (dep.url, image_id), timeout=10)
    if response.status_code == 404:
        return None
    assert response.status_code == 200
    return {k.lower(): v for k, v in response.headers.items()
            if k.lower().startswith("x-image-meta-")}


def data(dep: harness.Deployment, image_id: str) -> bytes:
    response = requests.get("%s/v1/images/%s" % (dep.url, image_id), timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def listed(dep: harness.Deployment) -> dict[str, dict]:
    response = requests.get(dep.url + "/v1/images/detail",
                            params={"is_public": "none"}, timeout=10)
    assert response.status_code == 200
    return {image["id"]: image for image in response.json()["images"]}


def populate(dep: harness.Deployment) -> tuple[dict, dict, dict]:
    small = upload(dep, SMALL, "small", **{"x-image-meta-is-public": "True",
                                           "x-image-meta-min-ram": "64",
                                           "x-image-meta-property-distro": "debian",
                                           "x-image-meta-property-kernel_id": "k-1"})
    big = upload(dep, BIG, "big", **{"x-image-meta-property-distro": "fedora"})
    queued = upload(dep, None, "queued-only")
    return small, big, queued


# --- size ----------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_size_counts_active_images(master: harness.Deployment) -> None:
    populate(master)

    result = replicator("size", address(master))

    assert result.returncode == 0, result.stderr
    assert ("Total size is %d bytes across 2 images" % (len(SMALL) + len(BIG))
            in result.stdout)


# --- livecopy and compare -----------------------------------------------------------

@pytest.mark.timeout(300)
def test_livecopy_compare_and_idempotent_rerun(master: harness.Deployment,
                                               slave: harness.Deployment) -> None:
    small, big, queued = populate(master)

    before = replicator("compare", address(master), address(slave))
    assert before.returncode == 0, before.stderr
    assert "Image %s entirely missing from the destination" % small["id"] in before.stderr
    assert "Image %s entirely missing from the destination" % big["id"] in before.stderr
    assert "0 identical, 0 differ, 2 missing" in before.stdout

    copy = replicator("livecopy", address(master), address(slave))

    assert copy.returncode == 0, copy.stderr
    assert "livecopy: 2 copied, 0 updated, 0 unchanged, 1 skipped, 0 failed" in copy.stdout
    assert "livecopy: [3/3]" in copy.stderr                 # progress: images done/total
    assert "moved so far" in copy.stderr                     # ... and bytes
    on_slave = listed(slave)
    assert set(on_slave) == {small["id"], big["id"]}
    assert data(slave, small["id"]) == SMALL
    assert data(slave, big["id"]) == BIG
    copied = on_slave[small["id"]]
    assert copied["checksum"] == hashlib.md5(SMALL).hexdigest()
    # The multihash the copy was checked with, as each side's v2 shows it.
    sha512 = ("sha512", hashlib.sha512(SMALL).hexdigest())
    for dep in (master, slave):
        assert Endpoint(address(dep)).multihash(small["id"]) == sha512
    assert copied["is_public"] is True and copied["min_ram"] == 64
    assert copied["properties"] == {"distro": "debian", "kernel_id": "k-1"}
    assert head(slave, queued["id"]) is None
    # Nothing went through a temporary copy on the replicator's side.
    assert sorted(slave.stored_files()) == sorted([small["id"], big["id"]])

    after = replicator("compare", address(master), address(slave))
    assert after.returncode == 0, after.stderr
    assert "differs" not in after.stderr and "missing" not in after.stderr
    assert "2 identical, 0 differ, 0 missing" in after.stdout

    # A re-run changes nothing.
    stamps = {i: on_slave[i]["updated_at"] for i in on_slave}
    again = replicator("livecopy", address(master), address(slave))
    assert again.returncode == 0, again.stderr
    assert "0 copied, 0 updated, 2 unchanged" in again.stdout
    assert {i: img["updated_at"] for i, img in listed(slave).items()} == stamps


@pytest.mark.timeout(300)
def test_livecopy_updates_changed_metadata_and_copies_new_images(
        master: harness.Deployment, slave: harness.Deployment) -> None:
    small = upload(master, SMALL, "small", **{"x-image-meta-property-distro": "debian",
                                              "x-image-meta-property-old": "x"})
    # The comma-separated form of Glance 11.0.2 still works.
    first = replicator("livecopy", "%s,%s" % (address(master), address(slave)))
    assert first.returncode == 0, first.stderr
    assert "1 copied" in first.stdout

    response = requests.put("%s/v1/images/%s" % (master.url, small["id"]), headers={
        "x-image-meta-name": "renamed", "x-image-meta-property-distro": "ubuntu"},
        timeout=10)
    assert response.status_code == 200, response.text
    big = upload(master, BIG, "big")

    # --metaonly: metadata follows, new data does not.
    meta = replicator("-m", "livecopy", address(master), address(slave))
    assert meta.returncode == 0, meta.stderr
    assert "0 copied, 1 updated, 0 unchanged, 1 skipped" in meta.stdout
    changed = listed(slave)[small["id"]]
    assert changed["name"] == "renamed"
    assert changed["properties"] == {"distro": "ubuntu"}
    assert head(slave, big["id"]) is None

    full = replicator("livecopy", address(master), address(slave))
    assert full.returncode == 0, full.stderr
    assert "1 copied, 0 updated, 1 unchanged" in full.stdout
    assert data(slave, big["id"]) == BIG


@pytest.mark.timeout(300)
def test_dontreplicate_fields_are_neither_compared_nor_copied(
        master: harness.Deployment, slave: harness.Deployment) -> None:
    small = upload(master, SMALL, "small")
    assert replicator("livecopy", address(master), address(slave)).returncode == 0
    requests.put("%s/v1/images/%s" % (master.url, small["id"]),
                 headers={"x-image-meta-name": "renamed"}, timeout=10)

    result = replicator("-D", "created_at updated_at name", "livecopy",
                        address(master), address(slave))

    assert result.returncode == 0, result.stderr
    assert "1 unchanged" in result.stdout
    assert listed(slave)[small["id"]]["name"] == "small"
    compared = replicator("compare", address(master), address(slave))
    assert "field name differs (source is renamed, destination is small)" in compared.stderr


# --- dump and load ---------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_dump_then_load(master: harness.Deployment, slave: harness.Deployment,
                        tmp_path: Path) -> None:
    small, big, queued = populate(master)
    dump_dir = tmp_path / "dump"

    dumped = replicator("dump", address(master), str(dump_dir))

    assert dumped.returncode == 0, dumped.stderr
    assert sorted(os.listdir(dump_dir)) == sorted([
        small["id"], small["id"] + ".img", big["id"], big["id"] + ".img", queued["id"]])
    assert (dump_dir / (big["id"] + ".img")).read_bytes() == BIG
    assert json.loads((dump_dir / small["id"]).read_text())["name"] == "small"
    again = replicator("dump", address(master), str(dump_dir))
    assert again.returncode == 0 and "0 copied, 0 updated, 3 unchanged" in again.stdout

    loaded = replicator("load", address(slave), str(dump_dir))

    assert loaded.returncode == 0, loaded.stderr
    assert "load: 2 copied, 0 updated, 0 unchanged, 1 skipped, 0 failed" in loaded.stdout
    assert data(slave, small["id"]) == SMALL
    assert data(slave, big["id"]) == BIG
    assert listed(slave)[small["id"]]["properties"] == {"distro": "debian",
                                                        "kernel_id": "k-1"}
    reloaded = replicator("load", address(slave), str(dump_dir))
    assert reloaded.returncode == 0, reloaded.stderr
    assert "0 copied, 0 updated, 2 unchanged" in reloaded.stdout

    # Edited metadata in the dump is pushed to the images already there.
    meta = json.loads((dump_dir / small["id"]).read_text())
    meta["properties"]["distro"] = "arch"
    (dump_dir / small["id"]).write_text(json.dumps(meta))
    pushed = replicator("load", address(slave), str(dump_dir))
    assert "1 updated" in pushed.stdout
    assert listed(slave)[small["id"]]["properties"]["distro"] == "arch"


@pytest.mark.timeout(240)
def test_the_receiving_side_inspects_what_it_loads(
        master: harness.Deployment, slave: harness.Deployment, tmp_path: Path) -> None:
    # A dump edited to carry a qcow2 whose reads fall through to a host file.
    image = upload(master, SMALL, "innocent")
    dump_dir = tmp_path / "dump"
    assert replicator("dump", address(master), str(dump_dir)).returncode == 0
    evil = disk_images.qcow2_with_backing_file(tmp_path)
    (dump_dir / (image["id"] + ".img")).write_bytes(evil)
    meta = json.loads((dump_dir / image["id"]).read_text())
    meta.update(disk_format="qcow2", size=len(evil),
                checksum=hashlib.md5(evil).hexdigest())
    (dump_dir / image["id"]).write_text(json.dumps(meta))

    loaded = replicator("load", address(slave), str(dump_dir))

    assert "1 failed" in loaded.stdout, loaded.stdout + loaded.stderr
    assert "backing_file" in loaded.stdout + loaded.stderr
    assert (head(slave, image["id"]) or {}).get("x-image-meta-status") == "killed"
    assert slave.stored_files() == []


@pytest.mark.timeout(240)
def test_dump_metaonly_writes_no_data(master: harness.Deployment, tmp_path: Path) -> None:
    small, big, queued = populate(master)

    result = replicator("--metaonly", "dump", address(master), str(tmp_path / "meta"))

    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "meta")) == sorted(
        [small["id"], big["id"], queued["id"]])


# --- faults -------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_checksum_mismatch_deletes_the_copy_and_reports(
        master: harness.Deployment, slave: harness.Deployment, tmp_path: Path) -> None:
    good = upload(master, SMALL, "good")
    bad = upload(master, BIG, "bad")
    # Same length, other bytes: the master still records the old checksum.
    (master.datadir / bad["id"]).write_bytes(bytes(reversed(BIG)))

    result = replicator("livecopy", address(master), address(slave))

    assert result.returncode == 1
    assert "checksum mismatch for image %s" % bad["id"] in result.stderr
    assert "1 copied" in result.stdout and "1 failed" in result.stdout
    assert data(slave, good["id"]) == SMALL
    gone = head(slave, bad["id"])
    assert gone is None or gone["x-image-meta-status"] in ("deleted", "killed")
    assert bad["id"] in listed(master)
    assert bad["id"] not in listed(slave)
    assert bad["id"] not in slave.stored_files()

    dumped = replicator("dump", address(master), str(tmp_path / "dump"))
    assert dumped.returncode == 1
    assert "checksum mismatch for image %s" % bad["id"] in dumped.stderr
    assert not (tmp_path / "dump" / (bad["id"] + ".img")).exists()
    assert [n for n in os.listdir(tmp_path / "dump") if n.endswith(".partial")] == []


@pytest.mark.timeout(240)
def test_unreachable_endpoint(master: harness.Deployment) -> None:
    upload(master, SMALL, "small")
    nowhere = "127.0.0.1:%d" % harness.free_port()

    copy = replicator("livecopy", address(master), nowhere)
    size = replicator("size", nowhere)

    for result in (copy, size):
        assert result.returncode == 1
        assert "ERROR: cannot reach http://%s" % nowhere in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.timeout(240)
def test_unauthorized_endpoint(tmp_path: Path) -> None:
    # trusted-auth refuses a caller without identity headers: 401.
    for dep in harness.deployment(tmp_path / "guarded"):
        size = replicator("-t", "some-token", "size", address(dep))
        copy = replicator("compare", address(dep), address(dep))
        for result in (size, copy):
            assert result.returncode == 1
            assert "refused the token (401 Unauthorized)" in result.stderr
            assert "Traceback" not in result.stderr


# --- command line -------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_usage_errors() -> None:
    missing = replicator("livecopy", "127.0.0.1:9292")
    assert missing.returncode == 1
    assert "ERROR: Too few arguments." in missing.stderr

    bad = replicator("size", "not a host:port")
    assert bad.returncode == 1 and "ERROR:" in bad.stderr

    unknown = replicator("frobnicate")
    assert unknown.returncode == 1 and "Unknown command: frobnicate" in unknown.stderr

    helped = replicator("help", "livecopy")
    assert helped.returncode == 0
    assert "livecopy <master:port> <slave:port>" in helped.stdout
