"""glance-replicator's pieces that need no server: arguments, metadata,
verification of copies, progress."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
import requests

from glance_clone import replicator
from glance_clone.cmd import replicator as cli

pytestmark = pytest.mark.timeout(30)

# --- endpoints and arguments ---------------------------------------------------

@pytest.mark.parametrize("value, url", [
    ("127.0.0.1:9292", "http://127.0.0.1:9292"),
    ("[::1]:9292", "http://[::1]:9292"),
    ("glance.example.org:80", "http://glance.example.org:80"),
    ("glance:9292", "http://glance:9292"),
])
def test_valid_endpoints(value: str, url: str) -> None:
    assert replicator.parse_endpoint(value) == url


@pytest.mark.parametrize("value", [
    "127.0.0.1", "127.0.0.1:", ":9292", "127.0.0.1:99999", "127.0.0.1:x",
    "300.1.1.1:9292", "[zz::1]:9292", "bad_host:9292", "-bad.example:1",
    "a b:9292", "::1:9292",
])
def test_invalid_endpoints(value: str) -> None:
    with pytest.raises(ValueError):
        replicator.parse_endpoint(value)


def test_comma_form_is_split_at_the_first_comma_only() -> None:
    assert cli.split_args("livecopy", ["m:1,s:2"]) == ["m:1", "s:2"]
    assert cli.split_args("dump", ["m:1,/tmp/a,b"]) == ["m:1", "/tmp/a,b"]
    assert cli.split_args("livecopy", ["m:1", "s:2"]) == ["m:1", "s:2"]
    assert cli.split_args("size", ["m:1,x"]) == ["m:1,x"]


def test_dontreplicate_takes_spaces_or_commas() -> None:
    assert replicator.parse_fields("created_at date, name") == {"created_at", "date", "name"}


class Recorder:
    def __init__(self) -> None:
        self.tokens: list[tuple[str, str | None]] = []

    def endpoint(self, address: str, token: str | None = None, **kwargs: Any) -> Any:
        self.tokens.append((address, token))
        return FakeServer(address)


@pytest.mark.parametrize("argv, expected", [
    (["-M", "mtok", "-S", "stok", "size", "m:1"], [("m:1", "mtok")]),
    (["-t", "both", "size", "m:1"], [("m:1", "both")]),
    (["-t", "both", "-S", "stok", "compare", "m:1", "s:2"],
     [("m:1", "both"), ("s:2", "stok")]),
    (["-M", "mtok", "-S", "stok", "load", "s:2", "."], [("s:2", "stok")]),
])
def test_tokens_go_to_the_right_side(monkeypatch: pytest.MonkeyPatch,
                                     argv: list[str], expected: list) -> None:
    recorder = Recorder()
    monkeypatch.setattr(replicator, "Endpoint", recorder.endpoint)
    assert cli.main(argv) == 0
    assert recorder.tokens == expected


def test_too_few_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dump", "m:1"]) == 1
    err = capsys.readouterr().err
    assert "dump <server:port> <path>" in err
    assert "ERROR: Too few arguments." in err
    assert cli.main([]) == 1
    assert "ERROR: Too few arguments." in capsys.readouterr().err


# --- metadata --------------------------------------------------------------------

IMAGE = {"id": "0f3c6c4e-8e0f-4c43-9c3e-1b54a9a9a9e1", "name": "cirrus",
         "status": "active", "size": 5, "virtual_size": None, "is_public": True,
         "min_ram": 0, "checksum": hashlib.md5(b"hello").hexdigest(),
         "properties": {"Distro": "Debian", "gone": None, "note": "caf\u00e9"}}


def test_flatten_matches_what_head_shows() -> None:
    flat = replicator.flatten(IMAGE)
    assert flat["is_public"] == "True" and flat["size"] == "5"
    assert "virtual_size" not in flat
    assert flat["property-distro"] == "Debian"
    assert "property-gone" not in flat
    headers = replicator.to_headers(flat)
    assert headers["x-image-meta-property-note"] == "caf\u00e9".encode()
    # What a server sends back, as http.client decodes it (latin-1).
    wire = [(k, v.decode("latin-1") if isinstance(v, bytes) else v)
            for k, v in headers.items()]
    assert replicator.meta_from_headers(wire) == flat


def test_differences_both_ways() -> None:
    source = {"id": "x", "name": "a", "property-p": "1", "updated_at": "t1"}
    target = {"id": "x", "name": "b", "property-q": "2", "updated_at": "t2"}
    assert replicator.differences(source, target, {"updated_at"}) == {
        "name": ("a", "b"), "property-p": ("1", None), "property-q": (None, "2")}


# --- verification of copies ----------------------------------------------------------

class FakeResponse:
    def __init__(self, chunks: list[bytes], fail: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    def iter_content(self, size: int) -> Any:
        yield from self.chunks
        if self.fail:
            raise requests.exceptions.ChunkedEncodingError("connection broken")

    def close(self) -> None:
        self.closed = True


class FakeServer:
    """Enough of Endpoint for the Replicator: images in a dict, data in another."""

    def __init__(self, name: str = "fake", images: list[dict] | None = None,
                 answer_checksum: str | None = None, answer_multihash: str | None = None,
                 v2: bool = True) -> None:
        self.url = "http://" + name
        self.images_ = {i["id"]: dict(i) for i in images or []}
        self.data: dict[str, bytes] = {}
        self.answer_checksum = answer_checksum
        self.answer_multihash = answer_multihash
        self.v2 = v2
        self.sent: list[dict[str, str]] = []
        self.deleted: list[str] = []
        self.responses: list[FakeResponse] = []
        self.broken = False

    def __str__(self) -> str:
        return self.url

    def images(self) -> Any:
        return iter(list(self.images_.values()))

    def head(self, image_id: str) -> dict | None:
        image = self.images_.get(image_id)
        if image is None:
            return None
        # v1 shows no multihash.
        return replicator.flatten({k: v for k, v in image.items() if "os_hash" not in k})

    def multihash(self, image_id: str) -> tuple[str, str] | None:
        image = self.images_.get(image_id)
        if not self.v2 or image is None or not image.get("os_hash_value"):
            return None
        return image["os_hash_algo"], image["os_hash_value"]

    def download(self, image_id: str) -> FakeResponse:
        data = self.data[image_id]
        response = FakeResponse([data[:3], data[3:]], fail=self.broken)
        self.responses.append(response)
        return response

    def create(self, meta: dict[str, str], body: Any = None) -> dict:
        self.sent.append(meta)
        received = b"".join(body) if body is not None else b""
        image = {"id": meta["id"], "status": "active", "size": len(received),
                 "checksum": self.answer_checksum or hashlib.md5(received).hexdigest(),
                 "os_hash_algo": "sha512", "os_hash_value":
                 self.answer_multihash or hashlib.sha512(received).hexdigest()}
        self.images_[meta["id"]] = image
        self.data[meta["id"]] = received
        return image

    def update(self, image_id: str, meta: dict[str, str], body: Any = None) -> dict:
        self.images_[image_id].update(meta)
        return self.images_[image_id]

    def delete(self, image_id: str) -> None:
        self.deleted.append(image_id)
        self.images_[image_id]["status"] = "deleted"


def worker(stream: io.StringIO | None = None) -> replicator.Replicator:
    return replicator.Replicator(replicator.Options(), stream or io.StringIO())


def master_with_image(data: bytes = b"hello", v2: bool = True) -> FakeServer:
    master = FakeServer("master", [dict(IMAGE, os_hash_algo="sha512",
                                        os_hash_value=hashlib.sha512(b"hello").hexdigest())],
                        v2=v2)
    master.data[IMAGE["id"]] = data
    return master


def test_livecopy_streams_and_closes_the_source() -> None:
    master, slave = master_with_image(), FakeServer("slave")
    outcome = worker().livecopy(master, slave)
    assert outcome.copied == [IMAGE["id"]] and not outcome.failed
    assert slave.data[IMAGE["id"]] == b"hello"
    assert all(r.closed for r in master.responses)


def test_slave_reporting_another_checksum_gets_its_copy_deleted() -> None:
    master = master_with_image()
    slave = FakeServer("slave", answer_checksum="0" * 32)
    outcome = worker().livecopy(master, slave)
    assert IMAGE["id"] in outcome.failed
    assert "checksum mismatch" in outcome.failed[IMAGE["id"]]
    assert slave.deleted == [IMAGE["id"]]


def test_slave_reporting_another_multihash_gets_its_copy_deleted() -> None:
    slave = FakeServer("slave", answer_multihash="0" * 128)
    outcome = worker().livecopy(master_with_image(), slave)
    assert "sha512 %s on http://slave" % ("0" * 128) in outcome.failed[IMAGE["id"]]
    assert slave.deleted == [IMAGE["id"]]


@pytest.mark.parametrize("v2", [True, False])
def test_data_read_not_matching_the_source_multihash(v2: bool) -> None:
    # Same md5 recorded, other bytes: the multihash is what tells (when v2 shows it).
    master = master_with_image(b"HELLO", v2=v2)
    master.images_[IMAGE["id"]]["checksum"] = hashlib.md5(b"HELLO").hexdigest()
    slave = FakeServer("slave")
    outcome = worker().livecopy(master, slave)
    if v2:
        assert "the data read hashes to sha512" in outcome.failed[IMAGE["id"]]
        assert slave.deleted == [IMAGE["id"]]
    else:
        assert outcome.copied == [IMAGE["id"]] and not outcome.failed


def test_dump_keeps_the_multihash_and_load_checks_it(tmp_path: Any) -> None:
    master = master_with_image()
    assert worker().dump(master, str(tmp_path)).copied == [IMAGE["id"]]
    dumped = json.loads((tmp_path / IMAGE["id"]).read_text())
    assert dumped["os_hash_value"] == hashlib.sha512(b"hello").hexdigest()
    (tmp_path / (IMAGE["id"] + ".img")).write_bytes(b"HELLO")
    dumped["checksum"] = hashlib.md5(b"HELLO").hexdigest()
    (tmp_path / IMAGE["id"]).write_text(json.dumps(dumped))
    slave = FakeServer("slave")
    outcome = worker().load(slave, str(tmp_path))
    assert "the data read hashes to sha512" in outcome.failed[IMAGE["id"]]
    assert slave.deleted == [IMAGE["id"]]
    # v1 takes no multihash headers: the dumped one is never sent.
    assert not [key for key in slave.sent[0] if "os_hash" in key]


def test_dump_refuses_data_not_matching_the_multihash(tmp_path: Any) -> None:
    master = master_with_image(b"HELLO")
    master.images_[IMAGE["id"]]["checksum"] = hashlib.md5(b"HELLO").hexdigest()
    outcome = worker().dump(master, str(tmp_path))
    assert "hashes to sha512" in outcome.failed[IMAGE["id"]]
    assert not (tmp_path / (IMAGE["id"] + ".img")).exists()


def test_source_failing_mid_stream_is_reported_per_image() -> None:
    master = master_with_image()
    master.broken = True
    outcome = worker().livecopy(master, FakeServer("slave"))
    assert "reading the data of image" in outcome.failed[IMAGE["id"]]
    assert all(r.closed for r in master.responses)


def test_image_with_other_data_on_the_slave_is_not_touched() -> None:
    master = master_with_image()
    slave = FakeServer("slave", [dict(IMAGE, checksum="1" * 32)])
    outcome = worker().livecopy(master, slave)
    assert "different data" in outcome.failed[IMAGE["id"]]


def test_killed_copy_on_the_slave_is_a_failure() -> None:
    master = master_with_image()
    slave = FakeServer("slave", [dict(IMAGE, status="killed")])
    outcome = worker().livecopy(master, slave)
    assert "killed" in outcome.failed[IMAGE["id"]]


def test_progress_lines_are_rate_limited() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = replicator.Progress(stream, 2, "livecopy", interval=5, clock=lambda: now[0])
    progress.transferring("a", 1024, 4096)
    assert stream.getvalue() == ""
    now[0] = 6
    progress.transferring("a", 2048, 4096)
    progress.transferring("a", 3072, 4096)
    assert stream.getvalue().count("\n") == 1
    assert "[1/2] a: 2.0 KiB of 4.0 KiB" in stream.getvalue()
    progress.image_done("a", "copied", 4096)
    assert "[1/2] a copied (4.0 KiB); 4.0 KiB moved so far" in stream.getvalue()
