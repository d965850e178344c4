"""The image cache with real glance-api and glance-registry processes and
the four cache commands run from the command line.

glance-api runs the ``cachemanagement`` flavor (every caller an admin, as
glance-cache-manage expects) or ``trusted-auth+cachemanagement`` (callers
by identity headers) with ``image_cache_dir`` set. Images whose store
reads must be counted live at an http location on a test web server in
this process (loopback on any port is allowed by the harness's
``allowed_hosts`` and empty ``allowed_ports``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from glance_clone.common.chunking import CHUNK_SIZE
from tests.functional import harness

RUN_TIMEOUT = 120
CHUNK = 65536
MAX_CLIENTS = 100


# -- a web server holding image data, counting reads --------------------------------
class ImageServer:
    """Serves byte strings at /<name>; counts GETs; can pause mid-body
    (``gate``) and send the rest slowly (``pace`` seconds a chunk)."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self.gets: dict[str, int] = {}
        self.gate: threading.Event | None = None
        self.pace = 0.0
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _headers(self) -> bytes | None:
                data = server.images.get(self.path.lstrip("/"))
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return data

            def do_HEAD(self) -> None:
                self._headers()

            def do_GET(self) -> None:
                with server.lock:
                    name = self.path.lstrip("/")
                    server.gets[name] = server.gets.get(name, 0) + 1
                data = self._headers()
                if data is None:
                    return
                gate = server.gate
                with contextlib.suppress(OSError):
                    self.wfile.write(data[:CHUNK])
                    self.wfile.flush()
                    if gate is not None:
                        assert gate.wait(RUN_TIMEOUT)
                    for offset in range(CHUNK, len(data), CHUNK):
                        if server.pace:
                            time.sleep(server.pace)     # a slow store, not a sync point
                        self.wfile.write(data[offset:offset + CHUNK])

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.close()


# -- deployments ----------------------------------------------------------------------
def cache_deployment(tmp_path: Path, flavor: str = "cachemanagement",
                     cache_dir: Path | None = None, **api_default: Any) -> harness.Deployment:
    if cache_dir is None:
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir()
    default = {"image_cache_dir": str(cache_dir)}
    default.update(api_default)
    return harness.Deployment(tmp_path, api_options={"DEFAULT": default}, api_flavor=flavor)


@pytest.fixture
def glance(tmp_path: Path) -> Iterator[harness.Deployment]:
    dep = cache_deployment(tmp_path)
    try:
        yield dep.start()
    finally:
        dep.stop()


def cache_dir_of(dep: harness.Deployment) -> Path:
    return Path(dep.api.sections["DEFAULT"]["image_cache_dir"])


def cached_files(dep: harness.Deployment, settle: bool = True) -> list[str]:
    """The complete files; with ``settle``, once no fill is under way (a
    miss's file is hashed and admitted after its last byte went out)."""
    if settle:
        harness.wait_until(lambda: not files_in(dep, "incomplete"), 30,
                           message="the fills under way to end")
    base = cache_dir_of(dep)
    return sorted(p.name for p in base.iterdir()
                  if p.is_file() and not p.name.startswith((".", "cache.db")))


def files_in(dep: harness.Deployment, sub: str) -> list[str]:
    return sorted(os.listdir(cache_dir_of(dep) / sub))


def upload(dep: harness.Deployment, data: bytes, headers: dict[str, str] | None = None) -> str:
    all_headers = {"x-image-meta-name": "img", "x-image-meta-disk-format": "raw",
                   "x-image-meta-container-format": "bare",
                   "Content-Type": "application/octet-stream"}
    all_headers.update(headers or {})
    response = requests.post(dep.url + "/v1/images", data=data, headers=all_headers,
                             timeout=RUN_TIMEOUT)
    assert response.status_code == 201, response.text
    return str(response.json()["image"]["id"])


