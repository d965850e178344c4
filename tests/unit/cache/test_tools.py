"""The four cache commands' main(): output, exit codes, options."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from glance_clone.cache.image_cache import ImageCache
from glance_clone.cmd import cache_cleaner, cache_manage, cache_prefetcher, cache_pruner
from tests.unit.cache.conftest import cache_conf

pytestmark = pytest.mark.timeout(30)


class FakeApi:
    """A glance-api stand-in answering the cache routes with canned replies."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = fake.replies.get((self.command, self.path), (404, None))
                data = b"" if payload is None and status == 404 else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def args(self, *extra: str) -> list[str]:
        return ["-H", "127.0.0.1", "-p", str(self.port), *extra]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The tools' main() points the root logger at their log file; undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


def test_no_arguments_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_manage.main([]) == 0
    out = capsys.readouterr().out
    assert "glance-cache-manage <command> [options] [args]" in out
    assert "delete-all-queued-images" in out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_manage.main(["frobnicate"]) == 1
    captured = capsys.readouterr()
    assert "Unknown command: frobnicate" in captured.err
    assert "Commands:" in captured.out


def test_help_for_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_manage.main(["help", "queue-image"]) == 0
    assert "glance-cache-manage queue-image <IMAGE_ID>" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["queue-image", "delete-cached-image",
                                     "delete-queued-image"])
