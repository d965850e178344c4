"""/v2/tasks: access, create validation, show, list, paging, schemas, and
import tasks run to the end (success and failure) against a local HTTP
server."""

from __future__ import annotations

import datetime
import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import eventlet
import pytest

from glance_clone.common.context import admin_context
from glance_clone.registry.client.v1.client import RegistryClient
from tests.support.wsgi_transport import transport_for

from .conftest import ADMIN, V2

DATA = b"0123456789" * 5000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/image":
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)
        elif self.path == "/short":
            # Promises all of DATA, sends half and hangs up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA[:len(DATA) // 2])
            self.close_connection = True
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def source() -> Iterator[str]:
    """A local HTTP server: /image answers DATA, /redirect points at a
    link-local address, anything else is a 404."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def _body(url: str, **extra: Any) -> dict:
    return {"type": "import", "input": dict({
        "import_from": url, "import_from_format": "raw",
        "image_properties": {"name": "imported", "disk_format": "raw",
                             "container_format": "bare"}}, **extra)}


def _finish(v2: V2, task_id: str) -> dict:
    """The task once its greenthread has run it to the end."""
    for _ in range(500):
        eventlet.sleep(0.01)
        task = v2.call("GET", "/tasks/" + task_id, **ADMIN).json
        if task["status"] in ("success", "failure"):
            return task
    raise AssertionError("task %s never finished" % task_id)


def test_import_task_creates_and_activates_the_image(v2: V2, source: str) -> None:
    res = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN)
    assert res.status_int == 201, res.text
    task = res.json
    assert task["status"] == "pending" and task["result"] is None
    assert task["message"] == "" and "expires_at" not in task
    assert res.headers["Location"] == "http://localhost/v2/tasks/" + task["id"]
    done = _finish(v2, task["id"])
    assert done["status"] == "success", done
    assert done["expires_at"].endswith("Z")
    image = v2.call("GET", "/images/" + done["result"]["image_id"], **ADMIN).json
    assert (image["status"], image["size"], image["name"]) == ("active", len(DATA),
                                                               "imported")
    data = v2.call("GET", "/images/%s/file" % image["id"], **ADMIN)
    assert data.body == DATA


@pytest.mark.parametrize("path, text, protected", [
    ("/missing", "could not find image", False),
    ("/redirect", "External sources are not supported", False),
    # Asked-for protection does not keep the image of a failed task.
    ("/missing", "could not find image", True),
])
def test_failed_import_fails_the_task_and_deletes_the_image(
        v2: V2, source: str, path: str, text: str, protected: bool) -> None:
    body = _body(source + path)
    body["input"]["image_properties"]["protected"] = protected
    task = v2.call("POST", "/tasks", body, **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "failure" and done["result"] is None
    assert text in done["message"], done["message"]
    assert v2.call("GET", "/images/" + done["image_id"], **ADMIN).status_int == 404
    images = v2.call("GET", "/images", **ADMIN).json["images"]
    assert [i for i in images if i["name"] == "imported"] == []
    assert v2.stack.stored_files() == []


def test_an_import_failing_mid_upload_deletes_its_image_and_data(
        v2_with: Any, source: str) -> None:
    v2 = v2_with({"image_size_cap": 1000})
    task = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "failure", done
    assert v2.call("GET", "/images/" + done["image_id"], **ADMIN).status_int == 404
    assert v2.stack.stored_files() == []


def _work_stack(v2_with: Any, tmp_path: Any, **overrides: Any) -> tuple[V2, Any]:
    work = tmp_path / "work"
    work.mkdir()
    return v2_with(dict({"task.work_dir": str(work)}, **overrides)), work


def test_with_a_work_dir_the_data_passes_through_a_file_removed_after(
        v2_with: Any, tmp_path: Any, source: str) -> None:
    v2, work = _work_stack(v2_with, tmp_path)
    task = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "success", done
    image_id = done["result"]["image_id"]
    assert v2.call("GET", "/images/%s/file" % image_id, **ADMIN).body == DATA
    assert list(work.iterdir()) == []
    # A work_dir that became unusable after the start: a failure saying so.
    work.rmdir()
    work.write_text("not a directory")
    task = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "failure", done
    assert "Could not write the import's work file in [task] work_dir" in done["message"]
    assert v2.call("GET", "/images/" + done["image_id"], **ADMIN).status_int == 404


def test_conversion_format_converts_the_imported_image(
        v2_with: Any, tmp_path: Any, source: str) -> None:
    v2, work = _work_stack(v2_with, tmp_path,
                           **{"taskflow_executor.conversion_format": "qcow2"})
    task = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "success", done
    image = v2.call("GET", "/images/" + done["result"]["image_id"], **ADMIN).json
    assert (image["status"], image["disk_format"]) == ("active", "qcow2")
    # qemu-img rounds the disk up to whole 512-byte sectors.
    assert image["virtual_size"] == -(-len(DATA) // 512) * 512
    data = v2.call("GET", "/images/%s/file" % image["id"], **ADMIN).body
    assert data[:4] == b"QFI\xfb" and len(data) == image["size"]
    assert list(work.iterdir()) == []


def test_a_refused_conversion_fails_the_task_and_leaves_nothing(
        v2_with: Any, tmp_path: Any, source: str) -> None:
    v2, work = _work_stack(v2_with, tmp_path,
                           **{"taskflow_executor.conversion_format": "raw"})
    body = _body(source + "/image")
    # Declared qcow2, the data is not: the inspection refuses it.
    body["input"]["image_properties"]["disk_format"] = "qcow2"
    task = v2.call("POST", "/tasks", body, **ADMIN).json
    done = _finish(v2, task["id"])
    assert done["status"] == "failure", done
    assert "qcow2" in done["message"] and "Internal Error" not in done["message"]
    assert v2.call("GET", "/images/" + done["image_id"], **ADMIN).status_int == 404
    assert list(work.iterdir()) == [] and v2.stack.stored_files() == []


@pytest.mark.parametrize("work_dir, fmt, text", [
    ("work", "qcow3", "conversion_format = qcow3 is no format imports convert to"),
    (None, "qcow2", "conversion_format needs [task] work_dir"),
    ("missing", None, "is not a directory glance-api may write"),
    ("staging", None, "is the staging directory of node_staging_uri"),
    ("relative/dir", None, "must be an absolute path"),
])
def test_bad_task_work_options_stop_the_api_saying_what_to_change(
        tmp_path: Any, work_dir: str | None, fmt: str | None, text: str) -> None:
    from glance_clone.common import exception
    from tests.support.stack import make_stack

    (tmp_path / "work").mkdir()
    (tmp_path / "staging").mkdir()
    overrides: dict[str, Any] = {"taskflow_executor.conversion_format": fmt}
    if work_dir is not None:
        overrides["task.work_dir"] = (work_dir if work_dir.startswith("relative")
                                      else str(tmp_path / work_dir))
    with pytest.raises(exception.ConfigError) as raised:
        make_stack(tmp_path, overrides)
    assert text in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("body, text", [
    ({"input": {}}, "Task 'type' is required"),
    ({"type": "import"}, "Task 'input' is required"),
    ({"type": "conversion", "input": {}}, "does not match schema"),
    ({"type": "import", "input": {}, "bogus": 1}, "does not match schema"),
    (_body("http://127.0.0.1/x", extra=1), "unknown fields: extra"),
    ({"type": "import", "input": {"import_from": "http://127.0.0.1/x"}},
     "Input does not contain 'image_properties' field"),
    (_body("file:///etc/passwd"), "file based imports are not allowed"),
    (_body("http://169.254.169.254/x"), "External sources are not supported"),
    (_body("http://127.0.0.1/x", import_from_format="exe"), "'import_from_format'"),
    ({"type": "import", "input": {"import_from": "http://127.0.0.1/x",
                                  "import_from_format": "raw",
                                  "image_properties": {"status": "active"}}},
     "read-only"),
])
def test_bad_creates_are_refused(v2: V2, body: dict, text: str) -> None:
    res = v2.call("POST", "/tasks", body, **ADMIN)
    assert res.status_int in (400, 403), res.text
    assert text.lower() in res.text.lower(), res.text
    assert v2.call("GET", "/tasks", **ADMIN).json["tasks"] == []


def _stored_task(v2: V2, owner: str, status: str = "success", **values: Any) -> str:
    """A task written straight into the registry (no run)."""
    task_id = str(uuid.uuid4())
    client = RegistryClient(v2.stack.conf, transport=transport_for(v2.stack.registry_app),
                            base_url="http://registry")
    client.add_task(admin_context(), dict({"id": task_id, "type": "import",
                                           "status": status, "owner": owner,
                                           "input": {}}, **values))
    return task_id


def test_access_visibility_and_delete(v2: V2) -> None:
    task_id = _stored_task(v2, "t1")
    # tasks_api_access is admin-only by default.
    assert v2.call("GET", "/tasks").status_int == 403
    assert v2.call("GET", "/tasks/" + task_id).status_int == 403
    assert v2.call("POST", "/tasks", _body("http://x/")).status_int == 403
    shown = v2.call("GET", "/tasks/" + task_id, **ADMIN).json
    assert shown["owner"] == "t1" and shown["self"] == "/v2/tasks/" + task_id
    res = v2.call("DELETE", "/tasks/" + task_id, **ADMIN)
    assert res.status_int == 405 and res.headers["Allow"] == "GET"
    assert v2.call("GET", "/tasks/" + str(uuid.uuid4()), **ADMIN).status_int == 404


@pytest.mark.parametrize("raw", [b"{not json", b'{"type": "import"}', b"[1, 2]",
                                 b'{"type": "import", "input": {}, "bogus": 1}'])
def test_access_is_refused_before_the_body_is_read(v2: V2, raw: bytes) -> None:
    res = v2.call("POST", "/tasks", raw=raw, content_type="application/json")
    assert res.status_int == 403, res.text
    assert "tasks_api_access" in res.text, res.text
    # The query of a list is not read either.
    res = v2.call("GET", "/tasks?status=bogus&limit=x&sort_dir=up")
    assert res.status_int == 403, res.text
    # An admin gets the 400 the body deserves.
    res = v2.call("POST", "/tasks", raw=raw, content_type="application/json", **ADMIN)
    assert res.status_int == 400, res.text


@pytest.mark.parametrize("accept", ["text/plain", "application/json"])
def test_delete_is_refused_saying_how_tasks_go_away(v2: V2, accept: str) -> None:
    task_id = _stored_task(v2, "t1")
    # A non-admin meets the access check first.
    assert v2.call("DELETE", "/tasks/" + task_id,
                   headers={"Accept": accept}).status_int == 403
    res = v2.call("DELETE", "/tasks/" + task_id, headers={"Accept": accept}, **ADMIN)
    assert res.status_int == 405 and res.headers["Allow"] == "GET"
    text = res.json["message"] if accept == "application/json" else res.text
    assert "Deleting a task is not permitted" in text, text
    assert "expires_at" in text, text
    assert v2.call("GET", "/tasks/" + task_id, **ADMIN).status_int == 200


def test_open_access_keeps_projects_apart(v2_with: Any, tmp_path: Any) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"tasks_api_access": ""}')
    v2 = v2_with({"oslo_policy.policy_file": str(policy_file)})
    mine = _stored_task(v2, "t1")
    theirs = _stored_task(v2, "t2")
    assert v2.call("GET", "/tasks/" + mine).status_int == 200
    assert v2.call("GET", "/tasks/" + theirs).status_int == 404
    assert [t["id"] for t in v2.call("GET", "/tasks").json["tasks"]] == [mine]
    assert v2.call("DELETE", "/tasks/" + mine).status_int == 405


def test_list_filters_sorts_and_pages(v2: V2) -> None:
    ids = [_stored_task(v2, "t1", status) for status in
           ("pending", "processing", "success", "failure")]
    res = v2.call("GET", "/tasks?limit=3&sort_key=status&sort_dir=asc", **ADMIN)
    page = res.json
    assert [t["status"] for t in page["tasks"]] == ["failure", "pending", "processing"]
    assert "input" not in page["tasks"][0] and "message" not in page["tasks"][0]
    assert page["schema"] == "/v2/schemas/tasks"
    assert "marker=" in page["next"]
    rest = v2.call("GET", page["next"][3:], **ADMIN).json
    assert [t["status"] for t in rest["tasks"]] == ["success"] and "next" not in rest
    found = v2.call("GET", "/tasks?status=success&type=import", **ADMIN).json["tasks"]
    assert [t["id"] for t in found] == [ids[2]]
    assert v2.call("GET", "/tasks?type=export", **ADMIN).json["tasks"] == []
    for query in ("status=bogus", "type=conversion", "sort_key=input", "sort_dir=up",
                  "limit=-1", "marker=not-a-uuid", "marker=" + str(uuid.uuid4())):
        assert v2.call("GET", "/tasks?" + query, **ADMIN).status_int == 400, query


def test_lists_filter_and_sort_on_every_field_of_the_record(v2: V2) -> None:
    image_id = str(uuid.uuid4())
    linked = _stored_task(v2, "t2", type="api_image_import", image_id=image_id,
                          request_id="req-1", user_id="u1")
    plain = _stored_task(v2, "t1", "failure")

    def listed(query: str) -> list[str]:
        res = v2.call("GET", "/tasks?" + query, **ADMIN)
        assert res.status_int == 200, (query, res.text)
        return [t["id"] for t in res.json["tasks"]]

    for query in ("image_id=" + image_id, "request_id=req-1", "user_id=u1",
                  "owner=t2", "id=" + linked):
        assert listed(query) == [linked], query
    assert set(listed("deleted=False")) == {linked, plain}
    assert listed("deleted=true") == []
    # A time as the view shows it (to the second) finds its task.
    shown = v2.call("GET", "/tasks/" + plain, **ADMIN).json
    assert plain in listed("created_at=" + shown["created_at"])
    assert plain in listed("status=failure&updated_at=" + shown["updated_at"])
    assert listed("created_at=2001-01-01T00:00:00Z") == []
    # Names that are no field of a task's record are ignored.
    assert set(listed("name=x&input=y&message=z")) == {linked, plain}
    for key, first in (("owner", plain), ("image_id", plain), ("user_id", plain),
                       ("request_id", plain), ("id", min(linked, plain))):
        assert listed("sort_dir=asc&sort_key=" + key)[0] == first, key
        assert listed("sort_dir=desc&sort_key=" + key)[-1] == first, key
    # Paging by a field whose value is unset for some tasks.
    page = v2.call("GET", "/tasks?limit=1&sort_key=image_id&sort_dir=asc", **ADMIN).json
    rest = v2.call("GET", page["next"][3:], **ADMIN).json
    assert [t["id"] for t in page["tasks"] + rest["tasks"]] == [plain, linked]
    for query, text in (("created_at=yesterday", "Invalid created_at value"),
                        ("deleted=maybe", "Invalid deleted value"),
                        ("sort_key=message", "Invalid sort_key value"),
                        ("sort_dir=sideways", "Invalid sort_dir value")):
        res = v2.call("GET", "/tasks?" + query, **ADMIN)
        assert res.status_int == 400 and text in res.text, (query, res.text)


def test_the_full_view_shows_the_ids_that_are_set_and_stubs_never(v2: V2) -> None:
    image_id = str(uuid.uuid4())
    full = _stored_task(v2, "t1", type="api_image_import", image_id=image_id,
                        request_id="req-1", user_id="u1")
    bare = _stored_task(v2, "t1")
    shown = v2.call("GET", "/tasks/" + full, **ADMIN).json
    assert (shown["image_id"], shown["request_id"], shown["user_id"]) == (
        image_id, "req-1", "u1")
    shown = v2.call("GET", "/tasks/" + bare, **ADMIN).json
    assert not {"image_id", "request_id", "user_id"} & set(shown)
    for stub in v2.call("GET", "/tasks", **ADMIN).json["tasks"]:
        assert not {"image_id", "request_id", "user_id", "input"} & set(stub)


def test_the_type_filter_takes_every_type_a_list_can_show(v2: V2) -> None:
    internal = {kind: _stored_task(v2, "t1", type=kind)
                for kind in ("api_image_import", "location_import")}
    _stored_task(v2, "t1")
    for kind, task_id in internal.items():
        found = v2.call("GET", "/tasks?type=" + kind, **ADMIN).json["tasks"]
        assert [t["id"] for t in found] == [task_id]
    # They pass the schema but only glance-api makes them.
    res = v2.call("POST", "/tasks", {"type": "location_import", "input": {}}, **ADMIN)
    assert res.status_int == 400 and "made by glance-api" in res.text


def test_schemas(v2: V2) -> None:
    task = v2.call("GET", "/schemas/task").json
    assert task["name"] == "task" and task["properties"]["type"]["enum"] == [
        "import", "export", "clone", "api_image_import", "location_import"]
    assert task["properties"]["status"]["enum"] == ["pending", "processing",
                                                    "success", "failure"]
    for name in ("image_id", "request_id", "user_id"):
        assert task["properties"][name]["type"] == "string"
    tasks = v2.call("GET", "/schemas/tasks").json
    items = tasks["properties"]["tasks"]["items"]["properties"]
    assert "input" not in items and "image_id" in items


def test_reaper_fails_stalled_tasks_and_deletes_their_images(v2: V2) -> None:
    import sqlalchemy as sa

    from glance_clone.db import models, session

    image = v2.create(ADMIN, name="half", disk_format="raw", container_format="bare")
    stalled = _stored_task(v2, "t1", "processing")
    fresh = _stored_task(v2, "t1", "processing")
    waiting = _stored_task(v2, "t1", "pending")
    engine = session.create_engine(v2.stack.conf.database.connection)
    hour_ago = models.utcnow() - datetime.timedelta(hours=1)
    with engine.begin() as connection:
        # One statement per row: any update sets updated_at to now.
        for task_id, image_id in ((stalled, image["id"]), (waiting, None)):
            connection.execute(sa.update(models.tasks)
                               .where(models.tasks.c.id == task_id)
                               .values(updated_at=hour_ago, image_id=image_id))
    engine.dispose()
    assert v2.stack.v2.task_reaper.reap() == 2
    for task_id in (stalled, waiting):
        task = v2.call("GET", "/tasks/" + task_id, **ADMIN).json
        assert task["status"] == "failure" and "interrupted" in task["message"]
    assert v2.call("GET", "/tasks/" + fresh, **ADMIN).json["status"] == "processing"
    assert v2.call("GET", "/images/" + image["id"], **ADMIN).status_int == 404
    assert v2.stack.v2.task_reaper.reap() == 0


def test_the_reaper_keeps_an_image_its_stalled_task_finished(v2: V2) -> None:
    """A worker that died between activating the image and recording the
    task's success: the task fails, the complete image stays."""
    import sqlalchemy as sa

    from glance_clone.db import models, session

    image = v2.create(ADMIN, name="done", disk_format="raw", container_format="bare")
    assert v2.upload(image["id"], b"complete", **ADMIN).status_int == 204
    stalled = _stored_task(v2, "t1", "processing")
    engine = session.create_engine(v2.stack.conf.database.connection)
    with engine.begin() as connection:
        connection.execute(sa.update(models.tasks).where(models.tasks.c.id == stalled)
                           .values(updated_at=models.utcnow() - datetime.timedelta(hours=1),
                                   image_id=image["id"]))
    engine.dispose()
    assert v2.stack.v2.task_reaper.reap() == 1
    assert v2.call("GET", "/images/" + image["id"], **ADMIN).json["status"] == "active"


