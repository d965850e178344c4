#!/usr/bin/env python3
"""Start one glance-registry and N glance-api nodes on one store, locally.

    python tools/multi_node.py start STATE_DIR [--api-nodes N] [--store file|swift|s3]
                                     [--connection URL] [--flavor NAME]
                                     [--registry-port P] [--api-port P]
    python tools/multi_node.py stop STATE_DIR

``start`` writes a config folder per server under STATE_DIR, creates the
schema (glance-manage db_sync), starts the servers in the background and
waits until each answers ``/healthcheck``. Then it prints, on stdout only,

    export GLANCE_REGISTRY_URL=http://127.0.0.1:9191
    export GLANCE_API_URLS=http://127.0.0.1:9292,http://127.0.0.1:9293

so ``eval "$(python tools/multi_node.py start /tmp/glance)"`` works. Every
api node talks to the one registry and stores image data in the one store:

``file`` (default)
    the folder STATE_DIR/images, shared by the nodes (on several machines
    this would be a shared file system).
``swift``
    the container ``--container`` (default "glance"), with the credentials
    of ``SWIFT_AUTH_URL``, ``SWIFT_USER`` and ``SWIFT_KEY`` (tempauth, v1).
``s3``
    the bucket ``--bucket`` (default "glance") at ``S3_ENDPOINT_URL`` with
    ``S3_ACCESS_KEY``, ``S3_SECRET_KEY`` and ``S3_REGION``.

``tools/backends/start-swift.sh`` prints those variables. The registry's
database is ``--connection`` (default: SQLite in STATE_DIR; use a
PostgreSQL URL such as ``$PG_SQLALCHEMY_URL`` for several registries).
Ports: the registry on ``--registry-port`` (9191), api node i on
``--api-port`` + i (9292, 9293, ...); 0 picks free ports. ``--flavor``
selects the paste pipeline (default: none, callers are not authenticated;
``trusted-auth`` takes identity headers, ``keystone`` needs keystonemiddleware).

``stop`` terminates what ``start`` recorded in STATE_DIR/run (only processes
still running that state dir's configs). Logs are in STATE_DIR/*/*.log.
Exit status: 0, or 1 with ``ERROR: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ETC = ROOT / "etc"
START_DEADLINE = 60.0
STOP_DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render(sections: dict[str, dict[str, object]]) -> str:
    lines = []
    for section, options in sections.items():
        lines.append("[%s]" % section)
        lines += ["%s = %s" % (key, value) for key, value in options.items()]
        lines.append("")
    return "\n".join(lines)


def need_env(*names: str) -> dict[str, str]:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise SystemExit("ERROR: set %s (tools/backends/start-swift.sh prints them)"
                         % ", ".join(missing))
    return {n: os.environ[n] for n in names}


def store_options(args: argparse.Namespace, state: Path) -> dict[str, object]:
    options: dict[str, object] = {"filesystem_store_datadir": state / "images"}
    if args.store == "swift":
        env = need_env("SWIFT_AUTH_URL", "SWIFT_USER", "SWIFT_KEY")
        options.update(stores="file,http,swift", default_store="swift",
                       swift_store_auth_address=env["SWIFT_AUTH_URL"],
                       swift_store_user=env["SWIFT_USER"], swift_store_key=env["SWIFT_KEY"],
                       swift_store_auth_version=1, swift_store_container=args.container,
                       swift_store_create_container_on_put=True)
    elif args.store == "s3":
        env = need_env("S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY")
        options.update(stores="file,http,s3", default_store="s3",
                       s3_store_host=env["S3_ENDPOINT_URL"],
                       s3_store_access_key=env["S3_ACCESS_KEY"],
                       s3_store_secret_key=env["S3_SECRET_KEY"],
                       s3_store_region=os.environ.get("S3_REGION") or "us-east-1",
                       s3_store_bucket=args.bucket, s3_store_create_bucket_on_put=True)
    return options


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def write_server(state: Path, name: str, program: str, port: int,
                 sections: dict[str, dict[str, object]], flavor: str | None) -> Path:
    workdir = state / name
    workdir.mkdir(parents=True, exist_ok=True)
    paste = workdir / ("glance-%s-paste.ini" % program)
    paste.write_text((ETC / ("glance-%s-paste.ini" % program)).read_text())
    sections["DEFAULT"].update(bind_host="127.0.0.1", bind_port=port,
                               log_file=workdir / ("%s.log" % name))
    sections["paste_deploy"] = {"config_file": paste}
    if flavor:
        sections["paste_deploy"]["flavor"] = flavor
    conf = workdir / ("glance-%s.conf" % program)
    conf.write_text(render(sections))
    return conf


def launch(state: Path, name: str, program: str, conf: Path) -> int:
    log = open(state / name / "stderr.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "glance_clone.cmd.%s" % program, "--config-file", str(conf)],
        cwd=str(state / name), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        env=server_env(), start_new_session=True)
    (state / "run" / ("%s.pid" % name)).write_text("%d\n" % process.pid)
    return process.pid


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthcheck", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_ready(state: Path, servers: dict[str, tuple[int, str]]) -> None:
    deadline = time.monotonic() + START_DEADLINE
    waiting = dict(servers)
    while waiting:
        for name, (pid, url) in list(waiting.items()):
            if answers(url):
                del waiting[name]
            elif not alive(pid) or time.monotonic() > deadline:
                logs = sorted((state / name).glob("*.log"))
                tail = "".join(p.read_text(errors="replace")[-3000:] for p in logs)
                why = "exited" if not alive(pid) else "did not answer in %ds" % START_DEADLINE
                raise RuntimeError("%s %s; its log:\n%s" % (name, why, tail))
        time.sleep(0.1)


def start(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    (state / "run").mkdir(parents=True, exist_ok=True)
    if list((state / "run").glob("*.pid")):
        print("ERROR: %s already has servers; run stop first" % state, file=sys.stderr)
        return 1
    connection = args.connection or "sqlite:///%s" % (state / "glance.sqlite")
    registry_port = args.registry_port or free_port()
    registry_conf = write_server(state, "registry", "registry", registry_port, {
        "DEFAULT": {"workers": 0}, "database": {"connection": connection}}, args.flavor)
    sync = subprocess.run([sys.executable, "-m", "glance_clone.cmd.manage", "--config-file",
                           str(registry_conf), "db_sync"],
                          capture_output=True, text=True, env=server_env())
    if sync.returncode != 0:
        print("ERROR: db_sync failed: %s" % sync.stderr.strip(), file=sys.stderr)
        return 1
    registry_url = "http://127.0.0.1:%d" % registry_port
    servers = {"registry": (launch(state, "registry", "registry", registry_conf), registry_url)}
    glance_store = store_options(args, state)
    api_urls = []
    for node in range(1, args.api_nodes + 1):
        port = args.api_port + node - 1 if args.api_port else free_port()
        name = "api-%d" % node
        conf = write_server(state, name, "api", port, {
            "DEFAULT": {"workers": 0, "registry_host": "127.0.0.1",
                        "registry_port": registry_port,
                        "send_identity_headers": args.flavor == "trusted-auth"},
            "glance_store": dict(glance_store),
            "oslo_policy": {"policy_file": ETC / "policy.json"}}, args.flavor)
        api_urls.append("http://127.0.0.1:%d" % port)
        servers[name] = (launch(state, name, "api", conf), api_urls[-1])
    try:
        wait_ready(state, servers)
    except RuntimeError as err:
        stop(args)
        print("ERROR: %s" % err, file=sys.stderr)
        return 1
    print("export GLANCE_REGISTRY_URL=%s" % registry_url)
    print("export GLANCE_API_URLS=%s" % ",".join(api_urls))
    return 0


def stop(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    stopping = []
    for pid_file in sorted((state / "run").glob("*.pid")):
        pid = int(pid_file.read_text())
        try:
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes().decode(errors="replace")
        except FileNotFoundError:
            cmdline = ""
        # Only a process still running this state dir's config (PIDs get reused).
        if alive(pid) and str(state) in cmdline and "glance_clone.cmd." in cmdline:
            os.killpg(pid, signal.SIGTERM)
            stopping.append(pid)
        pid_file.unlink()
    deadline = time.monotonic() + STOP_DEADLINE
    for pid in stopping:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start a registry and N api nodes")
    begin.add_argument("state", help="folder for configs, logs, pids (and SQLite, images)")
    begin.add_argument("--api-nodes", type=int, default=2)
    begin.add_argument("--store", choices=("file", "swift", "s3"), default="file")
    begin.add_argument("--container", default="glance", help="Swift container")
    begin.add_argument("--bucket", default="glance", help="S3 bucket")
    begin.add_argument("--connection", help="registry database URL (default SQLite)")
    begin.add_argument("--flavor", help="paste flavor, e.g. trusted-auth or keystone")
    begin.add_argument("--registry-port", type=int, default=9191)
    begin.add_argument("--api-port", type=int, default=9292)
    end = commands.add_parser("stop", help="stop what start started")
    end.add_argument("state")
    args = parser.parse_args(argv)
    return start(args) if args.command == "start" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
