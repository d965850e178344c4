"""Interoperable import as a task: the import lock and the os_glance_*
properties, reserved properties, and the repairs of the reaper when the
node running an import died (no image left importing, nothing left in the
staging area or the store, a retry that works)."""

from __future__ import annotations

import datetime
import os

import eventlet
import pytest
import sqlalchemy as sa

from glance_clone.common.context import admin_context
from glance_clone.db import models, session

from .conftest import ADMIN, V2
from .test_import import DATA, do_import, new_image, stage, staged_files, wait_status


def _hold(v2: V2) -> list:
    """Stop imports from running: the node 'dies' right after answering 202."""
    started: list = []
    v2.stack.v2.importer.spawn = lambda run, context, task: started.append(task)
    return started


def _held_import(v2: V2) -> tuple[dict, list]:
    """A staged image whose glance-direct import was accepted, not run."""
    image = new_image(v2)
    held = _hold(v2)
    assert stage(v2, image["id"]).status_int == 204
    assert do_import(v2, image["id"]).status_int == 202
    return image, held


def _age(v2: V2, task_id: str, hours: float = 1) -> None:
    """Make the task look untouched for ``hours``."""
    engine = session.create_engine(v2.stack.conf.database.connection)
    with engine.begin() as connection:
        connection.execute(sa.update(models.tasks).where(models.tasks.c.id == task_id)
                           .values(updated_at=models.utcnow()
                                   - datetime.timedelta(hours=hours)))
    engine.dispose()


def _tasks_of(v2: V2, image_id: str) -> list[dict]:
    return [t for t in v2.stack.v2.task_repository.list(admin_context(), limit=100)
            if t.get("image_id") == image_id]


def test_an_import_is_a_task_holding_the_lock(v2: V2) -> None:
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    held = _hold(v2)
    assert do_import(v2, image["id"]).status_int == 202
    shown = v2.call("GET", "/images/" + image["id"]).json
    task = held[0]
    assert shown["status"] == "importing"
    assert shown["os_glance_import_task"] == task["id"]
    assert shown["os_glance_importing_to_stores"] == "file"
    assert (task["type"], task["status"], task["image_id"]) == (
        "api_image_import", "pending", image["id"])
    assert task["input"]["import_req"] == {"method": {"name": "glance-direct"}}
    # A second import meanwhile: 409 (the status, the lock).
    assert do_import(v2, image["id"]).status_int == 409
    v2.stack.v2.import_runner.run(admin_context(), task)
    shown = wait_status(v2, image["id"], "active")
    assert "os_glance_import_task" not in shown
    assert "os_glance_importing_to_stores" not in shown
    done = v2.stack.v2.task_repository.get(admin_context(), task["id"])
    assert done["status"] == "success" and done["result"] == {"image_id": image["id"]}
    assert staged_files(v2) == [] and len(v2.stack.stored_files()) == 1


def test_users_cannot_write_os_glance_properties(v2: V2) -> None:
    res = v2.call("POST", "/images", {"name": "x", "os_glance_import_task": "mine"})
    assert res.status_int == 403
    image = new_image(v2)
    for op in ("add", "replace", "remove"):
        res = v2.patch(image["id"], [{"op": op, "path": "/os_glance_failed_import",
                                      "value": "file"}])
        assert res.status_int == 403, (op, res.text)
    # v1 neither; and a v1 update with purge keeps what glance-api wrote.
    res = v2.stack.request("/v1/images/" + image["id"], "PUT", tenant="t1",
                           headers={"x-image-meta-property-os_glance_x": "1"})
    assert res.status_int == 403


def test_a_dead_import_is_failed_and_undone_and_can_be_retried(v2: V2) -> None:
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    held = _hold(v2)
    assert do_import(v2, image["id"]).status_int == 202
    task = held[0]
    # What the dead node left: its task claimed, a partial and a finished
    # file of the image in the store.
    repository = v2.stack.v2.task_repository
    repository.move(admin_context(), task, "processing")
    datadir = v2.stack.datadir
    os.makedirs(datadir, exist_ok=True)
    for name in (".%s.abc.partial" % image["id"], image["id"]):
        with open(os.path.join(datadir, name), "wb") as f:
            f.write(b"half")
    _age(v2, task["id"])
    assert v2.stack.v2.task_reaper.reap() == 1
    failed = repository.get(admin_context(), task["id"])
    assert failed["status"] == "failure" and "interrupted" in failed["message"]
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == "file"
    assert staged_files(v2) == [] and v2.stack.stored_files() == []
    # The retry works, and clears the failed store.
    v2.stack.v2.importer.spawn = eventlet.spawn_n
    assert stage(v2, image["id"]).status_int == 204
    assert do_import(v2, image["id"]).status_int == 202
    shown = wait_status(v2, image["id"], "active")
    assert "os_glance_failed_import" not in shown
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA


