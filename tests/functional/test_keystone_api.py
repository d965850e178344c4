"""glance-api on the keystone flavor against a real Keystone.

Tokens come from password logins at the Keystone of ``KEYSTONE_URL``; the
api checks them with keystonemiddleware and sends the caller's identity to
a trusted-auth registry (``send_identity_headers``). One deployment serves
the whole module; each test makes its own projects and users.
"""

from __future__ import annotations

import pytest
import requests

from tests.functional import harness, keystone_harness

pytestmark = [pytest.mark.needs("keystone"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def glance(keystone_glance) -> harness.Deployment:
    """The keystone-flavor deployment of this module (see the conftest)."""
    return keystone_glance


def auth(token: str, **headers: str) -> dict[str, str]:
    return dict(headers, **{"X-Auth-Token": token})


def create(glance: harness.Deployment, token: str, data: bytes = b"keystone" * 100,
           **meta: str) -> dict:
    headers = auth(token, **{"x-image-meta-name": "ks", "x-image-meta-disk_format": "raw",
                             "x-image-meta-container_format": "bare",
                             "Content-Type": "application/octet-stream"})
    headers.update({"x-image-meta-" + key: value for key, value in meta.items()})
    created = requests.post(glance.url + "/v1/images", data=data, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["image"]


def listed(glance: harness.Deployment, token: str, query: str = "") -> list[str]:
    found = requests.get(glance.url + "/v1/images/detail" + query, headers=auth(token),
                         timeout=30)
    assert found.status_code == 200, found.text
    return [image["id"] for image in found.json()["images"]]


def test_no_token_or_a_bad_one_is_401_naming_keystone(glance, keystone):
    challenge = 'Keystone uri="%s"' % keystone.url
    for headers in ({}, auth("not-a-token"), auth("gAAAAABn" + "x" * 180)):
        res = requests.get(glance.url + "/v1/images", headers=headers, timeout=30)
        assert res.status_code == 401, (headers, res.text)
        assert res.headers["WWW-Authenticate"] == challenge


def test_a_revoked_token_is_401(glance, keystone):
    user = keystone.user()
    revoked, valid = keystone.token(user), keystone.token(user)
    keystone.revoke(revoked)
    res = requests.get(glance.url + "/v1/images", headers=auth(revoked), timeout=30)
    assert res.status_code == 401
    assert "WWW-Authenticate" in res.headers
    assert requests.get(glance.url + "/v1/images", headers=auth(valid),
                        timeout=30).status_code == 200


def test_an_expired_token_is_401(glance, keystone):
    user = keystone.user()
    # Long enough for the first request below even on a loaded machine
    # (the token comes 1 to 3 s after the credential); every second more
    # is waited for in full.
    token = keystone.expiring_token(user, seconds=12)
    images = glance.url + "/v1/images"
    # Valid now: keystonemiddleware validates it and caches the answer...
    assert requests.get(images, headers=auth(token), timeout=30).status_code == 200

    def refused() -> bool:
        res = requests.get(images, headers=auth(token), timeout=30)
        assert res.status_code in (200, 401), res.text
        return res.status_code == 401 and "WWW-Authenticate" in res.headers
    # ...and refused once it has expired, the cached answer included.
    harness.wait_until(refused, deadline=90, interval=1, message="the token to expire")


def test_a_token_makes_its_project_the_owner_and_scopes_visibility(glance, keystone):
    alice, bob = keystone.user(), keystone.user()
    alice_token, bob_token = keystone.token(alice), keystone.token(bob)
    image = create(glance, alice_token)
    assert image["owner"] == alice.project_id
    assert image["is_public"] is False
    image_url = glance.url + "/v1/images/" + image["id"]

    assert image["id"] in listed(glance, alice_token)
    assert image["id"] not in listed(glance, bob_token)
    # The trusted-auth registry knows callers only by the identity headers
    # glance-api sends: without them it answers 401.
    registry_url = glance.registry.url + "/images/" + image["id"]
    assert requests.get(registry_url, timeout=30).status_code == 401
    assert requests.get(registry_url, headers=harness.identity(alice.project_id),
                        timeout=30).status_code == 200
    assert requests.head(image_url, headers=auth(bob_token), timeout=30).status_code == 404

    # Alice's project shares it with Bob's: Bob sees it and reads its data.
    member_url = image_url + "/members/" + bob.project_id
    assert requests.put(member_url, headers=auth(alice_token), timeout=30).status_code == 204
    assert image["id"] in listed(glance, bob_token)
    assert requests.get(image_url, headers=auth(bob_token), timeout=30).content == \
        b"keystone" * 100
    shared = requests.get(glance.url + "/v1/shared-images/" + bob.project_id,
                          headers=auth(bob_token), timeout=30).json()["shared_images"]
    assert [s["image_id"] for s in shared] == [image["id"]]
    # Members cannot change the image, and only the owner manages members
    # (404: a member may see the image but not what it would change).
    assert requests.put(image_url, headers=auth(bob_token, **{"x-image-meta-name": "mine"}),
                        timeout=30).status_code == 404
    assert requests.delete(member_url, headers=auth(bob_token), timeout=30).status_code == 404
    assert requests.delete(member_url, headers=auth(alice_token), timeout=30).status_code == 204
    assert image["id"] not in listed(glance, bob_token)


def test_policy_roles_come_from_the_token(glance, keystone):
    member_token = keystone.token(keystone.user())
    publish = {"x-image-meta-is_public": "true"}
    refused = requests.post(glance.url + "/v1/images", headers=auth(member_token, **dict(
        publish, **{"x-image-meta-name": "public", "x-image-meta-disk_format": "raw",
                    "x-image-meta-container_format": "bare"})), timeout=30)
    assert refused.status_code == 403, refused.text
    image = create(glance, member_token)
    assert requests.put(glance.url + "/v1/images/" + image["id"],
                        headers=auth(member_token, **publish), timeout=30).status_code == 403

    # The same user with the admin role on the project may publicize.
    admin_user = keystone.user(roles=("member", "admin"))
    admin_image = create(glance, keystone.token(admin_user), is_public="true")
    assert admin_image["is_public"] is True
    assert admin_image["owner"] == admin_user.project_id


def test_an_admin_token_sees_every_project_s_images(glance, keystone):
    owner = keystone.user()
    private = create(glance, keystone.token(owner))
    admin_token = keystone.admin_token()
    assert private["id"] not in listed(glance, admin_token)   # lists default to public
    assert private["id"] in listed(glance, admin_token, "?is_public=none")
    head = requests.head(glance.url + "/v1/images/" + private["id"], headers=auth(admin_token),
                         timeout=30)
    assert head.status_code == 200
    assert head.headers["x-image-meta-owner"] == owner.project_id
    assert requests.delete(glance.url + "/v1/images/" + private["id"],
                           headers=auth(admin_token), timeout=30).status_code == 200


def test_keystone_unreachable_is_503_until_it_answers_again(tmp_path, keystone):
    relay = keystone_harness.Relay(keystone.address).start()
    # No retries of the refused connections: the 503 comes at once.
    dep = keystone_harness.deployment(tmp_path, keystone, via=relay.url(), api_options={
        "keystone_authtoken": {"http_request_max_retries": 0}})
    try:
        dep.start()
        user = keystone.user()
        checked_before, unchecked = keystone.token(user), keystone.token(user)
        assert requests.get(dep.url + "/v1/images", headers=auth(checked_before),
                            timeout=30).status_code == 200

        relay.cut()
        res = requests.get(dep.url + "/v1/images", headers=auth(unchecked), timeout=60)
        assert res.status_code == 503, res.text
        assert "identity service (Keystone) could not be reached" in res.text
        # A token validated before the outage is still known to the api, and
        # a request without a token needs no Keystone to be refused.
        assert requests.get(dep.url + "/v1/images", headers=auth(checked_before),
                            timeout=30).status_code == 200
        assert requests.get(dep.url + "/v1/images", timeout=30).status_code == 401

        relay.start()
        assert requests.get(dep.url + "/v1/images", headers=auth(unchecked),
                            timeout=60).status_code == 200
    finally:
        relay.cut()
        dep.stop()


@pytest.mark.parametrize("flavor", ["keystone+caching", "keystone+cachemanagement"])
def test_cache_flavors_serve_and_guard_cached_images(tmp_path, keystone, flavor):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dep = keystone_harness.deployment(tmp_path, keystone, flavor=flavor, api_options={
        "DEFAULT": {"image_cache_dir": str(cache_dir)}})
    try:
        dep.start()
        owner = keystone.user()
        token, stranger = keystone.token(owner), keystone.token(keystone.user())
        data = b"cached" * 5000
        image = create(dep, token, data)
        image_url = dep.url + "/v1/images/" + image["id"]
        assert requests.get(image_url, headers=auth(token), timeout=30).content == data
        harness.wait_until(lambda: (cache_dir / image["id"]).exists(), 30,
                           message="the image to be cached")
        # A hit is served to its owner, and still hidden from other projects.
        assert requests.get(image_url, headers=auth(token), timeout=30).content == data
        assert requests.get(image_url, headers=auth(stranger), timeout=30).status_code == 404
        assert requests.get(image_url, timeout=30).status_code == 401

        cached = requests.get(dep.url + "/v1/cached_images",
                              headers=auth(keystone.admin_token()), timeout=30)
        if flavor == "keystone+cachemanagement":
            assert [c["image_id"] for c in cached.json()["cached_images"]] == [image["id"]]
            assert requests.get(dep.url + "/v1/cached_images", headers=auth(token),
                                timeout=30).status_code == 403
        else:
            assert cached.status_code == 404   # no cache management routes
    finally:
        dep.stop()
