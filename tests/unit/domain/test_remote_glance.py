"""The client of another region's glance-api, against an in-process one."""

from __future__ import annotations

from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import regions
from glance_clone.domain.remote_glance import RemoteGlance
from tests.support.stack import make_conf, make_stack
from tests.support.wsgi_adapter import session_for

CALLER = RequestContext(user="u1", tenant="t1", roles=("reader", "member"))


def region(auth: str = regions.IDENTITY_HEADERS) -> regions.Region:
    return regions.Region("east", "http://east.example", auth, 5.0, None)


@pytest.fixture
def east(tmp_path: Any) -> Any:
    return make_stack(tmp_path)


def client(east: Any, context: RequestContext = CALLER, **kw: Any) -> RemoteGlance:
    return RemoteGlance(region(**kw), context, session=session_for(east.api))


def test_images_members_and_data_as_the_caller(east: Any) -> None:
    remote = client(east)
    assert remote.get_image("00000000-0000-0000-0000-000000000001") is None
    image = remote.create_image({"name": "x", "disk_format": "raw",
                                 "container_format": "bare", "visibility": "shared"})
    assert image["owner"] == "t1" and image["status"] == "queued"
    remote.upload(image["id"], iter([b"abc", b"def"]), 6)
    assert remote.get_image(image["id"])["status"] == "active"
    assert b"".join(remote.download(image["id"], 6)) == b"abcdef"
    remote.add_member(image["id"], "t2")
    assert [m["member_id"] for m in remote.members(image["id"])] == ["t2"]
    changed = remote.patch_image(image["id"], [{"op": "add", "path": "/k", "value": "v"}])
    assert changed["k"] == "v"
    # Another project sees nothing of it.
    other = client(east, RequestContext(user="u2", tenant="t9", roles=("reader", "member")))
    assert other.get_image(image["id"]) is None
    with pytest.raises(exception.NotFound, match="Region east answered 404"):
        other.delete_image(image["id"])
    remote.delete_image(image["id"])
    assert remote.get_image(image["id"]) is None


def test_remote_refusals_are_ours(east: Any) -> None:
    remote = client(east)
    with pytest.raises(exception.Invalid, match="Region east answered 400"):
        remote.create_image({"name": "x", "disk_format": "nope"})
    image = remote.create_image({"name": "x", "disk_format": "raw",
                                 "container_format": "bare"})
    with pytest.raises(exception.Conflict):
        remote.create_image({"id": image["id"], "name": "again"})
    remote.upload(image["id"], iter([b"abc"]), 3)
    with pytest.raises(exception.Conflict, match="Region east answered 409 to PUT"):
        remote.upload(image["id"], iter([b"abc"]), 3)


def test_token_auth_forwards_the_token(east: Any) -> None:
    remote = client(east, RequestContext(user="u1", tenant="t1", auth_token="tok"),
                    auth=regions.TOKEN)
    assert remote._headers()["X-Auth-Token"] == "tok"
    assert "X-Tenant-Id" not in remote._headers()


def test_unreachable_region() -> None:
    remote = RemoteGlance(regions.Region("west", "http://127.0.0.1:9", regions.TOKEN,
                                         5.0, None), CALLER)
    with pytest.raises(exception.RemoteServiceUnavailable, match="Region west"):
        remote.get_image("x")


def test_regions_configuration(tmp_path: Any) -> None:
    conf = make_conf(tmp_path, {"enabled_regions": ["east"]})
    with pytest.raises(exception.ConfigError, match=r"\[region_east\] api_url"):
        regions.Regions(conf)
    conf = make_conf(tmp_path, {"enabled_regions": ["east"],
                                "region_east.api_url": "http://east.example:9292/"})
    known = regions.Regions(conf)
    assert known.names() == ["east"]
    assert known.get("east").api_url == "http://east.example:9292"
    assert known.get("east").auth == regions.TOKEN
    for name in ("west", None, ["east"]):
        with pytest.raises(exception.Invalid, match="Unknown region"):
            known.get(name)
