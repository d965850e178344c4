"""glance-scrubber's pass against the real registry app, in-process.

The registry runs behind the trusted-auth context filter, so these tests
also prove the scrubber identifies itself as an admin. Images are put into
the states glance-api leaves them in (``pending_delete`` with
``pending_delete`` locations, or ``saving``) through the registry client.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import eventlet
import pytest
from oslo_config import cfg

from glance_clone import scrubber
from glance_clone.common import config, context_middleware, exception
from glance_clone.common.context import RequestContext
from glance_clone.db import api as db_api
from glance_clone.db import migration, session
from glance_clone.registry import api as registry_api
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store import backend
from tests.support.stack import make_stack
from tests.support.wsgi_transport import transport_for

ADMIN = RequestContext(user="admin", tenant="admin-tenant", roles=("admin",),
                       is_admin=True)
HOUR = datetime.timedelta(hours=1)


class Env:
    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        conf = cfg.ConfigOpts()
        config.register_server_opts(conf)
        config.register_database_opts(conf)
        registry_api.register_opts(conf)
        scrubber.register_opts(conf)
        conf([], project="glance", default_config_files=[])
        self.datadir = tmp_path / "images"
        conf.set_override("connection", "sqlite:///%s" % (tmp_path / "glance.sqlite"),
                          group="database")
        conf.set_override("filesystem_store_datadir", str(self.datadir),
                          group="glance_store")
        conf.set_override("send_identity_headers", True)
        for name, value in overrides.items():
            conf.set_override(name, value)
        self.conf = conf
        engine = session.create_engine(conf.database.connection)
        migration.db_sync(engine)
        app = context_middleware.ContextMiddleware(
            registry_api.API(conf, db_api.Database(engine)), conf, None)
        self.registry = RegistryClient(conf, transport=transport_for(app),
                                       base_url="http://registry")
        self.stores = backend.StoreSet(conf)
        self.offset = datetime.timedelta(0)

    def scrubber(self, stores: Any = None, **kwargs: Any) -> scrubber.Scrubber:
        return scrubber.Scrubber(self.conf, registry=self.registry,
                                 stores=stores or self.stores,
                                 clock=self.clock, **kwargs)

    def clock(self) -> datetime.datetime:
        return scrubber.utcnow() + self.offset

    # -- images in the states glance-api leaves them in ---------------------
    def stored(self, data: bytes = b"x" * 1000, **values: Any) -> dict:
        """An active image whose data is in the file store."""
        image = self.registry.add_image(ADMIN, dict(
            {"name": "img", "status": "queued", "disk_format": "raw",
             "container_format": "bare"}, **values))
        url, size, checksum, _ = self.stores.add(image["id"], iter([data]), len(data))
        return self.registry.update_image(ADMIN, image["id"], {
            "status": "active", "size": size, "checksum": checksum,
            "location_data": [{"url": url, "metadata": {}, "status": "active"}]})

    def add_location(self, image: dict, url: str) -> dict:
        return self.registry.update_image(ADMIN, image["id"], {
            "location_data": image["location_data"] + [
                {"url": url, "metadata": {}, "status": "active"}]})

    def delay_delete(self, image: dict) -> None:
        """What ImageService.delete does with delayed_delete on."""
        live = [loc for loc in image["location_data"] if loc["status"] == "active"]
        self.registry.update_image(ADMIN, image["id"], {
            "status": "pending_delete",
            "location_data": [dict(loc, status="pending_delete") for loc in live]})
        self.registry.delete_image(ADMIN, image["id"])

    def status(self, image_id: str) -> str:
        return self.registry.get_image(ADMIN, image_id)["status"]

    def pending_locations(self, image_id: str) -> list[str]:
        images = self.registry.get_images_detailed(
            ADMIN, deleted="True", is_public="none", status="pending_delete")
        for image in images:
            if image["id"] == image_id:
                return [loc["url"] for loc in image["location_data"]
                        if loc["status"] == "pending_delete"]
        return []

    def files(self) -> list[str]:
        return sorted(os.listdir(self.datadir))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def data_file(image: dict) -> str:
    return image["location_data"][0]["url"][len("file://"):]


# --- scrubbing -----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_pending_delete_image_is_scrubbed(env: Env) -> None:
    image = env.stored()
    kept = env.stored()
    env.delay_delete(image)
    assert os.path.exists(data_file(image))

    report = env.scrubber().run_once()

    assert report.scrubbed == [image["id"]] and report.ok
    assert not os.path.exists(data_file(image))
    assert os.path.exists(data_file(kept))
    assert env.status(image["id"]) == "deleted"
    assert env.pending_locations(image["id"]) == []
    # A second pass finds nothing to do.
    assert env.scrubber().run_once().scrubbed == []


@pytest.mark.timeout(60)
def test_delete_through_the_api_then_scrub(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, overrides={"delayed_delete": True})
    created = stack.request("/v1/images", "POST", body=b"y" * 2048, tenant="t1", headers={
        "x-image-meta-name": "doomed", "x-image-meta-disk-format": "raw",
        "x-image-meta-container-format": "bare"})
    assert created.status_int == 201, created.text
    image_id = created.json_body["image"]["id"]
    assert stack.request("/v1/images/" + image_id, "DELETE", tenant="t1").status_int == 200
    # Deleted rows are for admins only: the owner now gets 404, an admin 403.
    assert stack.request("/v1/images/" + image_id, "DELETE", tenant="t1").status_int == 404
    assert stack.request("/v1/images/" + image_id, "DELETE", roles="admin").status_int == 403
    assert stack.stored_files() == [image_id]

    registry = RegistryClient(stack.conf, transport=transport_for(stack.registry_app),
                              base_url="http://registry")
    report = scrubber.Scrubber(stack.conf, registry=registry).run_once()

    assert report.scrubbed == [image_id]
    assert stack.stored_files() == []
    head = stack.request("/v1/images/" + image_id, "HEAD", roles="admin")
    assert head.headers["x-image-meta-status"] == "deleted"


@pytest.mark.timeout(60)
def test_scrub_time_defers_the_scrub(tmp_path: Path) -> None:
    env = Env(tmp_path, scrub_time=3600)
    image = env.stored()
    env.delay_delete(image)

    report = env.scrubber().run_once()
    assert report.waiting == [image["id"]] and report.scrubbed == []
    assert env.status(image["id"]) == "pending_delete"
    assert os.path.exists(data_file(image))

    env.offset += HOUR + datetime.timedelta(seconds=1)
    assert env.scrubber().run_once().scrubbed == [image["id"]]
    assert env.status(image["id"]) == "deleted"


@pytest.mark.timeout(60)
def test_data_already_gone_counts_as_deleted(env: Env) -> None:
    image = env.stored()
    env.delay_delete(image)
    os.unlink(data_file(image))

    report = env.scrubber().run_once()

    assert report.scrubbed == [image["id"]] and report.ok
    assert env.status(image["id"]) == "deleted"


@pytest.mark.timeout(60)
def test_store_failure_half_way_keeps_the_image_pending(env: Env) -> None:
    image = env.stored()
    # A second location whose delete fails: unlink(2) refuses a directory.
    stuck = env.datadir / "not-a-file"
    stuck.mkdir()
    image = env.add_location(image, "file://%s" % stuck)
    env.delay_delete(image)

    report = env.scrubber().run_once()

    assert report.failed == [image["id"]] and not report.ok
    assert not os.path.exists(data_file(image))       # first location done
    assert env.status(image["id"]) == "pending_delete"
    # Only the location that still has data is still pending.
    assert env.pending_locations(image["id"]) == ["file://%s" % stuck]

    stuck.rmdir()
    report = env.scrubber().run_once()
    assert report.scrubbed == [image["id"]] and report.ok
    assert env.status(image["id"]) == "deleted"


@pytest.mark.timeout(60)
def test_data_shared_with_a_live_image_is_kept(env: Env) -> None:
    image = env.stored()
    url = image["location_data"][0]["url"]
    other = env.registry.add_image(ADMIN, {
        "name": "alias", "status": "active", "disk_format": "raw",
        "container_format": "bare", "size": 1000,
        "location_data": [{"url": url, "metadata": {}, "status": "active"}]})
    env.delay_delete(image)

    report = env.scrubber().run_once()

    assert report.scrubbed == [image["id"]]
    assert env.status(image["id"]) == "deleted"
    assert os.path.exists(data_file(image))
    assert env.status(other["id"]) == "active"


@pytest.mark.timeout(60)
def test_two_pending_images_sharing_data_are_both_scrubbed(env: Env) -> None:
    image = env.stored()
    url = image["location_data"][0]["url"]
    twin = env.registry.add_image(ADMIN, {
        "name": "twin", "status": "active", "disk_format": "raw",
        "container_format": "bare", "size": 1000,
        "location_data": [{"url": url, "metadata": {}, "status": "active"}]})
    env.delay_delete(image)
    env.delay_delete(twin)

    report = env.scrubber().run_once()

    assert sorted(report.scrubbed) == sorted([image["id"], twin["id"]])
    assert not os.path.exists(data_file(image))


@pytest.mark.timeout(60)
def test_listing_is_paged(env: Env) -> None:
    images = [env.stored() for _ in range(5)]
    for image in images:
        env.delay_delete(image)

    report = env.scrubber(page_size=2).run_once()

    assert sorted(report.scrubbed) == sorted(i["id"] for i in images)
    assert env.files() == []


class GatedStore:
    """Deletes wait until ``width`` of them run at once (or time out)."""

    def __init__(self, stores: Any, width: int) -> None:
        self.stores = stores
        self.width = width
        self.running = 0
        self.most = 0
        self.gate = eventlet.event.Event()

    def delete(self, url: str) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        if self.running >= self.width and not self.gate.ready():
            self.gate.send()
        with eventlet.Timeout(5, False):
            self.gate.wait()
        self.running -= 1
        self.stores.delete(url)


@pytest.mark.timeout(60)
def test_scrub_pool_size_runs_deletes_concurrently(tmp_path: Path) -> None:
    env = Env(tmp_path, scrub_pool_size=3)
    images = [env.stored() for _ in range(3)]
    for image in images:
        env.delay_delete(image)
    store = GatedStore(env.stores, 3)

    report = env.scrubber(stores=store).run_once()

    assert store.most == 3
    assert sorted(report.scrubbed) == sorted(i["id"] for i in images)


@pytest.mark.timeout(60)
def test_pool_of_one_scrubs_one_at_a_time(env: Env) -> None:
    images = [env.stored() for _ in range(2)]
    for image in images:
        env.delay_delete(image)
    store = GatedStore(env.stores, 99)
    store.gate.send()           # never wait

    env.scrubber(stores=store).run_once()

    assert store.most == 1


@pytest.mark.timeout(60)
def test_image_moved_on_by_someone_else_is_left_alone(env: Env) -> None:
    image = env.stored()
    env.delay_delete(image)

    class Racing:
        def delete(self, url: str) -> None:
            env.stores.delete(url)
            env.registry.update_image(ADMIN, image["id"], {"status": "deleted"})

    report = env.scrubber(stores=Racing()).run_once()

    assert report.scrubbed == [image["id"]] and report.ok
    assert env.status(image["id"]) == "deleted"


@pytest.mark.timeout(60)
def test_stop_request_leaves_the_rest_for_later(env: Env) -> None:
    image = env.stored()
    env.delay_delete(image)

    report = env.scrubber().run_once(stop_requested=lambda: True)

    assert report.interrupted and report.scrubbed == []
    assert env.status(image["id"]) == "pending_delete"


@pytest.mark.timeout(60)
def test_registry_down_raises(env: Env) -> None:
    env.registry = RegistryClient(env.conf, base_url="http://127.0.0.1:9")
    with pytest.raises(exception.RegistryUnavailable):
        env.scrubber().run_once()


@pytest.mark.timeout(60)
def test_registry_refusing_the_identity_raises(env: Env) -> None:
    # Without identity headers a trusted-auth registry answers 401.
    env.conf.set_override("send_identity_headers", False)
    with pytest.raises(exception.NotAuthenticated):
        env.scrubber().run_once()


# --- the reaper ----------------------------------------------------------------

def saving_image(env: Env, partial_age: datetime.timedelta | None = None) -> tuple[dict, Path]:
    """An image left in saving by a dead upload, with its partial file."""
    image = env.registry.add_image(ADMIN, {
        "name": "upload", "status": "queued", "disk_format": "raw",
        "container_format": "bare"})
    image = env.registry.update_image(ADMIN, image["id"], {"status": "saving"},
                                      from_state="queued")
    env.datadir.mkdir(exist_ok=True)
    partial = env.datadir / (".%s.0123abcd.partial" % image["id"])
    partial.write_bytes(b"half an image")
    if partial_age is not None:
        stamp = (scrubber.utcnow() - partial_age).replace(
            tzinfo=datetime.UTC).timestamp()
        os.utime(partial, (stamp, stamp))
    return image, partial


@pytest.mark.timeout(60)
def test_dead_upload_is_killed_and_its_partial_file_removed(env: Env) -> None:
    image, partial = saving_image(env, partial_age=2 * HOUR)
    other_partial = env.datadir / ".another-id.0123abcd.partial"
    other_partial.write_bytes(b"someone else's")
    env.offset += 2 * HOUR

    report = env.scrubber().run_once()

    assert report.reaped == [image["id"]] and report.ok
    assert env.status(image["id"]) == "killed"
    assert not partial.exists()
    assert other_partial.exists()


@pytest.mark.timeout(60)
def test_recent_upload_is_not_reaped(env: Env) -> None:
    image, partial = saving_image(env)

    report = env.scrubber().run_once()

    assert report.reaped == []
    assert env.status(image["id"]) == "saving"
    assert partial.exists()


@pytest.mark.timeout(60)
def test_upload_still_writing_is_not_reaped(env: Env) -> None:
    # The record is old but the partial file was written to just now.
    image, partial = saving_image(env)
    env.offset += 2 * HOUR
    now_stamp = env.clock().replace(tzinfo=datetime.UTC).timestamp()
    os.utime(partial, (now_stamp, now_stamp))

    report = env.scrubber().run_once()

    assert report.reaped == []
    assert env.status(image["id"]) == "saving"
    assert partial.exists()


@pytest.mark.timeout(60)
def test_reaper_can_be_turned_off(tmp_path: Path) -> None:
    env = Env(tmp_path, scrub_saving_timeout=0)
    image, partial = saving_image(env, partial_age=2 * HOUR)
    env.offset += 2 * HOUR

    assert env.scrubber().run_once().reaped == []
    assert env.status(image["id"]) == "saving"
    assert partial.exists()


@pytest.mark.timeout(60)
def test_reaper_removes_a_dead_uploads_location_data(env: Env) -> None:
    image, _ = saving_image(env, partial_age=2 * HOUR)
    url, _, _, _ = env.stores.add(image["id"], iter([b"data"]), 4)
    env.registry.update_image(ADMIN, image["id"], {
        "location_data": [{"url": url, "metadata": {}, "status": "active"}]})
    env.offset += 2 * HOUR

    report = env.scrubber().run_once()

    assert report.reaped == [image["id"]]
    assert env.status(image["id"]) == "killed"
    assert env.files() == []
    assert env.registry.get_image(ADMIN, image["id"])["location_data"] == []


@pytest.mark.timeout(60)
def test_options_have_documented_defaults(env: Env) -> None:
    conf = cfg.ConfigOpts()
    scrubber.register_opts(conf)
    conf([], project="glance", default_config_files=[])
    assert (conf.scrub_time, conf.scrub_pool_size, conf.wakeup_time,
            conf.daemon, conf.scrub_saving_timeout) == (0, 1, 300, False, 3600)
    conf = cfg.ConfigOpts()
    scrubber.register_opts(conf)
    conf(["-D"], project="glance", default_config_files=[])
    assert conf.daemon is True


# --- interrupted deletes ---------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("left_as", ["pending_delete", "deleted"])
def test_interrupted_delete_is_finished(env: Env, left_as: str) -> None:
    """An api that died mid-delete left the status set and the row live."""
    image = env.stored()
    kept = env.stored()
    env.registry.update_image(ADMIN, image["id"], {"status": left_as})
    env.offset += 2 * HOUR

    report = env.scrubber().run_once()

    assert report.finished == [image["id"]] and report.ok
    shown = env.registry.get_image(ADMIN, image["id"])
    assert (shown["status"], shown["deleted"]) == ("deleted", True)
    assert env.files() == [kept["id"]]
    assert env.scrubber().run_once().finished == []


@pytest.mark.timeout(60)
def test_a_delete_still_running_is_not_raced(env: Env) -> None:
    image = env.stored()
    env.registry.update_image(ADMIN, image["id"], {"status": "pending_delete"})

    report = env.scrubber().run_once()

    assert report.finished == []
    assert env.status(image["id"]) == "pending_delete"
    assert os.path.exists(data_file(image))


@pytest.mark.timeout(60)
def test_reaper_removes_the_data_file_an_unconfirmed_activation_left(env: Env) -> None:
    """The api could not learn whether its activation was committed, so it
    kept the file; the record never got its location."""
    image, _ = saving_image(env, partial_age=2 * HOUR)
    env.stores.add(image["id"], iter([b"data"]), 4)
    env.offset += 2 * HOUR

    report = env.scrubber().run_once()

    assert report.reaped == [image["id"]] and report.ok
    assert env.status(image["id"]) == "killed"
    assert env.files() == []
