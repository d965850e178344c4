"""RegistryWrites' rule on its own: what the record read back decides."""

from __future__ import annotations

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain.registry_writes import RegistryWrites, shows

pytestmark = pytest.mark.timeout(30)
CONTEXT = RequestContext(tenant="t1")


class FakeRegistry:
    """One record; each write runs ``before`` (another writer), applies the
    swap, then loses its answer the first ``lose`` times."""

    def __init__(self, status: str, lose: int = 1) -> None:
        self.image: dict | None = {"id": "i1", "status": status, "deleted": False}
        self.lose = lose
        self.before = lambda: None
        self.writes = 0

    def get_image(self, context, image_id):
        if self.image is None:
            raise exception.NotFound()
        return dict(self.image)

    def update_image(self, context, image_id, values, from_state=None, purge_props=False):
        self.writes += 1
        self.before()
        if self.image is None:
            raise exception.NotFound()
        if from_state is not None and self.image["status"] != from_state:
            raise exception.StatusConflict()
        self.image.update(values)
        if self.lose:
            self.lose -= 1
            raise exception.RegistryReplyLost()
        return dict(self.image)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def writes_for(registry: FakeRegistry, settle_time: float = 5.0) -> RegistryWrites:
    clock = Clock()
    return RegistryWrites(registry, settle_time=settle_time, sleep=clock.sleep, clock=clock)


def test_a_committed_write_whose_answer_was_lost_is_taken_as_done():
    registry = FakeRegistry("saving")
    image = writes_for(registry).change(CONTEXT, "i1", {"status": "active"}, "saving")
    assert image["status"] == "active" and registry.writes == 1


@pytest.mark.parametrize("write", [
    lambda writes: writes.change(CONTEXT, "i1", {"status": "active"}, "saving"),
    lambda writes: writes.update(CONTEXT, "i1", {"name": "n"}, from_state="saving"),
], ids=["status move", "metadata update"])
def test_another_writer_first_is_a_conflict_not_a_success(write):
    registry = FakeRegistry("saving")

    def lost_after_the_reaper_won(*args, **kwargs):
        registry.image["status"] = "killed"
        raise exception.RegistryReplyLost()
    registry.update_image = lost_after_the_reaper_won
    with pytest.raises(exception.StatusConflict):
        write(writes_for(registry))


def test_a_write_that_did_not_happen_is_sent_again():
    registry = FakeRegistry("saving", lose=0)
    calls = []
    real = registry.update_image

    def unanswered_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise exception.RegistryUnavailable()
        return real(*args, **kwargs)
    registry.update_image = unanswered_once
    image = writes_for(registry).change(CONTEXT, "i1", {"status": "active"}, "saving")
    assert image["status"] == "active" and len(calls) == 2


def test_an_image_gone_meanwhile_is_not_found():
    registry = FakeRegistry("saving")

    def deleted():
        registry.image = None
    registry.before = deleted
    with pytest.raises(exception.NotFound):
        writes_for(registry).change(CONTEXT, "i1", {"status": "active"}, "saving")


def test_a_registry_that_never_answers_again_gives_up_after_the_settle_time():
    registry = FakeRegistry("saving")

    def unreachable(context, image_id):
        raise exception.RegistryUnavailable()
    registry.get_image = unreachable
    writes = writes_for(registry, settle_time=3.0)
    with pytest.raises(exception.RegistryUnavailable, match="outcome of the change is unknown"):
        writes.change(CONTEXT, "i1", {"status": "active"}, "saving")
    assert 2.0 < writes.clock() <= 3.0


def test_the_registry_refusing_is_final():
    registry = FakeRegistry("queued", lose=0)
    with pytest.raises(exception.StatusConflict):
        writes_for(registry).change(CONTEXT, "i1", {"status": "active"}, "saving")
    assert registry.writes == 1


def test_a_metadata_update_committed_but_answer_lost_is_taken_as_done():
    registry = FakeRegistry("active")
    image = writes_for(registry).update(CONTEXT, "i1", {"name": "n"})
    assert image["name"] == "n" and registry.writes == 1


def test_what_a_record_shows_of_an_update():
    record = {"name": "n", "properties": {"a": "1", "b": "2"}, "tags": ["x", "y"]}
    assert shows(record, {"name": "n", "properties": {"a": "1"}})
    assert not shows(record, {"properties": {"a": "1"}}, purge_props=True)
    assert shows(record, {"properties": {"a": "1", "b": "2"}}, purge_props=True)
    assert shows(record, {"tags": ["y", "x"]})
    assert not shows(record, {"name": "m"})


@pytest.mark.parametrize("write", [
    lambda writes: writes.change(CONTEXT, "i1", {"status": "active"}, "killed"),
    lambda writes: writes.change(CONTEXT, "i1", {"status": "queued"}, "active"),
    lambda writes: writes.destroy(CONTEXT, "i1", "queued", to_state="pending_delete"),
    lambda writes: writes.create(CONTEXT, {"id": "i2", "status": "saving"}),
], ids=["killed to active", "active to queued", "queued to pending_delete",
        "created saving"])
def test_a_status_the_table_does_not_allow_is_never_sent(write):
    registry = FakeRegistry("killed")
    with pytest.raises(exception.InvalidImageStatusTransition):
        write(writes_for(registry))
    assert registry.writes == 0 and registry.image["status"] == "killed"


def test_a_lost_write_whose_properties_changed_meanwhile_is_a_conflict():
    """A compare-and-swap on properties: another writer changed one the
    write compared, so the write did not apply and must not be sent again."""
    registry = FakeRegistry("active")
    registry.image["properties"] = {"lock": "t1"}

    def lost_after_another_lock(*args, **kwargs):
        registry.image["properties"] = {"lock": "t2"}
        raise exception.RegistryReplyLost()
    registry.update_image = lost_after_another_lock
    with pytest.raises(exception.StatusConflict):
        writes_for(registry).change(CONTEXT, "i1", {"status": "active"}, "active",
                                    applied=lambda image: "lock" not in image["properties"],
                                    properties_from={"lock": "t1"},
                                    remove_properties=["lock"])
