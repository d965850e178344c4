"""Disk-format inspection: the formats each declaration accepts, the images
that are always refused, and refusal before the whole image arrives."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.data_in import Incoming
from glance_clone.domain.inspection import Inspection, for_image, register_opts
from tests.support import disk_images

MIB = disk_images.MIB


def feed(data: bytes, declared: str, chunk: int = 65536, **options) -> Inspection:
    inspection = Inspection(declared, **options)
    b"".join(Incoming((data[i:i + chunk] for i in range(0, len(data), chunk)),
                      inspector=inspection))
    return inspection


def refused(data: bytes, declared: str, **options) -> str:
    with pytest.raises(exception.ImageFormatRefused) as err:
        feed(data, declared, **options)
    return str(err.value)


@pytest.mark.parametrize("fmt, qemu_name, declared", [
    ("qcow2", "qcow2", "qcow2"), ("vhd", "vpc", "vhd"), ("vhdx", "vhdx", "vhdx"),
    ("vdi", "vdi", "vdi"), ("vmdk", "vmdk", "vmdk")])
def test_real_images_get_their_virtual_size(tmp_path: Path, fmt: str, qemu_name: str,
                                            declared: str) -> None:
    data = disk_images.qemu_img(tmp_path, qemu_name, "3M")
    inspection = feed(data, declared, chunk=4096)
    assert inspection.detected == fmt
    # vhd rounds the size up to its own disk geometry.
    assert 3 * MIB <= inspection.virtual_size < 3 * MIB + 65536


def test_a_stream_optimized_vmdk_is_judged_with_its_footer(tmp_path: Path) -> None:
    data = disk_images.qemu_img(tmp_path, "vmdk", "2M", "-o", "subformat=streamOptimized")
    assert feed(data, "vmdk").virtual_size == 2 * MIB


@pytest.mark.parametrize("qemu_name, declared, offset, fmt", [
    ("qcow2", "qcow2", 24, ">Q"), ("vdi", "vdi", 0x170, "<Q"), ("vpc", "vhd", 40, ">Q")])
def test_a_virtual_size_past_what_can_be_recorded_is_refused(
        tmp_path: Path, qemu_name: str, declared: str, offset: int, fmt: str) -> None:
    data = bytearray(disk_images.qemu_img(tmp_path, qemu_name))
    struct.pack_into(fmt, data, offset, 2 ** 63)
    assert "%s: a virtual size of %d bytes" % (declared, 2 ** 63) in refused(
        bytes(data), declared)
    struct.pack_into(fmt, data, offset, 2 ** 63 - 1)
    assert feed(bytes(data), declared).virtual_size == 2 ** 63 - 1


def test_raw_data_declared_raw_gets_the_byte_count() -> None:
    inspection = feed(b"\x01" * 300_000, "raw")
    assert (inspection.detected, inspection.virtual_size) == ("raw", 300_000)


def test_a_qcow2_declared_raw_is_accepted_with_the_byte_count(tmp_path: Path) -> None:
    data = disk_images.qcow2(tmp_path)
    assert feed(data, "raw").virtual_size == len(data)


@pytest.mark.parametrize("declared", ["ami", "ari", "aki", "ploop"])
def test_unrecognised_data_under_formats_no_inspector_knows(declared: str) -> None:
    assert feed(b"kernel" * 1000, declared).virtual_size is None


def test_an_iso_with_a_partition_table_is_an_iso() -> None:
    data = bytearray(disk_images.iso())
    data[:512] = disk_images.mbr()
    inspection = feed(bytes(data), "iso")
    assert (inspection.detected, inspection.virtual_size) == ("iso", len(data))


@pytest.mark.parametrize("declared", ["qcow2", "vmdk", "iso"])
def test_raw_bytes_under_an_inspectable_format_are_refused(declared: str) -> None:
    assert "does not match stream data raw" in refused(b"\x01" * 200_000, declared)


def test_a_recognisable_image_declared_ami_is_refused(tmp_path: Path) -> None:
    assert "disk_format ami does not match stream data qcow2" in refused(
        disk_images.qcow2(tmp_path), "ami")


def test_a_mismatch_is_accepted_when_matching_is_not_required(tmp_path: Path) -> None:
    inspection = feed(disk_images.qcow2(tmp_path), "vhd", require_match=False)
    assert inspection.virtual_size is None


# -- always refused -------------------------------------------------------------------
MALICIOUS = {
    "qcow2 with a backing file": (disk_images.qcow2_with_backing_file, "qcow2",
                                  "backing_file"),
    "qcow2 with a data file": (disk_images.qcow2_with_data_file, "qcow2", "data_file"),
    "qcow2 with an unknown feature": (disk_images.qcow2_with_unknown_feature, "qcow2",
                                      "unknown_features"),
    "vmdk whose extent is another file": (disk_images.vmdk_flat, "vmdk", "descriptor"),
    "vmdk with its descriptor elsewhere": (disk_images.vmdk_with_descriptor_elsewhere,
                                           "vmdk", "descriptor"),
}


@pytest.mark.parametrize("name", MALICIOUS)
@pytest.mark.parametrize("require_match", [True, False])
def test_unsafe_images_are_refused_under_any_declaration(
        tmp_path: Path, name: str, require_match: bool) -> None:
    build, fmt, check = MALICIOUS[name]
    data = build(tmp_path)
    for declared in (fmt, "raw"):
        reason = refused(data, declared, require_match=require_match)
        assert "Image failed safety checks (%s: %s)" % (fmt, check) in reason


@pytest.mark.parametrize("extent", [
    'RW 2048 SPARSE "/var/lib/nova/instances/other/disk"',
    'RW 2048 SPARSE "../../../etc/passwd"',
    'RW 2048 FLAT "disk-flat.vmdk" 0 /etc/passwd'])
def test_a_hand_made_vmdk_naming_host_files_is_refused(extent: str) -> None:
    data = disk_images.vmdk_descriptor("monolithicSparse", extent)
    assert "vmdk: descriptor" in refused(data, "vmdk")


def test_a_vmdk_of_an_unsafe_create_type_is_refused() -> None:
    data = disk_images.vmdk_descriptor("vmfs", 'RW 2048 VMFS "disk.vmdk"')
    assert "vmdk: descriptor" in refused(data, "vmdk")


def test_vmdk_allowed_types_chooses_the_create_types(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([])
    assert conf.image_format.vmdk_allowed_types == ["streamOptimized", "monolithicSparse"]
    sparse = disk_images.vmdk_sparse(tmp_path)
    stream = disk_images.qemu_img(tmp_path, "vmdk", "1M", "-o", "subformat=streamOptimized",
                                  name="stream.vmdk")

    def judged(data: bytes) -> Inspection:
        inspection = for_image(conf, "vmdk", "bare")
        b"".join(Incoming([data], inspector=inspection))
        return inspection

    assert judged(sparse).virtual_size == MIB and judged(stream).virtual_size == MIB
    conf.set_override("vmdk_allowed_types", ["StreamOptimized"], "image_format")
    assert judged(stream).detected == "vmdk"
    with pytest.raises(exception.ImageFormatRefused,
                       match="createType 'monolithicsparse' is not in"):
        judged(sparse)
    conf.set_override("vmdk_allowed_types", [], "image_format")
    for data in (sparse, stream):
        with pytest.raises(exception.ImageFormatRefused, match="vmdk_allowed_types"):
            judged(data)
    # Also when the vmdk is declared as something else.
    conf.set_override("require_image_format_match", False, "image_format")
    inspection = for_image(conf, "qcow2", "bare")
    with pytest.raises(exception.ImageFormatRefused, match="vmdk_allowed_types"):
        b"".join(Incoming([sparse], inspector=inspection))


def test_qed_is_never_accepted(tmp_path: Path) -> None:
    assert "qed: banned" in refused(disk_images.qemu_img(tmp_path, "qed"), "raw")


def test_a_broken_mbr_is_refused_unless_allowed() -> None:
    data = disk_images.mbr(boot_flag=0x12) + b"\0" * 100_000
    assert "gpt: mbr" in refused(data, "raw")
    assert feed(data, "raw", gpt_nonfatal=frozenset(["mbr"])).virtual_size == len(data)


@pytest.mark.parametrize("sector, check", [
    (disk_images.mbr(partition_type=0), "no partitions"),
    (disk_images.protective_mbr(more=1), "extra partitions"),
    (disk_images.protective_mbr(start_lba=2), "start LBA"),
    (disk_images.protective_mbr(start_chs=b"\0\x01\0"), "start CHS"),
    (disk_images.mbr(boot_flag=0x01), "boot flag")])
def test_partition_tables_that_no_disk_tool_writes_are_refused(
        sector: bytes, check: str) -> None:
    data = sector + b"\0" * 100_000
    assert "gpt: mbr" in refused(data, "raw")
    # Each of these is what gpt_safety_checks_nonfatal = mbr lets through.
    assert feed(data, "raw", gpt_nonfatal=frozenset(["mbr"])).detected == "gpt"


def test_a_gpt_disk_and_a_fat_volume_are_accepted_as_raw() -> None:
    gpt = feed(disk_images.protective_mbr() + b"\0" * 100_000, "raw")
    assert (gpt.detected, gpt.virtual_size) == ("gpt", 100_512)
    # A FAT volume's boot sector has the MBR signature but no partition table.
    fat = feed(disk_images.fat_boot_sector() + b"\0" * 100_000, "raw")
    assert fat.detected == "raw"


def test_only_luks_version_1_is_accepted() -> None:
    assert feed(disk_images.luks(1), "raw").detected == "luks"
    assert "luks: version" in refused(disk_images.luks(2), "raw")


@pytest.mark.parametrize("version", [1, 4])
def test_a_qcow2_of_an_unknown_version_is_refused(tmp_path: Path, version: int) -> None:
    data = disk_images.qcow2_version(tmp_path, version)
    assert "qcow2: unknown_features" in refused(data, "qcow2")
    assert feed(disk_images.qcow2_version(tmp_path, 2), "qcow2").virtual_size == MIB


@pytest.mark.parametrize("text", [
    'createType="monolithicSparse"\n',                              # no extent
    'createType="monolithicSparse"\nRW 2048 SPARSE "a.vmdk"\nrm -rf x\n',
    'createType="monolithicSparse"\nRW 2048 SPARSE "a.vmdk"\nnot a key = 1\n'])
def test_a_vmdk_descriptor_with_no_extent_or_a_stray_line_is_refused(text: str) -> None:
    # Text shorter than a sector is not taken for a descriptor: pad it.
    data = ("# Disk DescriptorFile\n" + text + "#" * 600 + "\n").encode()
    assert "vmdk: descriptor" in refused(data, "vmdk")
    assert "vmdk: descriptor" in refused(data, "raw")


@pytest.mark.parametrize("offset, value, fmt", [
    (-1024 + 56, 2 ** 64 - 1, "<Q"),    # the footer announces another footer
    (-1024 + 28, 5, "<Q"),              # its descriptor is elsewhere
    (-1024 + 4, 7, "<I"),               # another version
    (-1536 + 12, 1, "<I"),              # the footer marker's type
    (-512 + 12, 5, "<I")])              # the end-of-stream marker's type
def test_a_stream_optimized_vmdk_with_a_forged_footer_is_refused(
        tmp_path: Path, offset: int, value: int, fmt: str) -> None:
    data = bytearray(disk_images.vmdk_stream_with_footer(tmp_path))
    assert feed(bytes(data), "vmdk").virtual_size == 2 * MIB
    struct.pack_into(fmt, data, len(data) + offset, value)
    assert "vmdk: footer" in refused(bytes(data), "vmdk")


def test_an_iso_without_a_primary_descriptor_has_no_virtual_size() -> None:
    data = bytearray(disk_images.iso())
    data[32768] = 0xFF          # a volume descriptor set terminator, not type 1
    inspection = feed(bytes(data), "iso")
    assert (inspection.detected, inspection.virtual_size) == ("iso", None)


def test_two_formats_in_one_image_are_refused(tmp_path: Path) -> None:
    data = bytearray(disk_images.iso())
    qcow = disk_images.qcow2(tmp_path)
    data[:512] = qcow[:512]
    assert "Multiple formats detected: iso,qcow2" in refused(bytes(data), "qcow2")


def test_an_unsafe_image_hidden_in_two_formats_is_refused_when_mismatches_pass(
        tmp_path: Path) -> None:
    # A qcow2 naming a host file that is an ISO as well.
    data = bytearray(disk_images.iso())
    data[:4096] = disk_images.qcow2_with_backing_file(tmp_path)[:4096]
    assert "Multiple formats detected: iso,qcow2" in refused(bytes(data), "qcow2")
    for declared in ("qcow2", "iso", "raw"):
        assert "qcow2: backing_file" in refused(bytes(data), declared, require_match=False)
    # Safe data matching two formats is still accepted, without a virtual size.
    data[:4096] = disk_images.qcow2(tmp_path)[:4096]
    assert feed(bytes(data), "qcow2", require_match=False).virtual_size is None


def test_refusal_comes_before_the_rest_of_the_image(tmp_path: Path) -> None:
    head = disk_images.qcow2_with_backing_file(tmp_path)
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        yield head
        while True:
            sent.append(MIB)
            yield b"\0" * MIB
    with pytest.raises(exception.ImageFormatRefused):
        b"".join(Incoming(endless(), inspector=Inspection("qcow2")))
    # The ISO and VHDX inspectors want their first 512 KiB; then it stops.
    assert len(sent) <= 2


@pytest.mark.parametrize("container_format, disk_format", [
    ("ovf", "qcow2"), ("bare", None), (None, None)])
def test_without_a_bare_declaration_only_safety_is_checked(
        tmp_path: Path, container_format: str | None, disk_format: str | None) -> None:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([])
    inspection = for_image(conf, disk_format, container_format)
    good = Incoming([b"\x01" * 100_000], inspector=inspection)
    assert b"".join(good) and inspection.virtual_size is None
    bad = disk_images.qcow2_with_backing_file(tmp_path)
    with pytest.raises(exception.ImageFormatRefused):
        b"".join(Incoming([bad], inspector=for_image(conf, disk_format, container_format)))
