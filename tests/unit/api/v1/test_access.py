"""Who may call: unauthenticated and read-only callers, policy files and
property protections through the API (api-v1.md sections 1, 9, 10)."""

from __future__ import annotations

import textwrap

import pytest

from .helpers import (
    ADMIN,
    FORMATS,
    all_images,
    create,
    create_image,
    head,
    message,
    meta,
    policy_file,
)

pytestmark = pytest.mark.timeout(60)

PROTECTIONS = """
[^x_hidden_]
create = admin
read = admin
update = admin
delete = admin

[^x_fixed_]
create = member
read = member
update = !
delete = admin

[^x_open_]
create = @
read = @
update = @
delete = @
"""


def stored(stack, image_id):
    """Every property of an image, read by a caller holding every role."""
    headers = head(stack, image_id, tenant="t1", roles="admin,member").headers
    prefix = "x-image-meta-property-"
    return {k.lower()[len(prefix):]: v for k, v in headers.items()
            if k.lower().startswith(prefix)}


def anonymous(stack, path, method="GET", **kwargs):
    return stack.request(path, method, tenant=None, roles="", **kwargs)


# -- identity ------------------------------------------------------------------------
def test_unconfirmed_callers_get_401(stack):
    response = anonymous(stack, "/v1/images")
    assert response.status_int == 401


@pytest.fixture
def open_stack(stack_with):
    # Anonymous callers have no role: only the old default rules let them read.
    return stack_with({"allow_anonymous_access": True,
                       "oslo_policy.enforce_new_defaults": False})


def test_anonymous_callers_read_nothing_under_the_new_defaults(stack_with):
    stack = stack_with({"allow_anonymous_access": True})
    image = create_image(stack, {"x-image-meta-is_public": "true"}, body=b"data", **ADMIN)
    assert anonymous(stack, "/v1/images").status_int == 403
    assert anonymous(stack, "/v1/images/" + image["id"]).status_int == 403


def test_anonymous_callers_may_read(open_stack):
    image = create_image(open_stack, {"x-image-meta-is_public": "true"}, body=b"data", **ADMIN)
    assert [i["id"] for i in anonymous(open_stack, "/v1/images").json["images"]] == [image["id"]]
    assert anonymous(open_stack, "/v1/images/" + image["id"]).body == b"data"
    assert anonymous(open_stack, "/v1/images/%s/members" % image["id"]).status_int == 200


def test_read_only_callers_cannot_write(open_stack):
    image = create_image(open_stack, {"x-image-meta-is_public": "true",
                                      "x-image-meta-name": "n"}, body=b"data", **ADMIN)
    calls = [
        ("/v1/images", "POST", {"headers": {"x-image-meta-name": "x"}}),
        ("/v1/images", "POST", {"body": b"data", "headers": FORMATS}),
        ("/v1/images/" + image["id"], "PUT", {"headers": {"x-image-meta-name": "x"}}),
        ("/v1/images/" + image["id"], "DELETE", {}),
        ("/v1/images/%s/members/t2" % image["id"], "PUT", {}),
        ("/v1/images/%s/members/t2" % image["id"], "DELETE", {}),
        ("/v1/images/%s/members" % image["id"], "PUT", {
            "body": b'{"memberships": []}', "headers": {"Content-Type": "application/json"}}),
    ]
    for path, method, kwargs in calls:
        response = anonymous(open_stack, path, method, **kwargs)
        assert response.status_int == 403, (path, method)
        assert "Read-only access" in message(response)
    assert [i["id"] for i in all_images(open_stack)] == [image["id"]]
    assert meta(open_stack, image["id"])["name"] == "n"
    assert open_stack.stored_files() == [image["id"]]


def test_admin_is_a_role(stack):
    image = create_image(stack, tenant="t1")
    assert head(stack, image["id"], tenant="t2", roles="reader,member").status_int == 404
    assert head(stack, image["id"], tenant="t2", roles="Member,ADMIN").status_int == 200


def test_context_is_admin_policy_is_not_used_by_roles_alone(stack_with, tmp_path):
    stack = stack_with({"admin_role": "boss"})
    image = create_image(stack, tenant="t1")
    assert head(stack, image["id"], tenant="t2", roles="admin").status_int == 404
    # The default rules want the reader role besides admin-ness.
    assert head(stack, image["id"], tenant="t2", roles="boss,reader").status_int == 200


# -- policy files ----------------------------------------------------------------------
def test_policy_file_rules_apply(stack_with, tmp_path):
    rules = {"get_images": "role:reader", "add_image": "tenant:t1"}
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, rules)})
    assert stack.request("/v1/images", tenant="t1", roles="member").status_int == 403
    assert stack.request("/v1/images/detail", tenant="t1", roles="member").status_int == 403
    assert stack.request("/v1/images", tenant="t1", roles="reader").status_int == 200
    assert create(stack, tenant="t2").status_int == 403
    assert create(stack, tenant="t1").status_int == 201


def test_policy_denial_is_403_with_default_text(stack_with, tmp_path):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {"get_images": "!"})})
    response = stack.request("/v1/images", tenant="t1", headers={"Accept": "text/plain"})
    assert response.status_int == 403
    assert message(response).startswith("403 Forbidden")


# -- property protections ----------------------------------------------------------------
@pytest.fixture
def guarded(stack_with, tmp_path):
    path = tmp_path / "protections.conf"
    path.write_text(textwrap.dedent(PROTECTIONS))
    return stack_with({"property_protection_file": str(path)})