def test_commands_taking_one_id(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_manage.main([command]) == 1
    assert "Please specify one and only ID of the image you wish to" in capsys.readouterr().out
    assert cache_manage.main([command, "a", "b", "-f"]) == 1


def test_list_cached_table(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.replies[("GET", "/v1/cached_images")] = (200, {"cached_images": [
        {"image_id": "0b7d4ab1-aaaa-bbbb-cccc-000000000001", "hits": 3,
         "last_accessed": 1700000000.25, "last_modified": 1690000000.5, "size": 12345},
        {"image_id": "0b7d4ab1-aaaa-bbbb-cccc-000000000002", "hits": 0,
         "last_accessed": 0, "last_modified": 1690000000.0, "size": 1}]})
    assert cache_manage.main(api.args("list-cached")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Found 2 cached images..."
    assert lines[1] == ("ID                                   Last Accessed (UTC) "
                        "Last Modified (UTC) Size           Hits      ")
    assert lines[2] == " ".join("-" * w for w in (36, 19, 19, 14, 10))
    assert lines[3] == ("0b7d4ab1-aaaa-bbbb-cccc-000000000001 2023-11-14T22:13:20 "
                        "2023-07-22T04:26:40          12345          3")
    assert lines[4].split()[1] == "N/A"


def test_empty_lists(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.replies[("GET", "/v1/cached_images")] = (200, {"cached_images": []})
    api.replies[("GET", "/v1/queued_images")] = (200, {"queued_images": []})
    assert cache_manage.main(api.args("list-cached")) == 0
    assert cache_manage.main(api.args("list-queued")) == 0
    assert capsys.readouterr().out == "No cached images.\nNo queued images.\n"


def test_list_queued(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.replies[("GET", "/v1/queued_images")] = (200, {"queued_images": ["q1", "q2"]})
    assert cache_manage.main(api.args("list-queued")) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Found 2 queued images...", "ID".ljust(36), "-" * 36, "q1".ljust(36), "q2".ljust(36)]


def test_mutations_confirm_unless_forced(api: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    api.replies[("PUT", "/v1/queued_images/img1")] = (200, None)
    api.replies[("DELETE", "/v1/cached_images")] = (200, {"num_deleted": 4})
    answers = iter(["n", "yes"])
    questions: list[str] = []
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or next(answers))
    assert cache_manage.main(api.args("queue-image", "img1")) == 0
    assert api.requests == []
    assert questions == ["Queue image img1 for caching? [y/N]: "]
    assert cache_manage.main(api.args("queue-image", "img1", "-v")) == 0
    assert [(m, p) for m, p, _h, _b in api.requests] == [("PUT", "/v1/queued_images/img1")]
    assert cache_manage.main(api.args("delete-all-cached-images", "--force", "--verbose")) == 0
    out = capsys.readouterr().out
    assert "Queued image img1 for caching" in out
    assert "Deleted 4 cached images" in out
    assert "Completed in " in out


def test_error_messages(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_manage.main(api.args("list-cached")) == 1
    assert capsys.readouterr().out == \
        "Cache management middleware not enabled on host 127.0.0.1\n"
    api.replies[("GET", "/v1/cached_images")] = (403, {"x": 1})
    assert cache_manage.main(api.args("list-cached")) == 1
    assert capsys.readouterr().out == "Not authorized to make this request.\n"
    api.replies[("GET", "/v1/cached_images")] = (503, {"x": 1})
    assert cache_manage.main(api.args("list-cached")) == 1
    assert capsys.readouterr().out.startswith(
        "Failed to show cached images. Got error:\n503 ")


def test_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeApi()
    port = fake.port
    fake.close()
    assert cache_manage.main(["-H", "127.0.0.1", "-p", str(port), "-f",
                              "delete-queued-image", "x"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Failed to delete the specified queued image. Got error:\n")
    assert "Error communicating with http://127.0.0.1:%d" % port in out


def test_token_and_keystone(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.replies[("GET", "/v1/queued_images")] = (200, {"queued_images": []})
    assert cache_manage.main(api.args("--os-auth-token", "tok1", "list-queued")) == 0
    assert api.requests[-1][2]["X-Auth-Token"] == "tok1"
    api.replies[("POST", "/v2.0/tokens")] = (200, {"access": {"token": {"id": "tok2"}}})
    keystone = "http://127.0.0.1:%d/v2.0" % api.port
    assert cache_manage.main(api.args("--os-auth-url", keystone, "--os-username", "u",
                                      "--os-password", "p", "--os-tenant-name", "t",
                                      "list-queued")) == 0
    method, path, _headers, body = api.requests[-2]
    assert (method, path) == ("POST", "/v2.0/tokens")
    assert json.loads(body) == {"auth": {"passwordCredentials": {"username": "u", "password": "p"},
                                         "tenantName": "t"}}
    assert api.requests[-1][2]["X-Auth-Token"] == "tok2"


# -- pruner, cleaner, prefetcher -------------------------------------------------------
def write_conf(tmp_path: pathlib.Path, **options: Any) -> str:
    path = tmp_path / "glance-cache.conf"
    lines = ["[DEFAULT]"] + ["%s = %s" % item for item in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fill_cache(cache_dir: pathlib.Path, sizes: dict[str, int]) -> ImageCache:
    cache = ImageCache(cache_conf(cache_dir))
    for accessed, (image_id, size) in enumerate(sizes.items()):
        data = os.urandom(size)
        fd = os.open(cache.layout.incomplete(image_id), os.O_RDWR | os.O_CREAT)
        os.write(fd, data)
        cache.admit(image_id, fd, size, hashlib.md5(data).hexdigest())
        cache.driver.record_hit(image_id, fd, 1000.0 + accessed)
        os.close(fd)
    return cache


def test_pruner_main(tmp_path: pathlib.Path, cache_dir: pathlib.Path) -> None:
    cache = fill_cache(cache_dir, {"a": 3000, "b": 3000, "c": 3000})
    conf = write_conf(tmp_path, image_cache_dir=cache_dir, image_cache_max_size=6500,
                      log_file=tmp_path / "pruner.log")
    assert cache_pruner.main(["--config-file", conf]) == 0
    assert [e.image_id for e in cache.list_cached()] == ["b", "c"]
    assert "Pruned image a" in (tmp_path / "pruner.log").read_text()


def test_cleaner_main(tmp_path: pathlib.Path, cache_dir: pathlib.Path) -> None:
    cache = ImageCache(cache_conf(cache_dir))
    pathlib.Path(cache.layout.invalid("x")).write_bytes(b"bad")
    conf = write_conf(tmp_path, image_cache_dir=cache_dir, log_file=tmp_path / "c.log")
    assert cache_cleaner.main(["--config-file", conf]) == 0
    assert os.listdir(cache.layout.subdir("invalid")) == []


def test_prefetcher_main_with_empty_queue(tmp_path: pathlib.Path,
                                          cache_dir: pathlib.Path) -> None:
    conf = write_conf(tmp_path, image_cache_dir=cache_dir, log_file=tmp_path / "p.log")
    with open(conf, "a") as handle:
        handle.write("[glance_store]\nfilesystem_store_datadir = %s\n" % (tmp_path / "images"))
    assert cache_prefetcher.main(["--config-file", conf]) == 0
    assert "No images queued" in (tmp_path / "p.log").read_text()


@pytest.mark.parametrize("main", [cache_pruner.main, cache_cleaner.main, cache_prefetcher.main])
def test_configuration_errors(main: Any, tmp_path: pathlib.Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_conf(tmp_path, log_file=tmp_path / "x.log")
    assert main(["--config-file", conf]) == 1
    assert capsys.readouterr().err == "ERROR: image_cache_dir is not set\n"
    assert main(["--config-file", str(tmp_path / "missing.conf")]) == 1
    assert capsys.readouterr().err.startswith("ERROR: ")