def test_a_failed_import_fails_its_task_with_the_reason(v2_with) -> None:
    v2 = v2_with({"user_storage_quota": "10B"})
    image = new_image(v2)
    assert stage(v2, image["id"], b"x" * 50).status_int == 204
    assert do_import(v2, image["id"]).status_int == 202
    wait_status(v2, image["id"], "queued")
    [task] = _tasks_of(v2, image["id"])
    assert task["status"] == "failure" and "quota" in task["message"].lower()
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == "file"


def test_a_stale_lock_is_broken_by_the_next_import(v2: V2) -> None:
    image, held = _held_import(v2)
    old = held[0]
    # Its node died after the image went back to uploading (as if an
    # operator fixed the status by hand), leaving the lock behind.
    v2.stack.v2.registry.update_image(admin_context(), image["id"],
                                      {"status": "uploading"}, from_state="importing")
    assert do_import(v2, image["id"]).status_int == 409
    _age(v2, old["id"])
    assert do_import(v2, image["id"]).status_int == 202
    stale = v2.stack.v2.task_repository.get(admin_context(), old["id"])
    assert stale["status"] == "failure" and stale["message"] == "Expired lock preempted"
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["os_glance_import_task"] == held[1]["id"]


def test_the_sweeps_repair_what_a_node_dying_between_writes_leaves(v2: V2) -> None:
    image, held = _held_import(v2)
    # The reaper failed the task, then died before reverting the image.
    repository = v2.stack.v2.task_repository
    repository.move(admin_context(), held[0], "failure", message="interrupted")
    v2.stack.v2.task_reaper.reap()
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and staged_files(v2) == []
    # Staged data nothing waits for (its image active, deleted...) goes
    # once it is old enough.
    other = new_image(v2)
    staging = v2.stack.v2.import_runner.staging
    with open(staging.path(other["id"]), "wb") as f:
        f.write(b"orphan")
    v2.stack.v2.task_reaper.reap()
    assert staged_files(v2) == [other["id"]]
    old = os.stat(staging.path(other["id"])).st_mtime - 3600
    os.utime(staging.path(other["id"]), (old, old))
    v2.stack.v2.task_reaper.reap()
    assert staged_files(v2) == []


def test_a_runner_that_lost_its_lease_undoes_nothing_of_a_later_import(v2: V2) -> None:
    image, held = _held_import(v2)
    first = held[0]
    _age(v2, first["id"])
    v2.stack.v2.task_reaper.reap()
    assert stage(v2, image["id"]).status_int == 204
    assert do_import(v2, image["id"]).status_int == 202
    # The first node wakes up and runs its task: refused, and the second
    # import's image, lock and staged data are untouched.
    v2.stack.v2.import_runner.run(admin_context(), first)
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "importing"
    assert shown["os_glance_import_task"] == held[1]["id"]
    assert staged_files(v2) == [image["id"]]


def test_an_images_tasks(v2: V2) -> None:
    from glance_clone.api.v2.tasks import ROW_KEYS

    image, held = _held_import(v2)
    res = v2.call("GET", "/images/%s/tasks" % image["id"])
    assert res.status_int == 200, res.text
    [row] = res.json["tasks"]
    assert set(row) == set(ROW_KEYS)
    assert (row["id"], row["type"], row["status"], row["deleted"]) == (
        held[0]["id"], "api_image_import", "pending", False)
    assert row["input"]["image_id"] == image["id"] and "." in row["created_at"]
    # Another project's private image: not found; an admin sees its tasks.
    assert v2.call("GET", "/images/%s/tasks" % image["id"], tenant="t2").status_int == 404
    admin = v2.call("GET", "/images/%s/tasks" % image["id"], **ADMIN).json
    assert [t["id"] for t in admin["tasks"]] == [held[0]["id"]]
    assert v2.call("GET", "/images/%s/tasks" % new_image(v2)["id"]).json == {"tasks": []}
    assert v2.call("GET", "/images/00000000-0000-0000-0000-000000000000/tasks"
                   ).status_int == 404
    assert v2.call("POST", "/images/%s/tasks" % image["id"]).status_int == 405


def test_import_progress_in_the_task_and_on_the_image(v2: V2) -> None:
    from glance_clone.domain.task_lease import Lease

    image, held = _held_import(v2)
    runner = v2.stack.v2.import_runner
    context = admin_context()
    task = v2.stack.v2.task_repository.move(context, held[0], "processing")
    lease = Lease(runner.repository, context, task, 1.0,
                  report=lambda done, total: runner._show_progress(
                      context, image["id"], done, total))
    lease.done, lease.total = 3 * 1024 * 1024, 8 * 1024 * 1024
    lease.renew()
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert (shown["os_glance_import_copied"], shown["os_glance_import_size"]) == (
        str(3 * 1024 * 1024), str(8 * 1024 * 1024))
    message = runner.repository.get(context, task["id"])["message"]
    assert message == "Copied 3 MiB of 8 MiB (3145728 of 8388608 bytes)"
    # Done: the progress properties go with the lock.
    runner._import(context, task, lease)
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "active" and "os_glance_import_copied" not in shown


