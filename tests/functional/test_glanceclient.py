"""The real python-glanceclient 2.17.1 CLI (v1) against real api and registry,
on every backend set."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional import harness
from tests.support import disk_images

pytestmark = pytest.mark.timeout(300)


def glance_program() -> str:
    beside = Path(sys.executable).with_name("glance")
    found = str(beside) if beside.exists() else shutil.which("glance")
    assert found, "python-glanceclient is not installed (pip install -e '.[test]')"
    return found


@pytest.fixture
def glance_cli(tmp_path, backend):
    """Runs `glance --os-image-api-version 1 ...` like a person at a terminal,
    on each backend set."""
    dep = harness.Deployment(tmp_path, api_flavor=None, registry_flavor=None,
                             backend=backend)
    dep.start()
    program = glance_program()

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        # glanceclient reads image data from stdin unless it is a terminal.
        master, slave = pty.openpty()
        try:
            result = subprocess.run(
                [program, "--os-image-api-version", "1", "--os-image-url", dep.url,
                 "--os-auth-token", "unused-token", *args],
                stdin=slave, capture_output=True, text=True, timeout=120,
                env=dict(os.environ, OS_AUTH_URL="", OS_USERNAME=""))
        finally:
            os.close(master)
            os.close(slave)
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    run.deployment = dep  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        dep.stop()


def table_value(output: str, key: str) -> str:
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] == key:
            return cells[2]
    raise AssertionError("%r not in output:\n%s" % (key, output))


def test_image_lifecycle_with_the_real_client(glance_cli, tmp_path):
    # A real qcow2: uploads are inspected, and random bytes are not one.
    data = disk_images.qcow2(tmp_path)
    source = tmp_path / "disk.img"
    source.write_bytes(data)

    created = glance_cli("image-create", "--name", "cirros", "--disk-format", "qcow2",
                         "--container-format", "bare", "--file", str(source),
                         "--property", "distro=ubuntu", "--is-public", "True")
    image_id = table_value(created.stdout, "id")
    assert table_value(created.stdout, "status") == "active"
    assert table_value(created.stdout, "size") == str(len(data))
    assert table_value(created.stdout, "Property 'distro'") == "ubuntu"

    listed = glance_cli("image-list")
    assert image_id in listed.stdout and "cirros" in listed.stdout

    shown = glance_cli("image-show", image_id)
    assert table_value(shown.stdout, "checksum") == __import__("hashlib").md5(data).hexdigest()

    updated = glance_cli("image-update", image_id, "--name", "cirros2",
                         "--property", "arch=x86_64")
    assert table_value(updated.stdout, "name") == "cirros2"
    assert table_value(updated.stdout, "Property 'arch'") == "x86_64"
    assert table_value(updated.stdout, "Property 'distro'") == "ubuntu"

    target = tmp_path / "out.img"
    glance_cli("image-download", image_id, "--file", str(target))
    assert target.read_bytes() == data

    glance_cli("member-create", image_id, "tenant2")
    members = glance_cli("member-list", "--image-id", image_id)
    assert "tenant2" in members.stdout
    glance_cli("member-delete", image_id, "tenant2")
    assert "tenant2" not in glance_cli("member-list", "--image-id", image_id).stdout

    glance_cli("image-delete", image_id)
    assert image_id not in glance_cli("image-list").stdout
    assert glance_cli.deployment.stored_files() == []


def test_client_sees_errors_as_messages(glance_cli, tmp_path):
    missing = glance_cli("image-show", "00000000-0000-0000-0000-000000000000", ok=False)
    assert missing.returncode != 0
    assert "No image with a name or ID" in missing.stderr + missing.stdout

    source = tmp_path / "disk.img"
    source.write_bytes(b"x" * 1000)
    bad = glance_cli("image-create", "--name", "bad", "--disk-format", "nonsense",
                     "--container-format", "bare", "--file", str(source), ok=False)
    assert bad.returncode != 0
    assert "Invalid disk format" in bad.stderr + bad.stdout
    assert glance_cli.deployment.stored_files() == []


def test_queued_image_then_upload_with_update(glance_cli, tmp_path):
    created = glance_cli("image-create", "--name", "later", "--disk-format", "raw",
                         "--container-format", "bare")
    image_id = table_value(created.stdout, "id")
    assert table_value(created.stdout, "status") == "queued"
    source = tmp_path / "disk.img"
    source.write_bytes(b"y" * 70_000)
    updated = glance_cli("image-update", image_id, "--file", str(source))
    assert table_value(updated.stdout, "status") == "active"
    assert table_value(updated.stdout, "size") == "70000"
