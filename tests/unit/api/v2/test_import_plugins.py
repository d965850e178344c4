"""Import plugins from glance-image-import.conf: decompression (and its
bombs), conversion by qemu-img (never of data that failed inspection) and
injected metadata; a refusal fails the task and leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import eventlet
import pytest

from glance_clone.common import exception
from glance_clone.domain.import_plugins import Plugins, conversion
from tests.support import disk_images
from tests.support.file_server import served  # noqa: F401 (fixture)

from .conftest import ADMIN, V2
from .test_import import do_import, stage, staged_files, wait_status
from .test_import_reliability import _tasks_of

RAW = bytes(range(256)) * 4096          # 1 MiB


def plugins(v2: V2, tmp_path: Path, text: str) -> None:
    path = tmp_path / "glance-image-import.conf"
    path.write_text(text)
    v2.stack.v2.import_runner.plugins = Plugins(v2.stack.conf, str(path))


def image(v2: V2, disk_format: str = "raw", **caller) -> dict:
    return v2.create(caller or None, name="i", disk_format=disk_format,
                     container_format="bare")


def direct(v2: V2, data: bytes, disk_format: str = "raw", **caller) -> dict:
    made = image(v2, disk_format, **caller)
    assert stage(v2, made["id"], data, **caller).status_int == 204
    assert do_import(v2, made["id"], **caller).status_int == 202
    return made


def finished(v2: V2, image_id: str) -> dict:
    for _ in range(500):
        [task] = _tasks_of(v2, image_id)
        if task["status"] in ("success", "failure"):
            return task
        eventlet.sleep(0.01)
    raise AssertionError(task)


def failed(v2: V2, image_id: str, words: str) -> None:
    task = finished(v2, image_id)
    assert task["status"] == "failure" and words in task["message"], task
    shown = v2.call("GET", "/images/" + image_id).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert staged_files(v2) == [] and v2.stack.stored_files() == []


def zipped(*members: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def test_decompression(v2: V2, tmp_path, served) -> None:  # noqa: F811
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_decompression\n")
    made = direct(v2, gzip.compress(RAW))
    shown = wait_status(v2, made["id"], "active")
    assert shown["size"] == len(RAW)
    assert v2.call("GET", "/images/%s/file" % made["id"]).body == RAW
    folder, url = served
    (folder / "one.zip").write_bytes(zipped(("disk.raw", RAW)))
    other = image(v2)
    assert do_import(v2, other["id"], "web-download", url + "/one.zip").status_int == 202
    assert wait_status(v2, other["id"], "active")["size"] == len(RAW)
    # Not compressed: left as it is.
    plain = direct(v2, RAW)
    assert wait_status(v2, plain["id"], "active")["size"] == len(RAW)


def test_decompression_refusals_and_bombs(v2_with, tmp_path) -> None:
    v2 = v2_with({"image_size_cap": 2 * 1024 * 1024})
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_decompression\n")
    bomb = direct(v2, gzip.compress(bytes(3 * 1024 * 1024)))
    failed(v2, bomb["id"], "decompressed data goes past image_size_cap")
    two = direct(v2, zipped(("a", b"1"), ("b", b"2")))
    failed(v2, two["id"], "exactly one file")
    lha = direct(v2, b"\x00\x00-lh5-" + bytes(100))
    failed(v2, lha["id"], "LHA")
    broken = direct(v2, gzip.compress(os.urandom(100_000))[:5000])
    failed(v2, broken["id"], "could not be decompressed")


def test_conversion(v2: V2, tmp_path) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = "
                          "image_decompression, image_conversion\n"
                          "[image_conversion]\noutput_format = raw\n")
    qcow2 = disk_images.qcow2(tmp_path, "2M")
    made = direct(v2, gzip.compress(qcow2), "qcow2")
    shown = wait_status(v2, made["id"], "active")
    assert (shown["disk_format"], shown["size"], shown["virtual_size"]) == (
        "raw", 2 * 1024 * 1024, 2 * 1024 * 1024)
    assert v2.call("GET", "/images/%s/file" % made["id"]).body == bytes(2 * 1024 * 1024)
    # vhd is what qemu-img calls vpc.
    vhd = direct(v2, disk_images.qemu_img(tmp_path, "vpc", "2M"), "vhd")
    shown = wait_status(v2, vhd["id"], "active")
    assert shown["disk_format"] == "raw" and shown["size"] == shown["virtual_size"]
    assert 2 * 1024 * 1024 <= shown["size"] < 3 * 1024 * 1024
    # Already the output format: stored as it is.
    raw = direct(v2, RAW)
    assert wait_status(v2, raw["id"], "active")["size"] == len(RAW)


def test_conversion_to_vmdk_writes_a_create_type_allowed(v2_with, tmp_path) -> None:
    v2 = v2_with({"image_format.vmdk_allowed_types": ["streamOptimized"]})
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n"
                          "[image_conversion]\noutput_format = vmdk\n")
    made = direct(v2, disk_images.qcow2(tmp_path, "2M"), "qcow2")
    shown = wait_status(v2, made["id"], "active")
    assert (shown["disk_format"], shown["virtual_size"]) == ("vmdk", 2 * 1024 * 1024)
    data = v2.call("GET", "/images/%s/file" % made["id"]).body
    assert b'createType="streamOptimized"' in data[:4096]


def test_conversion_never_runs_on_unsafe_data(v2: V2, tmp_path, served,  # noqa: F811
                                              monkeypatch) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    ran: list = []
    monkeypatch.setattr(conversion, "_run", lambda *args: ran.append(args))
    folder, url = served
    (folder / "unsafe.qcow2").write_bytes(disk_images.qcow2_with_backing_file(tmp_path))
    (folder / "iso.raw").write_bytes(disk_images.iso())
    made = image(v2, "qcow2")
    assert do_import(v2, made["id"], "web-download", url + "/unsafe.qcow2").status_int == 202
    failed(v2, made["id"], "safety")
    # ISO data is never converted: refused unless declared iso.
    iso = image(v2, "raw")
    assert do_import(v2, iso["id"], "web-download", url + "/iso.raw").status_int == 202
    failed(v2, iso["id"], "ISO")
    assert ran == []


def test_qemu_img_refusals_fail_the_task(v2: V2, tmp_path, monkeypatch) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    monkeypatch.setattr(conversion, "_run", lambda args, cpu, memory: (
        '{"format": "qcow2", "backing-filename": "/etc/passwd"}' if args[1] == "info"
        else ""))
    made = direct(v2, disk_images.qcow2(tmp_path), "qcow2")
    failed(v2, made["id"], "backing file")
    # Also when the data is in the output format already.
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n"
                          "[image_conversion]\noutput_format = qcow2\n")
    same = direct(v2, disk_images.qcow2(tmp_path), "qcow2")
    failed(v2, same["id"], "backing file")
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    # qemu-img must read the data as the format it was inspected as.
    monkeypatch.setattr(conversion, "_run", lambda args, cpu, memory: (
        '{"format": "raw"}' if args[1] == "info" else ""))
    other = direct(v2, disk_images.qcow2(tmp_path), "qcow2")
    failed(v2, other["id"], "qemu-img reads the data as 'raw', not 'qcow2'")


def test_qemu_img_complaining_on_stderr_is_a_failure() -> None:
    assert conversion._run(["sh", "-c", "echo out"], 2, 1024 ** 3) == "out\n"
    with pytest.raises(exception.Invalid, match="failed on the image data: careful"):
        conversion._run(["sh", "-c", "echo out; echo careful >&2"], 2, 1024 ** 3)
    with pytest.raises(exception.Invalid, match="failed on the image data"):
        conversion._run(["sh", "-c", "exit 1"], 2, 1024 ** 3)


def test_conversion_refuses_a_mismatch_even_when_matching_is_not_required(
        v2_with, tmp_path, monkeypatch) -> None:
    v2 = v2_with({"image_format.require_image_format_match": False})
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    ran: list = []
    monkeypatch.setattr(conversion, "_run", lambda *args: ran.append(args))
    # Staged (the mismatch is only logged there), but never given to qemu-img.
    made = direct(v2, disk_images.qcow2(tmp_path), "vmdk")
    failed(v2, made["id"], "disk_format vmdk does not match stream data qcow2")
    assert ran == []
    # Nor is qemu-img's output kept when it is not the format asked for.
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n"
                          "[image_conversion]\noutput_format = qcow2\n")

    def qemu_img(args: list[str], cpu: int, memory: int) -> str:
        if args[1] == "info":
            return '{"format": "raw"}'
        Path(args[-1]).write_bytes(RAW)
        return ""
    monkeypatch.setattr(conversion, "_run", qemu_img)
    converted = direct(v2, RAW, "raw")
    failed(v2, converted["id"], "disk_format qcow2 does not match stream data raw")


@pytest.mark.parametrize("create_type", [None, "monolithicFlat", "monolithicsparse"])
def test_qemu_img_vmdk_create_type_must_be_allowed(v2: V2, tmp_path, monkeypatch,
                                                   create_type: str | None) -> None:
    """What qemu-img reports is compared as written with vmdk_allowed_types."""
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    data = {"create-type": create_type} if create_type else {}
    info = json.dumps({"format": "vmdk", "format-specific": {"type": "vmdk", "data": data}})
    ran: list[str] = []
    monkeypatch.setattr(conversion, "_run", lambda args, cpu, memory: (
        ran.append(args[1]) or (info if args[1] == "info" else "")))
    made = direct(v2, disk_images.vmdk_sparse(tmp_path), "vmdk")
    failed(v2, made["id"], "vmdk createType %r is not in [image_format] "
                           "vmdk_allowed_types" % create_type)
    assert ran == ["info"]


def test_injected_metadata(v2: V2, tmp_path) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = inject_image_metadata\n"
                          "[inject_metadata_properties]\n"
                          "inject = hw_rng_model:virtio,os_glance_x:y\n")
    mine = direct(v2, RAW)
    shown = wait_status(v2, mine["id"], "active")
    assert shown["hw_rng_model"] == "virtio" and "os_glance_x" not in shown
    theirs = direct(v2, RAW, **ADMIN)
    assert finished(v2, theirs["id"])["status"] == "success"
    shown = v2.call("GET", "/images/" + theirs["id"], **ADMIN).json
    assert shown["status"] == "active" and "hw_rng_model" not in shown


def test_unknown_plugins_stop_the_start(v2: V2, tmp_path) -> None:
    path = tmp_path / "glance-image-import.conf"
    path.write_text("[image_import_opts]\nimage_import_plugins = image_conversion, nope\n")
    with pytest.raises(exception.ConfigError, match="nope"):
        Plugins(v2.stack.conf, str(path))
    # None found beside the configuration: no plugins.
    assert not Plugins(v2.stack.conf)


def test_compressed_containers_are_not_decompressed(v2: V2, tmp_path) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_decompression\n")
    packed = gzip.compress(RAW)
    made = v2.create(name="c", disk_format="raw", container_format="compressed")
    assert stage(v2, made["id"], packed).status_int == 204
    assert do_import(v2, made["id"]).status_int == 202
    assert wait_status(v2, made["id"], "active")["size"] == len(packed)
    assert v2.call("GET", "/images/%s/file" % made["id"]).body == packed


def test_conversion_to_qcow2(v2: V2, tmp_path) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n"
                          "[image_conversion]\noutput_format = qcow2\n")
    made = v2.create(name="c", disk_format="raw", container_format="ovf")
    assert stage(v2, made["id"], RAW).status_int == 204
    assert do_import(v2, made["id"]).status_int == 202
    shown = wait_status(v2, made["id"], "active")
    assert (shown["disk_format"], shown["container_format"]) == ("qcow2", "bare")
    assert shown["virtual_size"] == len(RAW)
    body = v2.call("GET", "/images/%s/file" % made["id"]).body
    assert body[:4] == b"QFI\xfb" and shown["size"] == len(body)


def test_injection_skips_the_configured_roles(v2: V2, tmp_path) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = inject_image_metadata\n"
                          "[inject_metadata_properties]\ninject = hw_rng_model:virtio\n"
                          "ignore_user_roles = Member, service\n")
    # A member (roles compared without case) gets nothing injected...
    mine = direct(v2, RAW)
    assert "hw_rng_model" not in wait_status(v2, mine["id"], "active")
    # ...and admin, no longer listed, does.
    theirs = direct(v2, RAW, **ADMIN)
    assert finished(v2, theirs["id"])["status"] == "success"
    shown = v2.call("GET", "/images/" + theirs["id"], **ADMIN).json
    assert shown["hw_rng_model"] == "virtio"


def test_an_iso_declared_iso_is_not_converted(v2: V2, tmp_path, monkeypatch) -> None:
    plugins(v2, tmp_path, "[image_import_opts]\nimage_import_plugins = image_conversion\n")
    ran: list = []
    monkeypatch.setattr(conversion, "_run", lambda *args: ran.append(args))
    data = disk_images.iso()
    made = direct(v2, data, "iso")
    shown = wait_status(v2, made["id"], "active")
    assert (shown["disk_format"], shown["size"]) == ("iso", len(data))
    assert ran == []
