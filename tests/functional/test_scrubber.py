"""Delayed delete and glance-scrubber with real processes.

glance-api runs with ``delayed_delete = True`` against a trusted-auth
registry; the scrubber is run as ``python -m glance_clone.cmd.scrubber``
(one pass or ``--daemon``) or through glance-control, with a config that
claims the admin role through identity headers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional import harness

RUN_TIMEOUT = 60
DATA = b"0123456789abcdef" * 4096          # 64 KiB


@pytest.fixture
def glance(tmp_path: Path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(
        tmp_path, api_options={"DEFAULT": {"delayed_delete": True}})


def scrubber_conf(dep: harness.Deployment, registry_port: int | None = None,
                  **options: Any) -> Path:
    workdir = dep.base / "scrubber"
    workdir.mkdir(exist_ok=True)
    default = {"registry_host": "127.0.0.1",
               "registry_port": registry_port or dep.registry.port,
               "send_identity_headers": True, "admin_role": "admin",
               "admin_user": "scrubber", "admin_tenant_name": "service",
               "log_file": str(workdir / "glance-scrubber.log"),
               "registry_client_timeout": 30}
    default.update(options)
    path = workdir / "glance-scrubber.conf"
    path.write_text(harness.render_conf({
        "DEFAULT": default,
        "glance_store": dict(dep.api.sections["glance_store"])}))
    return path


def scrubber_log(conf: Path) -> str:
    log = conf.parent / "glance-scrubber.log"
    return log.read_text(errors="replace") if log.exists() else ""


def run_scrubber(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glance_clone.cmd.scrubber", "--config-file", str(conf),
         *args], env=harness.server_env(), capture_output=True, text=True,
        timeout=RUN_TIMEOUT)


def start_daemon(conf: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "glance_clone.cmd.scrubber", "--config-file", str(conf),
         "--daemon"], env=harness.server_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def upload(dep: harness.Deployment, data: bytes = DATA, **headers: str) -> dict:
    all_headers = dict(harness.admin(), **{
        "x-image-meta-name": "scrub-me", "x-image-meta-disk-format": "raw",
        "x-image-meta-container-format": "bare",
        "Content-Type": "application/octet-stream"})
    all_headers.update(headers)
    response = requests.post(dep.url + "/v1/images", headers=all_headers, data=data,
                             timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["image"]


def registry_image(dep: harness.Deployment, image_id: str) -> dict:
    response = requests.get("%s/images/%s" % (dep.registry.url, image_id),
                            headers=harness.admin(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["image"]


def status(dep: harness.Deployment, image_id: str) -> str:
    return registry_image(dep, image_id)["status"]


def status_if_any(dep: harness.Deployment, image_id: str) -> str | None:
    response = requests.get("%s/images/%s" % (dep.registry.url, image_id),
                            headers=harness.admin(), timeout=10)
    return response.json()["image"]["status"] if response.status_code == 200 else None


def pending_images(dep: harness.Deployment) -> list[dict]:
    response = requests.get(
        dep.registry.url + "/images/detail",
        params={"deleted": "True", "is_public": "none", "status": "pending_delete"},
        headers=harness.admin(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["images"]


def delete(dep: harness.Deployment, image_id: str) -> requests.Response:
    return requests.delete("%s/v1/images/%s" % (dep.url, image_id),
                           headers=harness.admin(), timeout=30)


# --- delayed delete ------------------------------------------------------------

@pytest.mark.timeout(180)
def test_delayed_delete_then_one_shot_scrub(glance: harness.Deployment) -> None:
    image = upload(glance)
    kept = upload(glance)
    image_id = image["id"]

    assert delete(glance, image_id).status_code == 200
    head = requests.head("%s/v1/images/%s" % (glance.url, image_id),
                         headers=harness.admin(), timeout=10)
    assert head.headers["x-image-meta-status"] == "pending_delete"
    assert head.headers["x-image-meta-deleted"] == "True"
    assert image_id in glance.stored_files()          # data kept for the scrubber

    # Neither deleted again nor downloaded while pending.
    again = delete(glance, image_id)
    assert again.status_code == 403
    assert "pending_delete" in again.text
    download = requests.get("%s/v1/images/%s" % (glance.url, image_id),
                            headers=harness.admin(), timeout=10)
    assert download.status_code == 404

    result = run_scrubber(scrubber_conf(glance))

    assert result.returncode == 0, result.stderr
    assert status(glance, image_id) == "deleted"
    assert glance.stored_files() == [kept["id"]]
    assert pending_images(glance) == []


@pytest.mark.timeout(180)
def test_scrub_time_keeps_recent_deletes(glance: harness.Deployment) -> None:
    image = upload(glance)
    assert delete(glance, image["id"]).status_code == 200

    result = run_scrubber(scrubber_conf(glance, scrub_time=3600))

    assert result.returncode == 0, result.stderr
    assert status(glance, image["id"]) == "pending_delete"
    assert image["id"] in glance.stored_files()


@pytest.mark.timeout(180)
def test_store_failure_half_way_leaves_the_image_pending(glance: harness.Deployment) -> None:
    image = upload(glance)
    [first] = registry_image(glance, image["id"])["location_data"]
    # A second location the file store cannot delete (a directory).
    stuck = glance.datadir / "stuck-location"
    stuck.mkdir()
    second_url = "file://%s" % stuck
    response = requests.put(
        "%s/images/%s" % (glance.registry.url, image["id"]), headers=harness.admin(),
        json={"image": {"location_data": [
            first,
            {"url": second_url, "metadata": {}, "status": "active"}]}}, timeout=10)
    assert response.status_code == 200, response.text
    assert delete(glance, image["id"]).status_code == 200
    conf = scrubber_conf(glance)

    result = run_scrubber(conf)

    assert result.returncode == 3, result.stderr
    assert "left for a later run" in result.stderr
    assert status(glance, image["id"]) == "pending_delete"
    assert image["id"] not in glance.stored_files()         # first one done
    [pending] = pending_images(glance)
    assert [loc["url"] for loc in pending["location_data"]
            if loc["status"] == "pending_delete"] == [second_url]

    stuck.rmdir()
    result = run_scrubber(conf)
    assert result.returncode == 0, result.stderr
    assert status(glance, image["id"]) == "deleted"


# --- daemon ----------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_daemon_scrubs_each_wakeup_and_stops_on_sigterm(glance: harness.Deployment) -> None:
    daemon = start_daemon(scrubber_conf(glance, wakeup_time=1))
    try:
        image = upload(glance)
        assert delete(glance, image["id"]).status_code == 200
        harness.wait_until(lambda: status(glance, image["id"]) == "deleted", 60, 0.2,
                           "the daemon to scrub the image")
        assert glance.stored_files() == []
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)


@pytest.mark.timeout(180)
def test_glance_control_starts_and_stops_the_daemon(glance: harness.Deployment) -> None:
    # glance-control passes only --config-file: the conf asks for a daemon.
    conf = scrubber_conf(glance, daemon=True, wakeup_time=1)
    pid_file = glance.base / "run" / "glance-scrubber.pid"

    def control(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "glance_clone.cmd.control", "--pid-file", str(pid_file),
             "scrubber", command, str(conf)],
            env=harness.server_env(), capture_output=True, text=True, timeout=60)

    started = control("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(pid_file.read_text().strip())
    try:
        image = upload(glance)
        assert delete(glance, image["id"]).status_code == 200
        harness.wait_until(lambda: status(glance, image["id"]) == "deleted", 60, 0.2,
                           "the daemon started by glance-control to scrub:\n%s"
                           % scrubber_log(conf))
        stopped = control("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "Stopping glance-scrubber" in stopped.stdout
        assert "signal(9)" not in stopped.stdout + stopped.stderr   # no SIGKILL needed
        assert not pid_file.exists()
        assert "stopping on signal 15" in scrubber_log(conf)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- registry down ---------------------------------------------------------------

@pytest.mark.timeout(180)
def test_registry_down_one_shot_exits_non_zero(glance: harness.Deployment) -> None:
    conf = scrubber_conf(glance, registry_port=harness.free_port())

    result = run_scrubber(conf)

    assert result.returncode == 1
    assert "ERROR: cannot reach glance-registry at http://127.0.0.1:" in result.stderr


@pytest.mark.timeout(180)
def test_registry_down_daemon_retries_then_scrubs(glance: harness.Deployment) -> None:
    image = upload(glance)
    assert delete(glance, image["id"]).status_code == 200
    glance.registry.stop()
    conf = scrubber_conf(glance, wakeup_time=1)
    daemon = start_daemon(conf)
    try:
        harness.wait_until(lambda: scrubber_log(conf).count("retrying in 1 s") >= 2,
                           60, 0.2, "the daemon to retry")
        assert daemon.poll() is None
        glance.registry.start(glance.registry.port)
        harness.wait_until(lambda: status(glance, image["id"]) == "deleted", 60, 0.2,
                           "the daemon to scrub once the registry is back")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)


# --- reaper ------------------------------------------------------------------------

class StalledBody:
    """A chunked request body that sends some data, then waits to be released."""

    def __init__(self) -> None:
        self.sent = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield DATA
        self.sent.set()
        self.release.wait(120)
        yield DATA


@pytest.mark.timeout(240)
def test_reaper_kills_upload_of_a_crashed_api(glance: harness.Deployment) -> None:
    image_id = str(uuid.uuid4())
    body = StalledBody()
    outcome: dict[str, Any] = {}

    def post() -> None:
        headers = dict(harness.admin(), **{
            "x-image-meta-id": image_id, "x-image-meta-name": "doomed",
            "x-image-meta-disk-format": "raw", "x-image-meta-container-format": "bare",
            "Content-Type": "application/octet-stream"})
        try:
            outcome["response"] = requests.post(glance.url + "/v1/images", headers=headers,
                                                data=iter(body), timeout=120)
        except requests.RequestException as err:
            outcome["error"] = err

    client = threading.Thread(target=post, daemon=True)
    client.start()
    try:
        assert body.sent.wait(60)

        def partial_files() -> list[str]:
            return [name for name in glance.stored_files()
                    if name.startswith(".%s." % image_id) and name.endswith(".partial")]

        harness.wait_until(lambda: status_if_any(glance, image_id) == "saving"
                           and partial_files(),
                           60, 0.1, "the upload to be in progress")
        glance.api.kill()                                 # SIGKILL mid-upload
    finally:
        body.release.set()
        client.join(60)
    assert "response" not in outcome or outcome["response"].status_code >= 500
    assert status(glance, image_id) == "saving"
    assert partial_files()

    conf = scrubber_conf(glance, scrub_saving_timeout=1)
    runs: list[subprocess.CompletedProcess[str]] = []

    def reaped() -> bool:
        runs.append(run_scrubber(conf))
        assert runs[-1].returncode == 0, runs[-1].stderr
        return status(glance, image_id) == "killed"

    harness.wait_until(reaped, 90, 0.2, "the reaper to kill the dead upload")
    assert partial_files() == []
    assert glance.stored_files() == []
    assert "stuck in 'saving'" in scrubber_log(conf)
