"""TaskRepository over the real registry app (in-process): ownership,
types, status moves, expiry, progress and lost registry answers."""

from __future__ import annotations

import datetime

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import registry_writes, tasks
from glance_clone.registry.client.v1.client import RegistryClient
from tests.support.stack import make_stack
from tests.support.wsgi_transport import transport_for

from .test_registry_writes import Clock

A = RequestContext(user="ua", tenant="A", roles=("member",))
B = RequestContext(user="ub", tenant="B", roles=("member",))


class LosingTransport:
    """The registry app in-process; loses the answers of the next
    ``lose`` writes after they were applied."""

    def __init__(self, app):
        self.inner = transport_for(app)
        self.lose = 0

    def send(self, method, target, headers, body=None):
        reply = self.inner.send(method, target, headers, body)
        if method != "GET" and self.lose:
            self.lose -= 1
            raise exception.RegistryReplyLost()
        return reply

    def close(self):
        pass


@pytest.fixture
def setup(tmp_path):
    stack = make_stack(tmp_path)
    transport = LosingTransport(stack.registry_app)
    client = RegistryClient(stack.conf, transport=transport, base_url="http://registry")
    clock = Clock()
    writes = registry_writes.RegistryWrites(client, sleep=clock.sleep, clock=clock)
    return tasks.TaskRepository(stack.conf, client, writes), transport


def test_create_claim_and_finish(setup):
    repo, _ = setup
    task = repo.create(A, "import", {"import_from": "http://x/"})
    assert (task["status"], task["owner"], task["user_id"]) == ("pending", "A", "ua")
    assert task["expires_at"] is None
    with pytest.raises(exception.TaskNotFound):
        repo.get(B, task["id"])
    task = repo.move(A, task, "processing")
    task = repo.progress(A, task, "Copied 1 MiB")
    assert task["message"] == "Copied 1 MiB"
    done = repo.move(A, task, "success", result={"image_id": "i"})
    assert done["result"] == {"image_id": "i"}
    expires = datetime.datetime.fromisoformat(done["expires_at"])
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert datetime.timedelta(hours=47) < expires - now <= datetime.timedelta(hours=48)
    with pytest.raises(exception.InvalidTaskStatusTransition):
        repo.move(A, done, "failure")
    assert [t["id"] for t in repo.list(A)] == [task["id"]]


def test_two_claims_one_wins(setup):
    repo, _ = setup
    task = repo.create(A, "import", {})
    repo.move(A, task, "processing")
    with pytest.raises(exception.StatusConflict):
        repo.move(A, task, "processing")
    with pytest.raises(exception.StatusConflict):
        repo.progress(A, repo.move(A, repo.get(A, task["id"]), "failure",
                                   message="stopped"), "late")


def test_lost_answers_are_settled_by_reading_back(setup):
    repo, transport = setup
    transport.lose = 1
    task = repo.create(A, "import", {})
    assert repo.get(A, task["id"])["status"] == "pending"
    transport.lose = 1
    moved = repo.move(A, task, "processing")
    assert moved["status"] == "processing"
    transport.lose = 1
    assert repo.move(A, moved, "failure", message="no")["message"] == "no"


def test_refusals(setup):
    repo, _ = setup
    with pytest.raises(exception.Invalid):
        repo.create(A, "conversion", {})
    with pytest.raises(exception.Forbidden):
        repo.create(RequestContext(user="nobody"), "import", {})