def test_creating_a_protected_property_is_403(guarded):
    response = create(guarded, {"x-image-meta-property-x_hidden_a": "1"})
    assert response.status_int == 403
    assert "Property 'x_hidden_a' is protected" in message(response)
    assert all_images(guarded) == []
    response = create(guarded, {"x-image-meta-property-other": "1"}, roles="admin")
    assert response.status_int == 403
    assert "Property 'other' is protected" in message(response)


def test_unreadable_properties_are_hidden_except_in_the_create_answer(guarded):
    response = create(guarded, dict(FORMATS, **{"x-image-meta-property-x_hidden_a": "1",
                                                "x-image-meta-property-x_open_b": "2"}),
                      body=b"data", roles="admin,member", tenant="t1")
    assert response.status_int == 201
    image = response.json["image"]
    assert image["properties"] == {"x_hidden_a": "1", "x_open_b": "2"}
    caller = {"tenant": "t1", "roles": "reader,member"}
    headers = head(guarded, image["id"], **caller).headers
    assert "x-image-meta-property-x_hidden_a" not in headers
    assert headers["x-image-meta-property-x_open_b"] == "2"
    download = guarded.request("/v1/images/" + image["id"], **caller)
    assert "x-image-meta-property-x_hidden_a" not in download.headers
    assert download.body == b"data"
    detail = guarded.request("/v1/images/detail", **caller).json["images"]
    assert detail[0]["properties"] == {"x_open_b": "2"}
    updated = guarded.request("/v1/images/" + image["id"], "PUT", headers={
        "x-image-meta-property-x_open_b": "3"}, **caller)
    assert updated.status_int == 200
    assert updated.json["image"]["properties"] == {"x_open_b": "3"}
    # Purging by someone who cannot read it keeps it.
    assert meta(guarded, image["id"])["property-x_hidden_a"] == "1"


def test_unreadable_properties_are_hidden_on_empty_image_download(guarded):
    image = create_image(guarded, {"x-image-meta-size": "0",
                                   "x-image-meta-property-x_hidden_a": "1"}, roles="admin")
    download = guarded.request("/v1/images/" + image["id"], tenant="t1", roles="reader,member")
    assert download.status_int == 200
    assert "x-image-meta-property-x_hidden_a" not in download.headers


def test_update_rules_of_protected_properties(guarded):
    image = create_image(guarded, {"x-image-meta-property-x_fixed_a": "1",
                                   "x-image-meta-property-x_open_b": "2"}, roles="reader,member")
    member = {"tenant": "t1", "roles": "reader,member"}
    merge = {"x-glance-registry-purge-props": "false"}

    def put(headers, **caller):
        return guarded.request("/v1/images/" + image["id"], "PUT", headers=headers,
                               **(caller or member))
    # Same value: fine; new value needs update (nobody).
    assert put(dict(merge, **{"x-image-meta-property-x_fixed_a": "1"})).status_int == 200
    response = put(dict(merge, **{"x-image-meta-property-x_fixed_a": "2"}))
    assert response.status_int == 403
    assert "Property 'x_fixed_a' is protected" in message(response)
    # Purging it needs delete (admin only).
    response = put({"x-image-meta-property-x_open_b": "2"})
    assert response.status_int == 403
    assert stored(guarded, image["id"]) == {"x_fixed_a": "1", "x_open_b": "2"}
    # A new property needs create.
    assert put(dict(merge, **{"x-image-meta-property-x_hidden_z": "1"})).status_int == 403
    # Admins hold delete but not read: dropping an unreadable one keeps it.
    response = put({"x-image-meta-property-x_open_b": "2"}, tenant="t1", roles="admin")
    assert response.status_int == 200
    assert stored(guarded, image["id"]) == {"x_fixed_a": "1", "x_open_b": "2"}
    response = put({"x-image-meta-property-x_open_b": "2"}, tenant="t1",
                   roles="admin,member")
    assert response.status_int == 200
    assert stored(guarded, image["id"]) == {"x_open_b": "2"}


def test_filtering_on_an_unreadable_property_is_refused(guarded):
    image = create_image(guarded, {"x-image-meta-property-x_hidden_a": "1",
                                   "x-image-meta-property-x_open_b": "2"},
                         tenant="t1", roles="admin,member")
    member = {"tenant": "t1", "roles": "reader,member"}
    for path in ("/v1/images", "/v1/images/detail"):
        # Whatever the value, the same refusal: no answer tells it.
        for value in ("1", "2"):
            response = guarded.request(path + "?property-x_hidden_a=" + value, **member)
            assert response.status_int == 400
            assert "Filtering on property 'x_hidden_a' is not allowed" in message(response)
        # A property no section matches is unreadable too.
        assert guarded.request(path + "?property-unlisted=1", **member).status_int == 400
        readable = guarded.request(path + "?property-x_open_b=2", **member)
        assert [i["id"] for i in readable.json["images"]] == [image["id"]]
        allowed = guarded.request(path + "?property-x_hidden_a=1", tenant="t1", roles="admin")
        assert [i["id"] for i in allowed.json["images"]] == [image["id"]]
        # Sorting is by image fields only, never by a property.
        assert guarded.request(path + "?sort_key=x_hidden_a", **member).status_int == 400
