"""Disk-format inspection on every v1 path that brings image data in:
create and update with data, and copy-from. A refused image is a 400 with
the reason (for copy-from, the image is killed), and nothing is stored."""

from __future__ import annotations

import pytest

from tests.support import disk_images

from .helpers import (
    Body,
    all_images,
    assert_no_upload_leftovers,
    create,
    create_image,
    message,
    meta,
    status_of,
    streamed,
    wait_for_status,
)

pytestmark = pytest.mark.timeout(60)

QCOW2 = {"x-image-meta-disk_format": "qcow2", "x-image-meta-container_format": "bare"}


def test_a_qcow2_upload_records_its_virtual_size(stack, tmp_path):
    data = disk_images.qcow2(tmp_path, "5M")
    image = create_image(stack, QCOW2, body=data)
    assert (image["status"], image["size"]) == ("active", len(data))
    assert image["virtual_size"] == 5 * disk_images.MIB
    assert meta(stack, image["id"])["virtual_size"] == str(5 * disk_images.MIB)


def test_raw_uploads_record_the_byte_count(stack):
    image = create_image(stack, body=b"\x01" * 4096)
    assert image["virtual_size"] == 4096


def test_a_qcow2_with_a_backing_file_is_refused_on_create(stack, tmp_path):
    data = disk_images.qcow2_with_backing_file(tmp_path)
    response = create(stack, QCOW2, body=data)
    assert response.status_int == 400
    assert "Image failed safety checks (qcow2: backing_file)" in message(response)
    assert [i["status"] for i in all_images(stack)] == ["killed"]
    assert_no_upload_leftovers(stack)


def test_a_vmdk_naming_host_files_is_refused_on_update(stack):
    image = create_image(stack)
    data = disk_images.vmdk_descriptor("monolithicSparse", 'RW 8 SPARSE "/etc/shadow"')
    response = streamed(stack, "/v1/images/" + image["id"], "PUT", Body(data), {
        "x-image-meta-disk_format": "vmdk", "x-image-meta-container_format": "bare"},
        tenant="t1")
    assert response.status_int == 400
    assert "Image failed safety checks (vmdk: descriptor)" in message(response)
    assert status_of(stack, image["id"]) == "killed"
    assert_no_upload_leftovers(stack)


def test_data_that_is_not_the_declared_format_is_refused(stack):
    response = create(stack, QCOW2, body=b"\x01" * 100_000)
    assert response.status_int == 400
    assert "Image disk_format qcow2 does not match stream data raw" in message(response)
    assert_no_upload_leftovers(stack)


def test_a_mismatch_passes_when_not_required(stack_with, tmp_path):
    stack = stack_with({"image_format.require_image_format_match": "false"})
    image = create_image(stack, QCOW2, body=b"\x01" * 100_000)
    assert image["status"] == "active" and image["virtual_size"] is None
    response = create(stack, QCOW2, body=disk_images.qcow2_with_data_file(tmp_path))
    assert response.status_int == 400


def test_copy_from_a_malicious_qcow2_kills_the_image(stack, remote, tmp_path):
    url = remote.add("evil.qcow2", disk_images.qcow2_with_backing_file(tmp_path))
    response = create(stack, dict(QCOW2, **{"x-glance-api-copy-from": url}))
    assert response.status_int == 201
    image_id = response.json["image"]["id"]
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "killed"
    assert_no_upload_leftovers(stack)


def test_copy_from_a_good_qcow2_fills_the_virtual_size(stack, remote, tmp_path):
    url = remote.add("good.qcow2", disk_images.qcow2(tmp_path, "2M"))
    response = create(stack, dict(QCOW2, **{"x-glance-api-copy-from": url}))
    image_id = response.json["image"]["id"]
    assert wait_for_status(stack, image_id, {"active", "killed"}) == "active"
    assert meta(stack, image_id)["virtual_size"] == str(2 * disk_images.MIB)


def test_a_vmdk_of_a_create_type_not_allowed_is_refused(stack_with, tmp_path):
    stack = stack_with({"image_format.vmdk_allowed_types": ["streamOptimized"]})
    response = create(stack, {"x-image-meta-disk_format": "vmdk",
                              "x-image-meta-container_format": "bare"},
                      body=disk_images.vmdk_sparse(tmp_path))
    assert response.status_int == 400
    assert ("createType 'monolithicsparse' is not in [image_format] vmdk_allowed_types"
            in message(response))
    assert [i["status"] for i in all_images(stack)] == ["killed"]
    assert_no_upload_leftovers(stack)
