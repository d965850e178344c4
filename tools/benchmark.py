#!/usr/bin/env python3
"""Benchmark glance-api on the embedded defaults against nginx, in one run.

Starts glance-registry and glance-api (SQLite, file store, workers = 1) and
an nginx from Debian's packages on loopback, then measures:

- a 1 GiB upload and download (nginx: WebDAV PUT and a static GET),
- 16 concurrent downloads of a 256 MiB image,
- peak RSS of glance-api + glance-registry while moving a big image,
  against their idle RSS,
- create / HEAD / list / delete operations per second at concurrency 1
  and 16, counting errors,
- this machine's single-core md5 rate (the ceiling of a checksummed
  upload), and nginx taking the same upload from ``curl -T``: the client
  sends with sendfile(2), so it is not what limits nginx,
- a Range read (v1 and v2) of the last MiB of the RSS image against a whole 1 MiB
  image, and, through an api with the image cache, a miss (filled while
  served) and hits against uncached downloads,
- the same transfers and operations through the v2 API (a JSON create,
  then ``PUT .../file``; show is ``GET /v2/images/<id>``);
- with ``--rbd`` (and ``CEPH_CONF``, ``CEPH_USER``, ``CEPH_POOL`` as
  tools/backends/start-ceph.sh prints them), a 1 GiB upload and download
  through the RBD store against ``rbd import`` / ``rbd export`` of the same
  bytes on the same cluster (the store's ceiling), and peak RSS while
  moving a big image through it.

Each transfer runs ``--repeat`` times (3) on each side, glance and nginx
taking turns, and prints the median MiB/s of each and their ratio: on a
shared machine one sample of either can be off by a third. Usage:
python tools/benchmark.py [--size-mib 1024] [--rss-mib 4096] [--repeat 3] [--rbd]
[--rbd-only | --uploads-only]
(needs nginx: apt-get install nginx-light).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.functional import harness  # noqa: E402

MIB = 1024 * 1024
BLOCK = os.urandom(MIB)
READ = MIB
# Uploads are sent from this file with sendfile(2): the client must cost
# far less than the server it measures, or nginx looks as slow as Python.
SOURCE: Path | None = None

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {state}/nginx.pid;
error_log {state}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    client_max_body_size 0;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {state}/www;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
    }}
}}
"""


