"""Image metadata in x-image-meta-* headers, both ways (api-v1.md section 4)."""

from __future__ import annotations

import re

import pytest

from glance_clone.api.v1 import headers as meta_headers
from glance_clone.common import exception

from .helpers import ADMIN, FORMATS, all_images, create, create_image, head, message, meta

pytestmark = pytest.mark.timeout(60)


def wire(text: str) -> str:
    """A header value as WSGI hands UTF-8 bytes over: latin-1 text."""
    return text.encode("utf-8").decode("latin-1")


def unwire(text: str) -> str:
    return text.encode("latin-1").decode("utf-8")


# -- parsing, unit level --------------------------------------------------------
def test_parse_normalises_field_and_property_names():
    meta = meta_headers.parse_image_meta([
        ("X-Image-Meta-Disk-Format", "raw"), ("x-image-meta-container_format", "bare"),
        ("X-Image-Meta-Property-OS-Distro", "ubuntu"), ("Content-Type", "x")])
    assert meta == {"disk_format": "raw", "container_format": "bare",
                    "properties": {"os_distro": "ubuntu"}}


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("t", True), ("TRUE", True), ("On", True), ("y", True), ("YES", True),
    ("0", False), ("false", False), ("no", False), ("2", False), ("", False)])
def test_parse_booleans(value, expected):
    meta = meta_headers.parse_image_meta([("x-image-meta-protected", value)])
    assert meta["protected"] is expected


def test_parse_empty_values_are_null():
    meta = meta_headers.parse_image_meta([("x-image-meta-name", ""),
                                          ("x-image-meta-property-a", "")])
    assert meta == {"name": None, "properties": {"a": None}}


@pytest.mark.parametrize("field", ["size", "min_disk", "min_ram", "virtual_size"])
@pytest.mark.parametrize("raw", ["abc", "1.5", "1_000", "\u0663", "0x10"])
def test_parse_integers_refuse_non_decimal(field, raw):
    with pytest.raises(exception.Invalid) as err:
        meta_headers.parse_image_meta([("x-image-meta-" + field, wire(raw))])
    assert str(err.value) == (
        "Invalid value '%s' for parameter '%s': Cannot convert image %s '%s' to an "
        "integer." % (raw, field, field, raw))


@pytest.mark.parametrize("field", ["size", "min_disk", "min_ram", "virtual_size"])
def test_parse_integers_refuse_negatives(field):
    with pytest.raises(exception.Invalid) as err:
        meta_headers.parse_image_meta([("x-image-meta-" + field, "-1")])
    assert str(err.value) == ("Invalid value '-1' for parameter '%s': Cannot be a "
                              "negative value." % field)


def test_parse_virtual_size_literal_none():
    meta = meta_headers.parse_image_meta([("x-image-meta-virtual_size", "None"),
                                          ("x-image-meta-size", "42")])
    assert meta["virtual_size"] is None and meta["size"] == 42


def test_parse_drops_fields_without_useful_effect():
    meta = meta_headers.parse_image_meta([
        ("x-image-meta-created_at", "yesterday"), ("x-image-meta-updated_at", "x"),
        ("x-image-meta-deleted_at", "x"), ("x-image-meta-deleted", "true"),
        ("x-image-meta-uri", "x"), ("x-image-meta-copy_from", "x")])
    assert meta == {"properties": {}}


# -- parsing through the API ----------------------------------------------------
@pytest.mark.parametrize("header", ["X-Image-Meta-Colour", "x-image-meta-locations",
                                    "X-Image-Meta-"])
def test_unknown_meta_header_is_400(stack, header):
    response = create(stack, {header: "x"})
    assert response.status_int == 400
    assert ("bad header: %s" % header).lower() in message(response).lower()
    assert all_images(stack) == []


