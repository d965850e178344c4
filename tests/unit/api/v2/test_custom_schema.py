"""The deployer's schema-image.json: typed properties in the image schema
("is_base": false), validated like attributes, stored as properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glance_clone.api.v2 import router, schemas
from glance_clone.common import exception
from tests.support.stack import make_stack

from .conftest import V2

SHIPPED = Path(__file__).resolve().parents[4] / "etc" / schemas.SCHEMA_FILE


def v2_with_file(tmp_path: Path, monkeypatch: Any, document: Any) -> V2:
    path = tmp_path / schemas.SCHEMA_FILE
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    # An absolute name: find_file returns it as it is.
    monkeypatch.setattr(router, "SCHEMA_FILE", str(path))
    base = tmp_path / "stack"
    base.mkdir()
    return V2(make_stack(base))


def test_the_shipped_properties(tmp_path, monkeypatch) -> None:
    v2 = v2_with_file(tmp_path, monkeypatch, SHIPPED.read_text())
    served = v2.call("GET", "/schemas/image").json["properties"]
    assert served["os_distro"] == {"type": "string", "is_base": False,
                                   "description": served["os_distro"]["description"]}
    assert served["name"].get("is_base", True)
    kernel = "0b4e1f5e-8bd0-4d2a-9d40-1a2b3c4d5e6f"
    made = v2.create(name="n", os_distro="ubuntu", kernel_id=kernel)
    assert (made["os_distro"], made["kernel_id"]) == ("ubuntu", kernel)
    for bad in ({"kernel_id": "not-a-uuid"}, {"os_distro": 5},
                {"cinder_encryption_key_deletion_policy": "never"}):
        assert v2.call("POST", "/images", bad).status_int == 400, bad
    res = v2.patch(made["id"], [{"op": "replace", "path": "/ramdisk_id", "value": "x"}])
    assert res.status_int == 400
    # Stored as additional properties: removable, unlike attributes.
    res = v2.patch(made["id"], [{"op": "remove", "path": "/os_distro"}])
    assert res.status_int == 200 and "os_distro" not in res.json


def test_required_names_apply_to_creates_not_to_patches(tmp_path, monkeypatch) -> None:
    v2 = v2_with_file(tmp_path, monkeypatch, {
        "properties": {"cost_center": {"type": "string", "maxLength": 8}},
        "required": ["cost_center"]})
    assert v2.call("GET", "/schemas/image").json["required"] == ["cost_center"]
    assert v2.call("POST", "/images", {"name": "n"}).status_int == 400
    made = v2.create(name="n", cost_center="cc-1")
    assert v2.patch(made["id"], [{"op": "replace", "path": "/name",
                                  "value": "m"}]).status_int == 200
    assert v2.patch(made["id"], [{"op": "replace", "path": "/cost_center",
                                  "value": "far too long"}]).status_int == 400


@pytest.mark.parametrize("document, why", [
    ("{not json", "not readable JSON"), ("[]", "not a JSON object"),
    ({"name": {"type": "string"}}, "'name' is a base attribute"),
    ({"x": {"type": "nonsense"}}, "not a valid JSON schema"),
    ({"properties": {}, "required": "x"}, "'required' is not a list")])
def test_a_broken_file_stops_the_api_with_its_reason(tmp_path, document, why) -> None:
    path = tmp_path / schemas.SCHEMA_FILE
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(exception.ConfigError, match=why):
        schemas.custom_properties(str(path))
