"""Resumable staging (ours, beyond Glance): a stage in pieces with
Content-Range, the staged length readable back, a wrong start refused with
416 naming the staged length, a broken piece keeping what arrived, and the
staged data of abandoned images removed after staging_abandon_timeout."""

from __future__ import annotations

import os

from .conftest import V2
from .test_import import do_import, new_image, stage, staged_files, wait_status

DATA = bytes(range(256)) * 40           # 10240 bytes
HEADER = "OpenStack-image-staged-size"


def piece(v2: V2, image_id: str, start: int, data: bytes, total: int = len(DATA),
          **kw):
    end = start + len(data) - 1
    headers = dict(kw.pop("headers", {}),
                   **{"Content-Range": "bytes %d-%d/%d" % (start, end, total)})
    return stage(v2, image_id, data, headers=headers, **kw)


def staged(v2: V2, image_id: str, method: str = "GET") -> int:
    res = v2.call(method, "/images/%s/stage" % image_id)
    assert res.status_int == 204, res.text
    return int(res.headers[HEADER])


def test_a_stage_in_pieces(v2: V2) -> None:
    image = new_image(v2)
    assert staged(v2, image["id"]) == 0
    res = piece(v2, image["id"], 0, DATA[:4000])
    assert res.status_int == 204 and res.headers[HEADER] == "4000"
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "uploading" and shown["size"] is None
    assert staged(v2, image["id"]) == 4000 and staged(v2, image["id"], "HEAD") == 4000
    # Not all there: no import yet.
    assert do_import(v2, image["id"]).status_int == 409
    # A wrong start: 416 with the staged length; nothing changes.
    for start in (0, 3000, 5000):
        res = piece(v2, image["id"], start, DATA[start:start + 100])
        assert res.status_int == 416, res.text
        assert res.headers[HEADER] == "4000"
        assert res.headers["Content-Range"] == "bytes */4000"
    res = piece(v2, image["id"], 4000, DATA[4000:])
    assert res.status_int == 204 and res.headers[HEADER] == str(len(DATA))
    assert v2.call("GET", "/images/" + image["id"]).json["size"] == len(DATA)
    # Complete: staged once only.
    assert piece(v2, image["id"], len(DATA) - 1, DATA[-1:]).status_int == 409
    assert do_import(v2, image["id"]).status_int == 202
    wait_status(v2, image["id"], "active")
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA
    assert staged_files(v2) == []


def test_a_broken_piece_keeps_what_arrived(v2: V2) -> None:
    image = new_image(v2)
    # The body ends before its Content-Length: the client went away.
    res = piece(v2, image["id"], 0, DATA[:3000],
                headers={"Content-Length": "6000"})
    assert res.status_int == 400
    assert staged(v2, image["id"]) == 3000
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "uploading"
    assert piece(v2, image["id"], 3000, DATA[3000:]).status_int == 204
    assert v2.call("GET", "/images/" + image["id"]).json["size"] == len(DATA)


def test_stage_refusals_in_pieces(v2_with) -> None:
    v2 = v2_with({"image_size_cap": 5000})
    image = new_image(v2)
    for bad in ("bytes 0-10", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2"):
        res = stage(v2, image["id"], b"x", headers={"Content-Range": bad})
        assert res.status_int == 400, bad
    # A first piece must start at 0.
    assert piece(v2, image["id"], 10, b"x" * 10).status_int == 416
    # A total beyond the size cap; a body beyond its total.
    assert piece(v2, image["id"], 0, b"x" * 10, total=6000).status_int == 413
    res = stage(v2, image["id"], b"x" * 30, headers={"Content-Range": "bytes 0-9/20"})
    assert res.status_int == 400
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and staged_files(v2) == []
    # Without Content-Range an uploading image is not staged again.
    assert piece(v2, image["id"], 0, b"x" * 10, total=20).status_int == 204
    assert stage(v2, image["id"], b"y").status_int == 409
    assert staged(v2, image["id"]) == 10


def test_abandoned_staged_data_is_removed(v2_with) -> None:
    v2 = v2_with({"staging_abandon_timeout": 3600})
    image = new_image(v2)
    done = new_image(v2)
    assert piece(v2, image["id"], 0, DATA[:100]).status_int == 204
    assert stage(v2, done["id"]).status_int == 204
    reaper = v2.stack.v2.task_reaper
    staging = v2.stack.v2.import_runner.staging
    reaper.reap()
    assert len(staged_files(v2)) == 2
    for path in (staging.path(image["id"]) + ".part", staging.path(done["id"])):
        old = os.stat(path).st_mtime - 7200
        os.utime(path, (old, old))
    reaper.reap()
    assert staged_files(v2) == []
    for abandoned in (image, done):
        shown = v2.call("GET", "/images/" + abandoned["id"]).json
        assert shown["status"] == "queued" and shown["size"] is None
