"""Named stores (enabled_backends) as v2 shows them."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from .conftest import V2


def named_stores(v2_with: Callable[..., V2], tmp_path: pathlib.Path, **extra) -> V2:
    """An api with the file stores fast (the default) and cheap, and web (http)."""
    return v2_with({
        "enabled_backends": {"fast": "file", "cheap": "file", "web": "http"},
        "glance_store.default_backend": "fast",
        "fast.filesystem_store_datadir": str(tmp_path / "fast"),
        "fast.store_description": "Local SSD",
        "cheap.filesystem_store_datadir": str(tmp_path / "cheap"),
        **extra})


def test_info_stores_lists_the_named_stores(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    assert v2.call("GET", "/info/stores").json == {"stores": [
        {"id": "fast", "description": "Local SSD", "default": "true"},
        {"id": "cheap"}, {"id": "web", "read-only": "true"}]}


def test_uploads_go_to_the_default_store_and_say_so(v2_with,
                                                    tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = v2.create(name="i", disk_format="raw", container_format="bare")
    assert "stores" not in image
    assert v2.upload(image["id"], b"data").status_int == 204
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["stores"] == "fast"
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == [image["id"]]
    # Read-only: a client cannot claim stores.
    res = v2.call("POST", "/images", {"name": "x", "stores": "cheap"})
    assert res.status_int == 403
