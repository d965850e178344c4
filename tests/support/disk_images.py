"""Disk images for the inspection tests: real ones made by qemu-img (Debian's
qemu-utils) and malicious ones made by hand, as an attacker would."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

MIB = 1024 * 1024


def qemu_img(tmp_path: Path, fmt: str, size: str = "1M", *options: str,
             name: str | None = None) -> bytes:
    """The bytes of a new ``fmt`` image made by ``qemu-img create``."""
    path = tmp_path / (name or "image.%s" % fmt)
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *options, str(path), size],
                   check=True, cwd=tmp_path, timeout=60)
    return path.read_bytes()


def qcow2(tmp_path: Path, size: str = "1M") -> bytes:
    return qemu_img(tmp_path, "qcow2", size)


def qcow2_with_backing_file(tmp_path: Path, backing: str = "/etc/shadow") -> bytes:
    """A qcow2 whose reads fall through to ``backing`` on the hypervisor host."""
    (tmp_path / "base.raw").write_bytes(b"\0" * MIB)
    data = bytearray(qemu_img(tmp_path, "qcow2", "1M", "-b", "base.raw", "-F", "raw",
                              name="backed.qcow2"))
    # Point the recorded name at a host file, as an attacker would.
    offset, length = struct.unpack(">QI", data[8:20])
    name = backing.encode()
    data[offset:offset + len(name)] = name
    struct.pack_into(">I", data, 16, len(name))
    assert length
    return bytes(data)


def qcow2_with_data_file(tmp_path: Path) -> bytes:
    """A qcow2 v3 whose guest data lives in an external file."""
    return qemu_img(tmp_path, "qcow2", "1M", "-o", "data_file=external.raw",
                    name="datafile.qcow2")


def qcow2_with_unknown_feature(tmp_path: Path) -> bytes:
    """A qcow2 v3 with an incompatible-feature bit no qemu knows (bit 5)."""
    data = bytearray(qcow2(tmp_path))
    features = struct.unpack_from(">Q", data, 0x48)[0]
    struct.pack_into(">Q", data, 0x48, features | (1 << 5))
    return bytes(data)


def vmdk_descriptor(create_type: str, extent: str) -> bytes:
    """A bare vmdk descriptor (a text file qemu follows to its extents)."""
    return ("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
            'createType="%s"\n\n# Extent description\n%s\n\n'
            'ddb.adapterType = "ide"\n' % (create_type, extent)).encode()


def vmdk_sparse(tmp_path: Path) -> bytes:
    """A monolithicSparse vmdk (qemu-img's default subformat)."""
    return qemu_img(tmp_path, "vmdk", "1M", "-o", "subformat=monolithicSparse",
                    name="sparse.vmdk")


def vmdk_stream_with_footer(tmp_path: Path) -> bytes:
    """A streamOptimized vmdk as a streaming writer makes it: the header's
    grain directory offset is all ones, the real header follows the data
    as a footer (footer marker, header copy, end-of-stream marker)."""
    data = bytearray(qemu_img(tmp_path, "vmdk", "2M", "-o", "subformat=streamOptimized",
                              name="footer.vmdk"))
    footer = bytes(data[:512])
    struct.pack_into("<Q", data, 56, 2 ** 64 - 1)
    marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    return bytes(data) + marker + footer + bytes(512)


def vmdk_flat(tmp_path: Path) -> bytes:
    """A monolithicFlat descriptor made by qemu-img: its extent is another file."""
    return qemu_img(tmp_path, "vmdk", "1M", "-o", "subformat=monolithicFlat",
                    name="flat.vmdk")


def vmdk_with_descriptor_elsewhere(tmp_path: Path) -> bytes:
    """A sparse vmdk whose header puts its descriptor past sector 1."""
    data = bytearray(qemu_img(tmp_path, "vmdk", "1M", name="sparse.vmdk"))
    struct.pack_into("<Q", data, 28, 2)      # descriptorOffset, in sectors
    return bytes(data)


def mbr(boot_flag: int = 0x80, partition_type: int = 0x83, start_lba: int = 2048,
        start_chs: bytes = b"\0\x02\0", more: int = 0) -> bytes:
    """A one-sector MBR with one partition entry (type 0 for none), and
    ``more`` Linux partitions after it."""
    sector = bytearray(512)
    entry = struct.pack("<B3sB3sII", boot_flag, start_chs, partition_type,
                        b"\0\0\0", start_lba, 4096)
    sector[446:446 + 16] = entry
    for slot in range(1, 1 + more):
        sector[446 + 16 * slot:446 + 16 * (slot + 1)] = struct.pack(
            "<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 8192 * slot, 4096)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def protective_mbr(**changes: object) -> bytes:
    """The MBR of a GPT disk: one 0xEE entry covering the disk from LBA 1."""
    options: dict = {"boot_flag": 0, "partition_type": 0xEE, "start_lba": 1}
    options.update(changes)
    return mbr(**options)


def fat_boot_sector() -> bytes:
    """A FAT volume's first sector: an MBR's signature, no partition table."""
    sector = bytearray(b"\xff" * 512)
    sector[0x10] = 2            # number of FATs
    sector[0x15] = 0xF8         # media descriptor: fixed disk
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def luks(version: int = 1, payload_sectors: int = 8) -> bytes:
    """A LUKS header (no key slots in use) followed by its payload area."""
    header = bytearray(592)
    struct.pack_into(">6sH32s32s32sII", header, 0, b"LUKS\xba\xbe", version,
                     b"aes", b"xts-plain64", b"sha256", payload_sectors, 64)
    return bytes(header) + bytes(payload_sectors * 512 - 592 + 65536)


def qcow2_version(tmp_path: Path, version: int) -> bytes:
    """A qcow2 whose header claims ``version`` (qemu knows 2 and 3)."""
    data = bytearray(qcow2(tmp_path))
    struct.pack_into(">I", data, 4, version)
    return bytes(data)


def iso(blocks: int = 64) -> bytes:
    """An ISO 9660 volume: a primary volume descriptor at 32 KiB."""
    data = bytearray(blocks * 2048)
    descriptor = bytearray(2048)
    descriptor[0:6] = b"\x01CD001"
    struct.pack_into("<I", descriptor, 80, blocks)        # volume space size
    struct.pack_into("<H", descriptor, 128, 2048)         # logical block size
    data[32768:32768 + 2048] = descriptor
    return bytes(data)