# -- clients ------------------------------------------------------------------
def make_source(base: Path, size: int) -> None:
    """Write the upload source file (random, so no layer can compress it)."""
    global SOURCE
    SOURCE = base / "source.bin"
    with open(SOURCE, "wb") as out:
        for _ in range(size // MIB):
            out.write(BLOCK)
        out.write(BLOCK[:size % MIB])


def upload(host: str, port: int, method: str, path: str, size: int,
           headers: dict[str, str]) -> tuple[int, bytes]:
    assert SOURCE is not None
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.putrequest(method, path)
    for name, value in dict(headers, **{"Content-Length": str(size)}).items():
        conn.putheader(name, value)
    conn.endheaders()
    # Bodies larger than the source file send it again from the start.
    length = SOURCE.stat().st_size
    remaining = size
    with open(SOURCE, "rb") as source:
        while remaining:
            remaining -= conn.sock.sendfile(source, 0, min(remaining, length))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def download(host: str, port: int, path: str,
             headers: dict[str, str] | None = None, status: int = 200) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    assert response.status == status, (response.status, response.read()[:200])
    # One buffer for the whole body: no allocation per chunk.
    buf = memoryview(bytearray(READ))
    total = 0
    while count := response.readinto(buf):
        total += count
    conn.close()
    return total


def curl_upload(port: int, size: int) -> float | None:
    """Seconds for ``curl -T`` to PUT the source file to nginx; None without curl."""
    curl = shutil.which("curl")
    if curl is None or SOURCE is None or size != SOURCE.stat().st_size:
        return None
    seconds, done = timed(subprocess.run, [
        curl, "-sS", "-o", "/dev/null", "-T", str(SOURCE),
        "http://127.0.0.1:%d/curl" % port])
    return seconds if done.returncode == 0 else None


def md5_rate(seconds: float = 1.0) -> float:
    """This machine's single-core md5 rate in MiB/s: the ceiling of an
    upload that hashes every byte once on one core."""
    md5 = hashlib.md5(usedforsecurity=False)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        md5.update(BLOCK)
        done += 1
    return done / (time.perf_counter() - start)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


# -- servers --------------------------------------------------------------------
class Nginx:
    def __init__(self, base: Path) -> None:
        self.state = base / "nginx"
        (self.state / "www").mkdir(parents=True)
        self.port = harness.free_port()
        conf = self.state / "nginx.conf"
        # As root, nginx's workers would drop to nobody and fail to write here.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(state=self.state, port=self.port, user=user))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen([binary, "-c", str(conf)],
                                        stderr=subprocess.DEVNULL)
        harness.wait_until(self._ready, 20, message="nginx")

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            return False

    def delete(self, path: str) -> None:
        """WebDAV DELETE of ``path`` (gone already is fine)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("DELETE", path)
        status = conn.getresponse().status
        conn.close()
        assert status in (204, 404), status

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(20)


def proc_files(pids: list[int], name: str) -> list[str]:
    """/proc/<pid>/<name> of ``pids`` and their children (those still there)."""
    texts = []
    for pid in pids:
        for task in [pid] + children(pid):
            try:
                with open("/proc/%d/%s" % (task, name)) as proc:
                    texts.append(proc.read())
            except OSError:
                pass
    return texts


def rss_kib(pids: list[int]) -> int:
    return sum(int(line.split()[1]) for text in proc_files(pids, "status")
               for line in text.splitlines() if line.startswith("VmRSS:"))


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by ``pids`` and their children."""
    ticks = 0
    for text in proc_files(pids, "stat"):
        fields = text.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuCount:
    """CPU seconds per GiB of the servers over the transfers it wraps: a
    figure a busy machine disturbs far less than MiB/s."""

    def __init__(self, pids: list[int], size: int) -> None:
        self.pids, self.size = pids, size
        self.samples: list[float] = []

    def wrap(self, transfer: Callable[[], float]) -> Callable[[], float]:
        def counted() -> float:
            before = cpu_seconds(self.pids)
            seconds = transfer()
            self.samples.append((cpu_seconds(self.pids) - before) * 1024 * MIB / self.size)
            return seconds
        return counted

    def report(self, label: str) -> None:
        print("%-34s %12.2f" % (label, statistics.median(self.samples)))
        self.samples.clear()


class PeakSampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pids))
            time.sleep(0.05)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


# -- measurements ------------------------------------------------------------------
IMAGE_HEADERS = {"Content-Type": "application/octet-stream",
                 "x-image-meta-disk_format": "raw",
                 "x-image-meta-container_format": "bare"}


def glance_upload(api_port: int, size: int, name: str) -> tuple[float, str]:
    seconds, (status, body) = timed(upload, "127.0.0.1", api_port, "POST", "/v1/images",
                                    size, dict(IMAGE_HEADERS, **{"x-image-meta-name": name}))
    assert status == 201, body[:300]
    return seconds, json.loads(body)["image"]["id"]