def at_location(dep: harness.Deployment, web: ImageServer, name: str, data: bytes,
                headers: dict[str, str] | None = None) -> str:
    web.images[name] = data
    all_headers = {"x-image-meta-name": name, "x-image-meta-disk-format": "raw",
                   "x-image-meta-container-format": "bare",
                   "x-image-meta-location": web.url(name),
                   "x-image-meta-checksum": hashlib.md5(data).hexdigest()}
    all_headers.update(headers or {})
    response = requests.post(dep.url + "/v1/images", headers=all_headers, timeout=RUN_TIMEOUT)
    assert response.status_code == 201, response.text
    assert response.json()["image"]["status"] == "active"
    return str(response.json()["image"]["id"])


def download(dep: harness.Deployment, image_id: str,
             headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(dep.url + "/v1/images/" + image_id, headers=headers,
                        timeout=RUN_TIMEOUT)


def cache_manage(dep: harness.Deployment, *args: str,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glance_clone.cmd.cache_manage",
         "-H", "127.0.0.1", "-p", str(dep.api.port), *args],
        input=stdin, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def cache_tool_conf(dep: harness.Deployment, **options: Any) -> Path:
    workdir = dep.base / "cache-tools"
    workdir.mkdir(exist_ok=True)
    default = {"image_cache_dir": str(cache_dir_of(dep)),
               "registry_host": "127.0.0.1", "registry_port": dep.registry.port,
               "send_identity_headers": True,
               "log_file": str(workdir / "glance-cache.log")}
    default.update(options)
    path = workdir / "glance-cache.conf"
    path.write_text(harness.render_conf({
        "DEFAULT": default,
        "glance_store": {"filesystem_store_datadir": str(dep.datadir)},
        # As the harness's api: this process's HTTP server, on a random port.
        "import_filtering_opts": {"allowed_hosts": "127.0.0.1", "allowed_ports": ""}}))
    return path


def run_tool(tool: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glance_clone.cmd." + tool,
                           "--config-file", str(conf)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)


def tool_log(conf: Path) -> str:
    path = conf.parent / "glance-cache.log"
    return path.read_text(errors="replace") if path.exists() else ""


def listed(dep: harness.Deployment) -> dict[str, dict[str, Any]]:
    response = requests.get(dep.url + "/v1/cached_images", timeout=RUN_TIMEOUT)
    assert response.status_code == 200, response.text
    return {i["image_id"]: i for i in response.json()["cached_images"]}


# -- tests ----------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_miss_then_hit(glance: harness.Deployment, web: ImageServer) -> None:
    data = os.urandom(3 * CHUNK + 123)
    image_id = at_location(glance, web, "hitmiss", data)
    first = download(glance, image_id)
    assert first.status_code == 200 and first.content == data
    assert cached_files(glance) == [image_id]
    second = download(glance, image_id)
    assert second.status_code == 200 and second.content == data
    assert web.gets["hitmiss"] == 1
    assert second.headers["Content-Length"] == str(len(data))
    assert second.headers["ETag"] == hashlib.md5(data).hexdigest()
    assert second.headers["x-image-meta-id"] == image_id
    assert listed(glance)[image_id]["hits"] == 1
    head = requests.head(glance.url + "/v1/images/" + image_id, timeout=RUN_TIMEOUT)
    assert head.status_code == 200
    ranged = download(glance, image_id, {"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == data[:100]
    assert web.gets["hitmiss"] == 1            # the part came from the cached file
    assert ranged.headers["Content-Range"] == "bytes 0-99/%d" % len(data)
    assert listed(glance)[image_id]["hits"] == 2


@pytest.mark.timeout(240)
def test_every_cache_manage_command(glance: harness.Deployment) -> None:
    data_a, data_b = os.urandom(100000), os.urandom(50000)
    a, b = upload(glance, data_a), upload(glance, data_b)

    result = cache_manage(glance, "list-cached")
    assert (result.returncode, result.stdout) == (0, "No cached images.\n")
    result = cache_manage(glance, "list-queued")
    assert (result.returncode, result.stdout) == (0, "No queued images.\n")

    assert download(glance, a).content == data_a
    # The miss's file is admitted after its last byte went out, perhaps after
    # the client already sent the next request: wait, so that one is a hit.
    assert cached_files(glance) == [a]
    assert download(glance, a).content == data_a
    assert download(glance, b).content == data_b
    result = cache_manage(glance, "list-cached")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Found 2 cached images..."
    assert lines[1].startswith("ID                                   Last Accessed (UTC) ")
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert set(rows) == {a, b}
    assert rows[a][3:] == [str(len(data_a)), "1"]
    assert rows[b][3:] == [str(len(data_b)), "0"]

    # Declined confirmation: nothing happens, exit 0.
    result = cache_manage(glance, "delete-cached-image", a, stdin="n\n")
    assert result.returncode == 0 and "Delete cached image %s? [y/N]" % a in result.stdout
    assert cached_files(glance) == sorted([a, b])
    result = cache_manage(glance, "delete-cached-image", a, "-v", stdin="y\n")
    assert result.returncode == 0
    assert "Deleted cached image %s" % a in result.stdout
    assert cached_files(glance) == [b]
    result = cache_manage(glance, "delete-all-cached-images", "-f", "-v")
    assert result.returncode == 0 and "Deleted 1 cached images" in result.stdout
    assert cached_files(glance) == []

    for image_id in (a, b):
        result = cache_manage(glance, "queue-image", image_id, "--force", "--verbose")
        assert result.returncode == 0
        assert "Queued image %s for caching" % image_id in result.stdout
        assert "Completed in " in result.stdout
    result = cache_manage(glance, "list-queued")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "Found 2 queued images..."
    assert sorted(line.strip() for line in result.stdout.splitlines()[3:]) == sorted([a, b])
    result = cache_manage(glance, "delete-queued-image", a, "-f")
    assert (result.returncode, result.stdout) == (0, "")
    assert files_in(glance, "queue") == [b]
    result = cache_manage(glance, "delete-all-queued-images", "-f", "-v")
    assert result.returncode == 0 and "Deleted 1 queued images" in result.stdout
    assert files_in(glance, "queue") == []

    result = cache_manage(glance, "queue-image")
    assert result.returncode == 1
    assert "Please specify one and only ID of the image you wish to" in result.stdout
    result = cache_manage(glance, "bogus")
    assert result.returncode == 1 and "Unknown command: bogus" in result.stderr
    result = cache_manage(glance, "help", "list-cached")
    assert result.returncode == 0 and "list-cached" in result.stdout


@pytest.mark.timeout(180)
def test_cache_manage_without_the_middleware(tmp_path: Path) -> None:
    dep = harness.Deployment(tmp_path, api_flavor=None)
    try:
        dep.start()
        result = cache_manage(dep, "list-cached")
        assert result.returncode == 1
        assert result.stdout == "Cache management middleware not enabled on host 127.0.0.1\n"
    finally:
        dep.stop()


@pytest.mark.timeout(180)
def test_prefetcher_from_the_command_line(glance: harness.Deployment,
                                          web: ImageServer) -> None:
    stored = os.urandom(200000)
    remote = os.urandom(150000)
    stored_id = upload(glance, stored)
    remote_id = at_location(glance, web, "remote", remote)
    for image_id in (stored_id, remote_id):
        assert cache_manage(glance, "queue-image", image_id, "-f").returncode == 0
    conf = cache_tool_conf(glance)
    result = run_tool("cache_prefetcher", conf)
    assert result.returncode == 0, result.stderr + tool_log(conf)
    assert "Prefetched 2 images, skipped 0, failed 0" in tool_log(conf)
    assert cached_files(glance) == sorted([stored_id, remote_id])
    assert files_in(glance, "queue") == []
    assert web.gets["remote"] == 1
    assert download(glance, remote_id).content == remote
    assert download(glance, stored_id).content == stored
    assert web.gets["remote"] == 1
    hits = listed(glance)
    assert hits[remote_id]["hits"] == 1 and hits[stored_id]["hits"] == 1


@pytest.mark.timeout(300)
def test_cron_pruner_during_twenty_downloads(glance: harness.Deployment,
                                             web: ImageServer) -> None:
    # Larger than what loopback socket buffers hold, so the api is still
    # reading every file when the pruner removes it.
    size = 12 * 1024 * 1024
    images = {}
    for _ in range(3):
        data = os.urandom(size)
        images[upload(glance, data)] = data
    # The fourth is still being filled during the run: its store holds back
    # all but the first chunk until the downloads go on.
    data = os.urandom(size)
    images[at_location(glance, web, "filling", data)] = data
    web.gate = threading.Event()
    ids = list(images)
    for image_id in ids[:3]:
        assert download(glance, image_id).content == images[image_id]
    assert len(cached_files(glance)) == 3

    release = threading.Event()
    started = threading.Semaphore(0)
    digests: dict[int, tuple[str, str]] = {}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        image_id = ids[index % 4]          # three cached, one being filled now
        try:
            with requests.get(glance.url + "/v1/images/" + image_id, stream=True,
                              timeout=RUN_TIMEOUT) as response:
                assert response.status_code == 200
                md5 = hashlib.md5()
                chunks = response.iter_content(CHUNK)
                md5.update(next(chunks))
                started.release()
                assert release.wait(RUN_TIMEOUT)
                for chunk in chunks:
                    md5.update(chunk)
                digests[index] = (image_id, md5.hexdigest())
        except BaseException as err:
            errors.append(err)
            started.release()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=RUN_TIMEOUT)
    assert not errors, errors
    assert ids[3] in files_in(glance, "incomplete")

    # The cron job, while every download is open and under way.
    max_size = size + size // 2
    conf = cache_tool_conf(glance, image_cache_max_size=max_size)
    result = run_tool("cache_pruner", conf)
    assert result.returncode == 0, result.stderr + tool_log(conf)
    assert "Pruned 2 images; image cache now holds %d bytes" % size in tool_log(conf)
    assert len(cached_files(glance, settle=False)) == 1

    release.set()
    web.gate.set()
    for thread in threads:
        thread.join(RUN_TIMEOUT)
    assert not errors, errors
    assert len(digests) == 20
    for image_id, digest in digests.values():
        assert digest == hashlib.md5(images[image_id]).hexdigest()
    # The image filled during the run was admitted; everything cached is intact.
    assert ids[3] in cached_files(glance)
    for image_id in cached_files(glance):
        assert download(glance, image_id).content == images[image_id]

    assert run_tool("cache_pruner", conf).returncode == 0
    total = sum((cache_dir_of(glance) / name).stat().st_size for name in cached_files(glance))
    assert total <= max_size
    result = run_tool("cache_cleaner", conf)
    assert result.returncode == 0, result.stderr
    assert files_in(glance, "invalid") == [] and files_in(glance, "incomplete") == []


@pytest.mark.timeout(180)
def test_concurrent_misses_read_the_store_once(glance: harness.Deployment,
                                               web: ImageServer) -> None:
    data = os.urandom(8 * CHUNK + 5)
    image_id = at_location(glance, web, "popular", data)
    web.gate = threading.Event()
    first_bytes = threading.Semaphore(0)
    bodies: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with requests.get(glance.url + "/v1/images/" + image_id, stream=True,
                              timeout=RUN_TIMEOUT) as response:
                assert response.status_code == 200
                chunks = response.iter_content(1024)
                body = next(chunks)
                first_bytes.release()
                bodies[index] = body + b"".join(chunks)
        except BaseException as err:
            errors.append(err)
            first_bytes.release()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    # All 20 are streaming while the store has sent only its first chunk.
    for _ in threads:
        assert first_bytes.acquire(timeout=RUN_TIMEOUT)
    assert not errors, errors
    assert web.gets["popular"] == 1
    web.gate.set()
    for thread in threads:
        thread.join(RUN_TIMEOUT)
    assert not errors, errors
    assert [bodies[i] == data for i in range(20)] == [True] * 20
    assert web.gets["popular"] == 1
    assert cached_files(glance) == [image_id]


def api_lines(dep: harness.Deployment, text: str) -> list[str]:
    """The api's log lines (whole log, every worker) that contain ``text``."""
    return [line for line in dep.api.log_path.read_text(errors="replace").splitlines()
            if text in line]


def pids_of(lines: list[str]) -> set[str]:
    """The process ids in log lines (the default log_format's second field)."""
    return {line.split()[2] for line in lines}


class StreamingClients:
    """Downloads in threads that report their first bytes, then finish."""

    def __init__(self, dep: harness.Deployment, image_id: str) -> None:
        self.url = dep.url + "/v1/images/" + image_id
        self.first_bytes = threading.Semaphore(0)
        self.bodies: dict[int, bytes] = {}
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._download, args=(len(self.threads),))
            self.threads.append(thread)
            thread.start()
        for _ in range(count):
            assert self.first_bytes.acquire(timeout=RUN_TIMEOUT)
        assert not self.errors, self.errors

    def _download(self, index: int) -> None:
        try:
            with requests.get(self.url, stream=True, timeout=RUN_TIMEOUT) as response:
                assert response.status_code == 200
                chunks = response.iter_content(1024)
                body = next(chunks)
                self.first_bytes.release()
                self.bodies[index] = body + b"".join(chunks)
        except BaseException as err:
            self.errors.append(err)
            self.first_bytes.release()

    def finish(self) -> list[bytes]:
        for thread in self.threads:
            thread.join(RUN_TIMEOUT)
        assert not self.errors, self.errors
        return [self.bodies[i] for i in range(len(self.threads))]


class PausedClient:
    """A download that takes its first bytes, then reads nothing until told.

    A small receive buffer, so the api really cannot send it much more.
    """

    def __init__(self, dep: harness.Deployment, image_id: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(RUN_TIMEOUT)
        self.sock.connect(("127.0.0.1", dep.api.port))
        self.sock.sendall(b"GET /v1/images/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n" % image_id.encode())
        self.received = b""
        while b"\r\n\r\n" not in self.received or self.received.endswith(b"\r\n\r\n"):
            data = self.sock.recv(4096)
            assert data, self.received
            self.received += data

    def read_rest(self) -> tuple[bytes, bytes]:
        """The status line and the body."""
        while data := self.sock.recv(CHUNK):
            self.received += data
        self.sock.close()
        head, _, body = self.received.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0], body


@pytest.mark.timeout(240)
def test_concurrent_misses_with_two_workers(tmp_path: Path, web: ImageServer) -> None:
    dep = cache_deployment(tmp_path, workers=2)
    try:
        dep.start()
        data = os.urandom(8 * CHUNK + 5)
        image_id = at_location(dep, web, "popular", data)
        web.gate = threading.Event()
        web.pace = 0.02
        following = "Image %s is being cached by another process" % image_id
        clients = StreamingClients(dep, image_id)
        clients.start(20)
        # The kernel picks the worker of each connection: a few more until
        # both have some (the follower logs that before sending a byte).
        while not api_lines(dep, following) and len(clients.threads) < MAX_CLIENTS:
            clients.start(5)
        # Every client is streaming while the store has sent its first chunk.
        assert web.gets["popular"] == 1
        web.gate.set()
        bodies = clients.finish()
        assert bodies == [data] * len(bodies)
        assert web.gets["popular"] == 1
        # Both workers served downloads: one read the store, the other
        # followed its cache file. A worker writes its access line after the
        # last byte went out, so the lines may trail the bodies a little.
        def access_lines() -> list[str] | None:
            lines = api_lines(dep, '"GET /v1/images/%s ' % image_id)
            return lines if len(lines) >= len(bodies) else None

        downloads = harness.wait_until(access_lines, 30, message="every download's access line")
        assert len(downloads) == len(bodies) and len(pids_of(downloads)) == 2
        assert len(pids_of(api_lines(dep, following))) == 1
        assert cached_files(dep) == [image_id]
        assert files_in(dep, "incomplete") == [] and files_in(dep, "invalid") == []
        assert download(dep, image_id).content == data
        assert web.gets["popular"] == 1
    finally:
        dep.stop()


@pytest.mark.timeout(240)
def test_paused_client_does_not_hold_back_the_other_workers(tmp_path: Path,
                                                            web: ImageServer) -> None:
    dep = cache_deployment(tmp_path, workers=2)
    try:
        dep.start()
        data = os.urandom(8 * 1024 * 1024)      # more than loopback buffers hold
        image_id = at_location(dep, web, "large", data)
        web.gate = threading.Event()
        paused = PausedClient(dep, image_id)    # the first: its worker reads the store
        clients = StreamingClients(dep, image_id)
        clients.start(8)
        web.gate.set()
        # Everyone else gets the whole image while the first client reads nothing.
        assert clients.finish() == [data] * 8
        assert web.gets["large"] == 1
        status, body = paused.read_rest()
        assert status.startswith(b"HTTP/1.1 200") and body == data
        assert cached_files(dep) == [image_id]
        assert web.gets["large"] == 1
    finally:
        dep.stop()


@pytest.mark.timeout(180)
def test_client_going_away_leaves_nothing_cached(glance: harness.Deployment,
                                                web: ImageServer) -> None:
    data = os.urandom(16 * CHUNK)
    image_id = at_location(glance, web, "abandoned", data)
    web.gate = threading.Event()
    with requests.get(glance.url + "/v1/images/" + image_id, stream=True,
                      timeout=RUN_TIMEOUT) as response:
        assert len(response.raw.read(1000)) == 1000
    web.gate.set()
    harness.wait_until(lambda: files_in(glance, "invalid") == [image_id], 30,
                       message="the partial file to move to invalid/")
    assert cached_files(glance) == [] and files_in(glance, "incomplete") == []
    web.gate = None
    assert download(glance, image_id).content == data
    assert cached_files(glance) == [image_id]


@pytest.mark.timeout(180)
def test_altered_cache_file_is_not_served(glance: harness.Deployment) -> None:
    data = os.urandom(5 * CHUNK_SIZE)       # several chunks: the first ones go out
    image_id = upload(glance, data)
    assert download(glance, image_id).content == data
    assert cached_files(glance) == [image_id]
    path = cache_dir_of(glance) / image_id

    # Different size: noticed before the first byte, served from the store.
    path.write_bytes(data + b"extra")
    assert download(glance, image_id).content == data
    assert files_in(glance, "invalid") == [image_id]
    assert cached_files(glance) == [image_id]

    # Same size, mtime put back: the ctime gives it away before the first
    # byte (hits are not hashed again), so the store serves it.
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(CHUNK)
        handle.write(b"\0" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert download(glance, image_id).content == data
    assert files_in(glance, "invalid") == [image_id]
    assert "changed on disk after it was cached" in glance.api.log()
    assert download(glance, image_id).content == data


@pytest.mark.timeout(180)
def test_deleted_image_is_not_served(glance: harness.Deployment) -> None:
    data = os.urandom(100000)
    here, elsewhere = upload(glance, data), upload(glance, data)
    for image_id in (here, elsewhere):
        assert download(glance, image_id).content == data
    assert cached_files(glance) == sorted([here, elsewhere])

    assert requests.delete(glance.url + "/v1/images/" + here,
                           timeout=RUN_TIMEOUT).status_code == 200
    assert cached_files(glance) == [elsewhere]
    assert download(glance, here).status_code == 404

    # Deleted through another api node: only the registry knows.
    registry = glance.registry.url + "/images/" + elsewhere
    admin = harness.admin()
    assert requests.put(registry, json={"image": {"status": "deleted"}}, headers=admin,
                        timeout=RUN_TIMEOUT).status_code == 200
    assert requests.delete(registry, headers=admin, timeout=RUN_TIMEOUT).status_code == 200
    assert download(glance, elsewhere).status_code == 404
    assert cached_files(glance) == []


@pytest.mark.timeout(180)
def test_policy_and_visibility_on_hits(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    rules = json.loads((harness.ETC / "policy.json").read_text())
    rules["download_image"] = "role:member or role:admin"
    policy.write_text(json.dumps(rules))
    dep = cache_deployment(tmp_path, flavor="trusted-auth+cachemanagement")
    dep.api.sections["oslo_policy"]["policy_file"] = str(policy)
    try:
        dep.start()
        data = os.urandom(100000)
        owner = harness.identity("t1")
        response = requests.post(dep.url + "/v1/images", data=data, timeout=RUN_TIMEOUT,
                                 headers={**owner, "x-image-meta-name": "private",
                                          "x-image-meta-disk-format": "raw",
                                          "x-image-meta-container-format": "bare",
                                          "Content-Type": "application/octet-stream"})
        assert response.status_code == 201, response.text
        image_id = response.json()["image"]["id"]
        assert download(dep, image_id, owner).content == data
        assert cached_files(dep) == [image_id]

        stranger = download(dep, image_id, harness.identity("t2"))
        assert stranger.status_code == 404
        reader = download(dep, image_id, harness.identity("t1", roles="reader"))
        assert reader.status_code == 403
        assert download(dep, image_id, owner).content == data
        assert cached_files(dep) == [image_id]

        member = requests.get(dep.url + "/v1/cached_images", headers=owner,
                              timeout=RUN_TIMEOUT)
        assert member.status_code == 403
        admin = requests.get(dep.url + "/v1/cached_images", headers=harness.admin(),
                             timeout=RUN_TIMEOUT)
        assert admin.status_code == 200
        assert admin.json()["cached_images"][0]["hits"] == 1
    finally:
        dep.stop()


@pytest.mark.timeout(180)
def test_missing_cache_directory_serves_uncached(tmp_path: Path) -> None:
    dep = cache_deployment(tmp_path, cache_dir=tmp_path / "not-there")
    try:
        dep.start()
        data = os.urandom(70000)
        image_id = upload(dep, data)
        assert download(dep, image_id).content == data
        assert download(dep, image_id).content == data
        assert "Image cache disabled, serving images uncached" in dep.api.log()
        assert "does not exist" in dep.api.log()
        answer = requests.get(dep.url + "/v1/cached_images", timeout=RUN_TIMEOUT)
        assert answer.status_code == 503
        assert "The image cache is disabled" in answer.text
        assert not (tmp_path / "not-there").exists()
    finally:
        dep.stop()


@pytest.mark.timeout(180)
def test_disk_error_while_caching_keeps_the_download_intact(tmp_path: Path,
                                                            web: ImageServer) -> None:
    # A file size limit makes every write past 1 MiB fail with EFBIG, like a
    # full disk, in the servers started under it (the api caches there).
    dep = cache_deployment(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, hard))
    try:
        dep.start()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    try:
        data = os.urandom(3 * 1024 * 1024)
        image_id = at_location(dep, web, "large", data)
        response = download(dep, image_id)
        assert response.status_code == 200
        assert hashlib.md5(response.content).hexdigest() == hashlib.md5(data).hexdigest()
        assert cached_files(dep) == []
        assert files_in(dep, "incomplete") == [] and files_in(dep, "invalid") == []
        assert "Cannot write image %s into the cache" % image_id in dep.api.log()
    finally:
        dep.stop()