def test_the_lease_reports_progress_and_is_lost_once_the_task_is_failed(v2: V2) -> None:
    from glance_clone.domain.task_lease import Lease, LeaseLost

    repository = v2.stack.v2.task_repository
    context = admin_context()
    task = repository.get(context, _stored_task(v2, "t1", "processing"))
    naps: list[float] = []
    lease = Lease(repository, context, task, 30.0, spawn=lambda f: f,
                  sleep=naps.append)
    chunks = [b"x" * (1024 * 1024)] * 3
    assert b"".join(lease.count(iter(chunks), 3 * 1024 * 1024)) == b"".join(chunks)
    lease.renew()
    assert repository.get(context, task["id"])["message"] == (
        "Copied 3 MiB of 3 MiB (3145728 of 3145728 bytes)")
    repository.move(context, repository.get(context, task["id"]), "failure",
                    message="reaped")
    # The heartbeat loop: one nap of the interval, a refused write, the end.
    lease._beat()
    assert naps == [30.0] and lease.lost
    with pytest.raises(LeaseLost):
        list(lease.count(iter(chunks), None))
    assert repository.get(context, task["id"])["message"] == "reaped"


def test_the_lease_is_confirmed_after_the_last_chunk(v2: V2) -> None:
    from glance_clone.domain.task_lease import Lease, LeaseLost

    repository = v2.stack.v2.task_repository
    context = admin_context()
    task = repository.get(context, _stored_task(v2, "t1", "processing"))
    lease = Lease(repository, context, task, 30.0)
    repository.move(context, task, "failure", message="reaped")
    # Not renewed since: only the read-back after the data finds out.
    with pytest.raises(LeaseLost):
        list(lease.count(iter([b"x"]), 1))


def test_the_lease_shows_progress_between_chunks_at_a_bounded_rate(v2: V2) -> None:
    from glance_clone.common import exception
    from glance_clone.domain.task_lease import Lease

    repository = v2.stack.v2.task_repository
    context = admin_context()
    task = repository.get(context, _stored_task(v2, "t1", "processing"))
    now = [0.0]
    lease = Lease(repository, context, task, 10.0, clock=lambda: now[0])
    shown: list[tuple[int, int | None]] = []

    def show(done: int, total: int | None) -> None:
        shown.append((done, total))
        if len(shown) == 1:
            raise exception.RegistryUnavailable("away")   # logged, not fatal

    def chunks():
        for step in (4.0, 4.0, 4.0, 1.0, 10.0, 0.0):
            now[0] += step
            yield b"x" * 10

    assert len(b"".join(lease.count(chunks(), 60, show=show))) == 60
    # Once the interval passed: after 12 s, then after 23 s (not at 13 s).
    assert shown == [(30, 60), (50, 60)]