@pytest.mark.parametrize("headers, text", [
    ({"x-image-meta-size": "big"},
     "Invalid value 'big' for parameter 'size': Cannot convert image size 'big' to an integer."),
    ({"x-image-meta-min_ram": "-5"},
     "Invalid value '-5' for parameter 'min_ram': Cannot be a negative value."),
    ({"x-image-meta-min_disk": "x"}, "Cannot convert image min_disk 'x' to an integer."),
    ({"x-image-meta-virtual_size": "-1"}, "Cannot be a negative value."),
    ({"x-image-meta-name": "n" * 256}, "Image name too long: 256"),
    ({"x-image-meta-checksum": "c" * 33},
     "Invalid checksum '%s': can't exceed 32 characters" % ("c" * 33)),
    ({"x-image-meta-disk_format": "floppy"}, "Invalid disk format 'floppy' for image."),
    ({"x-image-meta-disk_format": ""}, "Invalid disk format 'None' for image."),
    ({"x-image-meta-container_format": "box"},
     "Invalid container format 'box' for image."),
    ({"x-image-meta-container_format": ""}, "Invalid container format 'None' for image."),
    ({"x-image-meta-disk_format": "aki", "x-image-meta-container_format": "bare"},
     "Invalid mix of disk and container formats. When setting a disk or container "
     "format to one of 'aki', 'ari', or 'ami', the container and disk formats must match."),
    ({"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "ami"},
     "Invalid mix of disk and container formats."),
])
def test_invalid_values_are_400_and_create_nothing(stack, headers, text):
    response = create(stack, headers)
    assert response.status_int == 400
    assert text in message(response)
    assert all_images(stack) == []


def test_names_of_exactly_255_and_checksums_of_32_are_fine(stack):
    image = create_image(stack, {"x-image-meta-name": "n" * 255,
                                 "x-image-meta-checksum": "c" * 32})
    assert image["name"] == "n" * 255 and image["checksum"] == "c" * 32


@pytest.mark.parametrize("given, other", [("disk_format", "container_format"),
                                          ("container_format", "disk_format")])
@pytest.mark.parametrize("fmt", ["aki", "ari", "ami"])
def test_amazon_format_completes_the_other(stack, given, other, fmt):
    image = create_image(stack, {"x-image-meta-" + given: fmt})
    assert image[given] == fmt and image[other] == fmt


def test_configured_formats_are_the_accepted_ones(stack_with):
    stack = stack_with({"image_format.disk_formats": ["raw", "weird"]})
    assert create_image(stack, {"x-image-meta-disk_format": "weird"})["disk_format"] == "weird"
    response = create(stack, {"x-image-meta-disk_format": "qcow2"})
    assert response.status_int == 400
    assert "Invalid disk format 'qcow2' for image." in message(response)


def test_field_names_accept_dashes_and_any_case(stack):
    image = create_image(stack, {"X-Image-Meta-Disk-Format": "qcow2",
                                 "X-IMAGE-META-CONTAINER-FORMAT": "ovf",
                                 "x-image-meta-min-ram": "512", "X-Image-Meta-Min_Disk": "3"})
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "ovf")
    assert (image["min_ram"], image["min_disk"]) == (512, 3)


def test_property_names_are_lowercased_with_underscores(stack):
    image = create_image(stack, {"X-Image-Meta-Property-OS-Distro": "Ubuntu",
                                 "x-image-meta-property-Kernel_ID": "k1"})
    assert image["properties"] == {"os_distro": "Ubuntu", "kernel_id": "k1"}
    headers = meta(stack, image["id"])
    assert headers["property-os_distro"] == "Ubuntu"
    assert headers["property-kernel_id"] == "k1"


def test_utf8_values_round_trip(stack):
    text = "Ubuntu \u00e9t\u00e9 \u65e5\u672c \u0416"
    image = create_image(stack, {"x-image-meta-property-description": wire(text),
                                 "x-image-meta-name": wire(text)})
    assert image["properties"]["description"] == text
    assert image["name"] == text
    headers = meta(stack, image["id"])
    assert unwire(headers["property-description"]) == text
    assert unwire(headers["name"]) == text
    listed = stack.request("/v1/images/detail", tenant="t1").json["images"][0]
    assert listed["properties"]["description"] == text


def test_empty_property_is_null_and_not_sent_as_header(stack):
    image = create_image(stack, {"x-image-meta-property-empty": "",
                                 "x-image-meta-property-full": "1"})
    assert image["properties"] == {"empty": None, "full": "1"}
    headers = meta(stack, image["id"])
    assert "property-empty" not in headers and headers["property-full"] == "1"


def test_status_and_timestamps_are_ignored_on_create(stack):
    image = create_image(stack, {"x-image-meta-status": "active",
                                 "x-image-meta-created_at": "not a time",
                                 "x-image-meta-updated_at": "2001-01-01T00:00:00",
                                 "x-image-meta-deleted": "true"})
    assert image["status"] == "queued"
    assert image["deleted"] is False
    assert image["created_at"] != "not a time"
    assert not image["updated_at"].startswith("2001")


def test_owner_is_set_by_admins_and_ignored_for_others(stack):
    mine = create_image(stack, {"x-image-meta-owner": "someone"}, tenant="t1")
    assert mine["owner"] == "t1"
    theirs = create_image(stack, {"x-image-meta-owner": "someone"}, **ADMIN)
    assert theirs["owner"] == "someone"


def test_response_headers_render_every_non_null_field(stack):
    data = b"x" * 5120
    image = create_image(stack, {"x-image-meta-name": "cirros",
                                 "x-image-meta-property-distro": "Ubuntu"}, body=data)
    response = head(stack, image["id"], tenant="t1")
    assert response.status_int == 200
    assert response.body == b""
    h = response.headers
    assert h["x-image-meta-size"] == "5120"
    assert h["x-image-meta-is_public"] == "False"
    assert h["x-image-meta-protected"] == "False"
    assert h["x-image-meta-deleted"] == "False"
    assert h["x-image-meta-min_ram"] == "0"
    assert h["x-image-meta-status"] == "active"
    assert h["x-image-meta-owner"] == "t1"
    assert h["x-image-meta-disk_format"] == FORMATS["x-image-meta-disk_format"]
    assert h["x-image-meta-property-distro"] == "Ubuntu"
    assert h["ETag"] == h["x-image-meta-checksum"] == image["checksum"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", h["x-image-meta-created_at"])
    assert "x-image-meta-deleted_at" not in h
    assert h["x-image-meta-virtual_size"] == "5120"       # inspected: raw, its bytes
    assert not [k for k in h if k.lower() in ("x-image-meta-location",
                                              "x-image-meta-location_data")]
    assert "file://" not in str(h)
