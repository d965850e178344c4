"""The registry's /tasks routes: create, show, list, compare-and-swap."""

from __future__ import annotations

from .conftest import Client, uuid4


def _create(client: Client, caller: str = "A", **task):
    body = {"id": uuid4(), "type": "import", "status": "pending",
            "owner": caller, "input": {"import_from": "http://x/"}} | task
    res = client.post("/tasks", caller, body={"task": body})
    assert res.status_int == 200, res.text
    return res.json["task"]


def test_create_show_update(client: Client) -> None:
    task = _create(client)
    assert task["status"] == "pending" and task["input"] == {"import_from": "http://x/"}
    res = client.get("/tasks/%s" % task["id"], "A")
    assert res.json["task"]["created_at"] == task["created_at"]
    assert client.get("/tasks/%s" % task["id"], "B").status_int == 404
    assert client.get("/tasks/%s" % task["id"], "admin").status_int == 200
    path = "/tasks/%s" % task["id"]
    res = client.put(path, "A", body={"task": {"status": "processing"},
                                      "from_state": "pending"})
    assert res.json["task"]["status"] == "processing"
    res = client.put(path, "A", body={"task": {"status": "processing"},
                                      "from_state": "pending"})
    assert res.status_int == 409
    res = client.put(path, "A", body={"task": {
        "status": "failure", "message": "no", "expires_at": "2999-01-01T00:00:00Z"},
        "from_state": "processing"})
    assert res.json["task"]["expires_at"].startswith("2999-01-01T00:00:00")
    res = client.put(path, "A", body={"task": {"status": "success",
                                               "expires_at": "2000-01-01T00:00:00"}})
    assert client.get(path, "A").status_int == 404


def test_list(client: Client) -> None:
    first = _create(client, status="success")
    second = _create(client)
    _create(client, "B")
    res = client.get("/tasks?sort_key=status&sort_dir=asc", "A")
    assert [t["id"] for t in res.json["tasks"]] == [second["id"], first["id"]]
    res = client.get("/tasks?status=success", "A")
    assert [t["id"] for t in res.json["tasks"]] == [first["id"]]
    res = client.get("/tasks?limit=1&sort_key=status&sort_dir=asc&marker=%s"
                     % second["id"], "A")
    assert [t["id"] for t in res.json["tasks"]] == [first["id"]]
    assert len(client.get("/tasks", "admin").json["tasks"]) == 3


def test_bad_requests(client: Client) -> None:
    task = _create(client)
    for body in ({"task": {"id": uuid4(), "type": "import", "status": "done",
                           "owner": "A"}},
                 {"task": {"id": uuid4(), "type": "x" * 31, "status": "pending",
                           "owner": "A"}},
                 {"task": {"id": uuid4(), "type": "import", "status": "pending",
                           "owner": "A", "input": "text"}},
                 {"task": {"id": uuid4(), "type": "import", "status": "pending",
                           "owner": "A", "deleted": True}},
                 {"nope": 1}):
        assert client.post("/tasks", "A", body=body).status_int == 400, body
    assert client.post("/tasks", "readonly", body={"task": {}}).status_int == 403
    res = client.post("/tasks", "A", body={"task": {
        "id": task["id"], "type": "import", "status": "pending", "owner": "A"}})
    assert res.status_int == 409
    path = "/tasks/%s" % task["id"]
    assert client.put(path, "A", body={"task": {"owner": "B"}}).status_int == 400
    assert client.put(path, "A", body={"task": {"expires_at": "soon"}}).status_int == 400
    assert client.put(path, "A", body={"task": {}, "from_state": "x"}).status_int == 400
    for query in ("sort_key=input", "sort_dir=up", "limit=x",
                  "marker=%s" % uuid4(), "updated_before=never"):
        assert client.get("/tasks?" + query, "A").status_int == 400, query