def glance_upload_v2(api_port: int, size: int, name: str) -> tuple[float, str]:
    """Seconds of the data PUT (the JSON create before it is not timed)."""
    conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
    conn.request("POST", "/v2/images", body=json.dumps(
        {"name": name, "disk_format": "raw", "container_format": "bare"}),
        headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 201, body[:300]
    image_id = json.loads(body)["id"]
    seconds, (status, body) = timed(upload, "127.0.0.1", api_port, "PUT",
                                    "/v2/images/%s/file" % image_id, size,
                                    {"Content-Type": "application/octet-stream"})
    assert status == 204, body[:300]
    return seconds, image_id


# Per API: how each operation is asked for, and the status that means done.
V1_OPERATIONS = {
    "create": ("POST", "/v1/images", {"x-image-meta-name": "op"}, None, 201),
    "HEAD": ("HEAD", "/v1/images/%s", {}, None, 200),
    # The images just created are private: is_public=none lists them (the
    # caller is admin), full documents as v2's list and glanceclient's.
    "list": ("GET", "/v1/images/detail?is_public=none&limit=25", {}, None, 200),
    "delete": ("DELETE", "/v1/images/%s", {}, None, 200),
}
V2_OPERATIONS = {
    "create": ("POST", "/v2/images", {"Content-Type": "application/json"},
               b'{"name": "op"}', 201),
    "show": ("GET", "/v2/images/%s", {}, None, 200),
    "list": ("GET", "/v2/images?limit=25", {}, None, 200),
    "delete": ("DELETE", "/v2/images/%s", {}, None, 204),
}


def operations(api_port: int, concurrency: int, count: int,
               kinds: dict = V1_OPERATIONS) -> dict[str, tuple[float, int]]:
    """Operations per second and errors for create, HEAD (show), list, delete."""
    local = threading.local()

    def conn() -> http.client.HTTPConnection:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
        return local.conn

    def call(method: str, path: str, headers: dict[str, str],
             body: bytes | None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                c = conn()
                c.request(method, path, body=body, headers=headers)
                response = c.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                local.__dict__.pop("conn", None)
                if attempt:
                    return 599, b""
        return 599, b""

    ids: list[str] = []
    results: dict[str, tuple[float, int]] = {}

    def operation(name: str) -> Callable[[int], bool]:
        method, path, headers, body, done = kinds[name]

        def run(i: int) -> bool:
            target = path % ids[i % len(ids)] if "%s" in path else path
            status, answer = call(method, target, headers, body)
            if name == "create" and status == done:
                created = json.loads(answer)
                ids.append(created.get("image", created)["id"])
            return status == done
        return run

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for name in kinds:
            n = len(ids) if name == "delete" else count
            start = time.perf_counter()
            ok = list(pool.map(operation(name), range(n)))
            elapsed = time.perf_counter() - start
            results[name] = (n / elapsed, ok.count(False))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="single transfer size")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--rss-mib", type=int, default=4096, help="image moved for the RSS figure")
    parser.add_argument("--ops", type=int, default=400, help="operations per kind")
    parser.add_argument("--repeat", type=int, default=3,
                        help="transfers per side; the median is reported")
    parser.add_argument("--rbd", action="store_true",
                        help="also the RBD store against the rbd CLI (CEPH_* variables)")
    parser.add_argument("--rbd-only", action="store_true", help="only the RBD figures")
    parser.add_argument("--uploads-only", action="store_true",
                        help="only the md5 rate and the uploads (RBD's too with --rbd)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="glance-bench-"))
    api_options: dict[str, dict] = {"DEFAULT": {"workers": 1}}
    rbd_cli = None
    if args.rbd or args.rbd_only:
        rbd_cli = RbdCli(os.environ)
        api_options["glance_store"] = dict(harness.RbdStore(os.environ).options(),
                                           stores=["file", "http", "rbd"])
    make_source(base, args.size_mib * MIB)
    dep = harness.Deployment(base, api_flavor=None, registry_flavor=None,
                             api_options=api_options,
                             registry_options={"DEFAULT": {"workers": 1}})
    nginx = None
    try:
        dep.start()
        if rbd_cli is not None:
            rbd_figures(dep, rbd_cli, args)
            if args.rbd_only:
                return 0
        nginx = Nginx(base)
        api = dep.api.port
        size = args.size_mib * MIB
        print("glance_clone benchmark: loopback, SQLite, file store, workers = 1")
        print("single-core md5: %.0f MiB/s" % md5_rate())
        print("transfers: median of %d, glance and nginx taking turns" % args.repeat)
        print("%-34s %12s %12s %8s" % ("transfer", "glance MiB/s", "nginx MiB/s", "ratio"))

        ids: list[str] = []

        def glance_up() -> float:
            seconds, image_id = glance_upload(api, size, "big")
            ids.append(image_id)
            return seconds

        def nginx_up() -> float:
            # Untimed, as glance's side deletes its last upload (recycling).
            nginx.delete("/big")
            seconds, (status, _) = timed(upload, "127.0.0.1", nginx.port, "PUT", "/big",
                                         size, {})
            assert status in (201, 204), status
            return seconds

        cpu = CpuCount([dep.api.process.pid, dep.registry.process.pid], size)
        report("upload %d MiB (md5+sha512)" % args.size_mib, size,
               *paired(recycling(api, ids, cpu.wrap(glance_up)), nginx_up, args.repeat))
        cpu.report("  glance CPU s/GiB")
        curl_s = curl_upload(nginx.port, size)
        if curl_s is not None:
            print("%-34s %12s %12.0f" % ("nginx upload by curl -T", "", size / MIB / curl_s))
        if args.uploads_only:
            def glance_up_v2_only() -> float:
                seconds, image_id = glance_upload_v2(api, size, "big-v2")
                ids.append(image_id)
                return seconds

            report("v2 upload %d MiB (md5+sha512)" % args.size_mib, size,
                   *paired(recycling(api, ids, cpu.wrap(glance_up_v2_only)),
                           nginx_up, args.repeat))
            cpu.report("  glance CPU s/GiB")
            return 0

        def glance_down() -> float:
            seconds, got = timed(download, "127.0.0.1", api, "/v1/images/%s" % ids[0])
            assert got == size
            return seconds

        def nginx_down() -> float:
            seconds, got = timed(download, "127.0.0.1", nginx.port, "/big")
            assert got == size
            return seconds

        report("download %d MiB" % args.size_mib, size,
               *paired(glance_down, nginx_down, args.repeat))

        stream_size = args.stream_mib * MIB
        _, stream_id = glance_upload(api, stream_size, "streams")
        upload("127.0.0.1", nginx.port, "PUT", "/streams", stream_size, {})
        report("%d x %d MiB downloads" % (args.streams, args.stream_mib),
               stream_size * args.streams, *paired(
                   lambda: parallel(args.streams, "127.0.0.1", api,
                                    "/v1/images/%s" % stream_id),
                   lambda: parallel(args.streams, "127.0.0.1", nginx.port, "/streams"),
                   args.repeat))

        v2_ids: list[str] = []

        def glance_up_v2() -> float:
            seconds, image_id = glance_upload_v2(api, size, "big-v2")
            v2_ids.append(image_id)
            return seconds

        report("v2 upload %d MiB (md5+sha512)" % args.size_mib, size,
               *paired(recycling(api, v2_ids, glance_up_v2), nginx_up, args.repeat))

        def glance_down_v2() -> float:
            seconds, got = timed(download, "127.0.0.1", api,
                                 "/v2/images/%s/file" % v2_ids[0])
            assert got == size
            return seconds

        report("v2 download %d MiB" % args.size_mib, size,
               *paired(glance_down_v2, nginx_down, args.repeat))
        report("v2 %d x %d MiB downloads" % (args.streams, args.stream_mib),
               stream_size * args.streams, *paired(
                   lambda: parallel(args.streams, "127.0.0.1", api,
                                    "/v2/images/%s/file" % stream_id),
                   lambda: parallel(args.streams, "127.0.0.1", nginx.port, "/streams"),
                   args.repeat))

        pids = [dep.api.process.pid, dep.registry.process.pid]
        idle = rss_kib(pids)
        sampler = PeakSampler(pids)
        sampler.start()
        _, rss_id = glance_upload(api, args.rss_mib * MIB, "rss")
        download("127.0.0.1", api, "/v1/images/%s" % rss_id)
        peak = sampler.stop()
        print("\nRSS api+registry: idle %.1f MiB, peak while moving %d MiB up and down "
              "%.1f MiB (+%.1f MiB)" % (idle / 1024, args.rss_mib, peak / 1024,
                                      (peak - idle) / 1024))

        # A resumed download: the last MiB of the big image against a whole
        # 1 MiB image; both are one store open and 1 MiB sent.
        _, small_id = glance_upload(api, MIB, "small")
        for label, path in (("v1", "/v1/images/%s"), ("v2", "/v2/images/%s/file")):
            last_mib, whole_mib = [], []
            for _ in range(max(3, args.repeat)):
                last_mib.append(timed(download, "127.0.0.1", api, path % rss_id,
                                      {"Range": "bytes=-%d" % MIB}, 206)[0])
                whole_mib.append(timed(download, "127.0.0.1", api, path % small_id)[0])
            last_s, whole_s = statistics.median(last_mib), statistics.median(whole_mib)
            print("%s Range: last MiB of %d MiB %.1f ms, whole 1 MiB image %.1f ms (%.1fx)"
                  % (label, args.rss_mib, last_s * 1000, whole_s * 1000, last_s / whole_s))

        cache_figures(base, api, ids[0], size, args.repeat)

        print("\n%-10s %12s %8s %12s %8s" % ("operation", "ops/s c=1", "errors",
                                             "ops/s c=16", "errors"))
        for label, kinds in (("v1", V1_OPERATIONS), ("v2", V2_OPERATIONS)):
            one = operations(api, 1, args.ops, kinds)
            many = operations(api, 16, args.ops, kinds)
            for name in one:
                print("%-10s %12.0f %8d %12.0f %8d" % (
                    "%s %s" % (label, name), one[name][0], one[name][1],
                    many[name][0], many[name][1]))
    finally:
        if nginx is not None:
            nginx.stop()
        dep.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


class RbdCli:
    """``rbd import`` / ``rbd export`` on the store's cluster, as its user."""

    def __init__(self, environ: dict[str, str] | os._Environ) -> None:
        missing = [n for n in ("CEPH_CONF", "CEPH_USER", "CEPH_POOL") if not environ.get(n)]
        if missing:
            sys.exit("--rbd needs %s (eval \"$(bash tools/backends/start-ceph.sh)\")"
                     % ", ".join(missing))
        self.conf, self.user = environ["CEPH_CONF"], environ["CEPH_USER"]
        self.pool = environ["CEPH_POOL"]

    def run(self, *args: str, stdout: int | None = subprocess.DEVNULL) -> None:
        subprocess.run(["rbd", "-c", self.conf, "--id", self.user, *args], check=True,
                       stdout=stdout, stderr=subprocess.PIPE, timeout=600)

    def import_(self, source: Path, name: str, object_size: str) -> float:
        return timed(self.run, "import", "--no-progress", "--object-size", object_size,
                     str(source), "%s/%s" % (self.pool, name))[0]

    def export(self, name: str) -> float:
        return timed(self.run, "export", "--no-progress", "%s/%s" % (self.pool, name),
                     "-")[0]

    def remove(self, name: str) -> None:
        self.run("rm", "--no-progress", "%s/%s" % (self.pool, name))


def rbd_figures(dep: harness.Deployment, cli: RbdCli, args: argparse.Namespace) -> None:
    """glance through the RBD store against the rbd CLI, and RSS through it."""
    api, size = dep.api.port, args.size_mib * MIB
    pids = [dep.api.process.pid, dep.registry.process.pid]
    fresh = rss_kib(pids)
    # The CLI reads the same bytes as glance receives, from memory.
    source = Path(tempfile.mkdtemp(prefix="glance-bench-", dir="/dev/shm")) / "image"
    with open(source, "wb") as out:
        for _ in range(args.size_mib):
            out.write(BLOCK)
    headers = dict(IMAGE_HEADERS, **{"x-image-meta-store": "rbd"})
    ids: list[str] = []
    names: list[str] = []
    try:
        print("RBD store (pool %s): median of %d, glance and the rbd CLI taking turns"
              % (cli.pool, args.repeat))
        print("%-34s %12s %12s %8s" % ("transfer", "glance MiB/s", "rbd MiB/s", "ratio"))

        def glance_up() -> float:
            seconds, (status, body) = timed(upload, "127.0.0.1", api, "POST", "/v1/images",
                                            size, dict(headers, **{"x-image-meta-name": "rbd"}))
            assert status == 201, body[:300]
            ids.append(json.loads(body)["image"]["id"])
            return seconds

        def cli_up() -> float:
            names.append("bench-%d" % len(names))
            return cli.import_(source, names[-1], "8M")

        cpu = CpuCount(pids, size)
        report("upload %d MiB (vs rbd import)" % args.size_mib, size,
               *paired(cpu.wrap(glance_up), cli_up, args.repeat))
        cpu.report("  glance CPU s/GiB")
        if args.uploads_only:
            return

        def glance_down() -> float:
            seconds, got = timed(download, "127.0.0.1", api, "/v1/images/%s" % ids[0])
            assert got == size
            return seconds

        report("download %d MiB (vs rbd export)" % args.size_mib, size,
               *paired(glance_down, lambda: cli.export(names[0]), args.repeat))
        # Room for the big image: a one-OSD test cluster is 10 GiB.
        for image_id in ids:
            delete_image(api, image_id)
        for name in names:
            cli.remove(name)
        ids.clear()
        names.clear()

        idle = rss_kib(pids)
        sampler = PeakSampler(pids)
        sampler.start()
        seconds, (status, body) = timed(upload, "127.0.0.1", api, "POST", "/v1/images",
                                        args.rss_mib * MIB,
                                        dict(headers, **{"x-image-meta-name": "rss"}))
        assert status == 201, body[:300]
        ids.append(json.loads(body)["image"]["id"])
        download("127.0.0.1", api, "/v1/images/%s" % ids[-1])
        peak = sampler.stop()
        print("RSS api+registry: %.1f MiB at start, %.1f MiB after the transfers above, "
              "peak while moving %d MiB through RBD up and down %.1f MiB (+%.1f MiB over "
              "the start)\n" % (fresh / 1024, idle / 1024, args.rss_mib, peak / 1024,
                                (peak - fresh) / 1024))
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)
        for image_id in ids:
            delete_image(api, image_id)
        for name in names:
            cli.remove(name)


def recycling(api_port: int, uploaded: list[str],
              transfer: Callable[[], float]) -> Callable[[], float]:
    """``transfer`` (an upload that appends its image id to ``uploaded``)
    after deleting the images uploaded before, untimed, as nginx's side
    deletes /big before its PUT: each side's next file reuses the page
    cache its last one freed. (On a VM with free memory, writing pages the
    host must hand over first costs several times the CPU of rewriting
    freed ones; a side whose files pile up would measure that, not its
    server.)"""
    def recycled() -> float:
        while uploaded:
            delete_image(api_port, uploaded.pop())
        return transfer()
    return recycled


def delete_image(api_port: int, image_id: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=120)
    conn.request("DELETE", "/v1/images/%s" % image_id)
    conn.getresponse().read()
    conn.close()


def cache_figures(base: Path, plain_api: int, plain_id: str, size: int,
                  repeat: int) -> None:
    """Cache hits and misses of an api with the image cache, against
    uncached downloads from the plain one, taking turns."""
    cache_dir = base / "cache"
    cache_dir.mkdir()
    cached = harness.Deployment(base / "cached", api_flavor="cachemanagement",
                                api_options={"DEFAULT": {"workers": 1,
                                                         "image_cache_dir": str(cache_dir)}},
                                registry_options={"DEFAULT": {"workers": 1}})
    try:
        cached.start()
        api = cached.api.port
        _, image_id = glance_upload(api, size, "cached")

        def uncached() -> float:
            seconds, got = timed(download, "127.0.0.1", plain_api, "/v1/images/%s" % plain_id)
            assert got == size
            return seconds

        def miss() -> float:
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
            conn.request("DELETE", "/v1/cached_images/%s" % image_id)
            conn.getresponse().read()
            conn.close()
            seconds, got = timed(download, "127.0.0.1", api, "/v1/images/%s" % image_id)
            assert got == size
            return seconds

        def hit() -> float:
            seconds, got = timed(download, "127.0.0.1", api, "/v1/images/%s" % image_id)
            assert got == size
            return seconds

        print("\n%-34s %12s %12s %8s" % ("image cache", "cache MiB/s", "uncached", "ratio"))
        report("miss: fill while serving", size, *paired(miss, uncached, repeat))
        report("hit", size, *paired(hit, uncached, repeat))
    finally:
        cached.stop()


def paired(glance: Callable[[], float], nginx: Callable[[], float],
           repeat: int) -> tuple[float, float]:
    """Median seconds of each side, run alternately so that both meet the
    same moments of a noisy machine."""
    glance_s, nginx_s = [], []
    for _ in range(max(1, repeat)):
        glance_s.append(glance())
        nginx_s.append(nginx())
    return statistics.median(glance_s), statistics.median(nginx_s)


def parallel(streams: int, host: str, port: int, path: str) -> float:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda _: download(host, port, path), range(streams)))
    return time.perf_counter() - start


def report(label: str, size: int, glance_s: float, nginx_s: float) -> None:
    g = size / MIB / glance_s
    n = size / MIB / nginx_s
    print("%-34s %12.0f %12.0f %7.2fx" % (label, g, n, g / n))


if __name__ == "__main__":
    sys.exit(main())