def test_progress_is_reported_at_a_bounded_rate(v2_with) -> None:
    from glance_clone.domain.task_reaper import lease_interval

    assert lease_interval(v2_with({"task.task_stall_timeout": 300}).stack.conf) == 10.0
    assert lease_interval(v2_with({"task.task_stall_timeout": 8}).stack.conf) == 2.0
    assert lease_interval(v2_with({"task.task_progress_interval": 1.5}).stack.conf) == 1.5


def test_clients_learn_the_methods_and_projectless_callers_import(v2: V2) -> None:
    res = v2.call("POST", "/images", {"name": "x"})
    assert res.headers["OpenStack-image-import-methods"] == (
        "glance-direct,web-download,copy-image")
    operator = {"tenant": None, "roles": "admin"}
    image = v2.create(operator, name="i", disk_format="raw", container_format="bare")
    assert image["owner"] is None
    assert stage(v2, image["id"], **operator).status_int == 204
    assert do_import(v2, image["id"], **operator).status_int == 202
    wait_status(v2, image["id"], "active")
    for _ in range(500):
        [task] = _tasks_of(v2, image["id"])
        if task["status"] != "processing":
            break
        eventlet.sleep(0.01)
    assert (task["owner"], task["status"]) == ("admin", "success")


class _Between:
    """Image writes running ``meanwhile`` once, just before the first write
    of kind ``write`` (after the writer read what it writes)."""

    def __init__(self, writes, meanwhile, write: str = "change") -> None:
        self._writes = writes
        self._meanwhile = meanwhile
        self._write = write

    def __getattr__(self, name):
        found = getattr(self._writes, name)
        if name != self._write:
            return found

        def first_after_meanwhile(*args, **kwargs):
            meanwhile, self._meanwhile = self._meanwhile, None
            if meanwhile is not None:
                meanwhile()
            return found(*args, **kwargs)
        return first_after_meanwhile


def test_a_patch_while_the_import_ends_is_kept(v2: V2) -> None:
    """The import's last write drops its os_glance_* keys by name, a
    compare-and-swap on those keys alone: a user's PATCH between its read
    and its write stays."""
    image, held = _held_import(v2)
    lock = v2.stack.v2.import_runner.lock

    def patch() -> None:
        res = v2.patch(image["id"], [{"op": "add", "path": "/note", "value": "mine"}])
        assert res.status_int == 200, res.text

    lock.writes = _Between(lock.writes, patch)
    v2.stack.v2.import_runner.run(admin_context(), held[0])
    shown = wait_status(v2, image["id"], "active")
    assert shown["note"] == "mine"
    assert not [k for k in shown if k.startswith("os_glance_import")]


def test_the_lock_is_released_only_while_it_is_the_tasks(v2: V2) -> None:
    """Another writer changing the lock between the read and the write
    makes the release a conflict, not an overwrite."""
    from glance_clone.common import exception

    image, held = _held_import(v2)
    lock = v2.stack.v2.import_runner.lock
    writes = lock.writes
    lock.writes = _Between(writes, lambda: writes.update(
        admin_context(), image["id"], {"properties": {"os_glance_import_task": "other"}}))
    with pytest.raises(exception.StatusConflict):
        lock.release(admin_context(), image["id"], held[0]["id"], "importing")
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["os_glance_import_task"] == "other" and shown["status"] == "importing"


def _v2_patch(v2: V2, image_id: str):
    return v2.patch(image_id, [{"op": "add", "path": "/note", "value": "mine"}])


def _v1_update(v2: V2, image_id: str):
    return v2.stack.request("/v1/images/" + image_id, "PUT", tenant="t1", headers={
        "x-image-meta-property-note": "mine", "x-glance-registry-purge-props": "true"})


@pytest.mark.parametrize("update", [_v2_patch, _v1_update], ids=["v2", "v1"])
def test_a_user_update_never_puts_back_what_the_import_removed(v2: V2, update) -> None:
    """An active image under a copy-image's lock (its status does not
    change): the lock released between a user's read and write stays
    released, and the user's change is made."""
    image = v2.create(name="i", disk_format="raw", container_format="bare")
    assert v2.upload(image["id"], DATA).status_int == 204
    lock = v2.stack.v2.import_runner.lock
    lock.take(admin_context(), image["id"], "active", "active", "task-1", ["file"])
    writes = v2.stack.v2.catalog.images.writes
    release = lambda: lock.release(admin_context(), image["id"], "task-1", "active")  # noqa: E731
    for holder in (v2.stack.v2.catalog.images, v2.stack.v1.service):
        holder.writes = _Between(writes, release, "update")
    res = update(v2, image["id"])
    assert res.status_int == 200, res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["note"] == "mine" and "os_glance_import_task" not in shown
    assert "os_glance_importing_to_stores" not in shown
