"""Safety of glance-api as a real process (issue 3's advisories list).

The module's main deployment (``glance``) runs on every backend set; the
``strict`` one only checks refusals made before any store is involved.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(180)

CAP = 100_000
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def glance(tmp_path_factory, backend):
    base = tmp_path_factory.mktemp("safety")
    dep = harness.Deployment(base, backend=backend, api_options={
        "DEFAULT": {"image_size_cap": CAP, "image_property_quota": 3,
                    "max_header_line": 4096},
        # Only our own test server's host is allowed; everything internal
        # otherwise stays refused.
        "import_filtering_opts": {"allowed_hosts": "127.0.0.1"},
    })
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A deployment with the default import filter (no allowed hosts)."""
    base = tmp_path_factory.mktemp("strict")
    dep = harness.Deployment(base, api_options={"import_filtering_opts": {"allowed_hosts": ""}})
    dep.start()
    yield dep
    dep.stop()


@pytest.fixture(scope="module")
def verbose(tmp_path_factory):
    """A deployment logging at debug level (127.0.0.1 allowed as a source)."""
    base = tmp_path_factory.mktemp("verbose")
    dep = harness.Deployment(base, api_options={"DEFAULT": {"debug": True}},
                             registry_options={"DEFAULT": {"debug": True}})
    dep.start()
    yield dep
    dep.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    redirect_to = None

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", type(self).redirect_to)
            self.end_headers()
            return
        body = b"remote image data" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def remote():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def post(dep, headers, data=None, tenant="t1"):
    return requests.post(dep.url + "/v1/images", data=data,
                         headers=dict(harness.identity(tenant), **headers))


def images_in_status(dep, status):
    # changes-since also lists killed and deleted images.
    found = requests.get(dep.url + "/v1/images/detail?is_public=none&status=%s"
                         "&changes-since=2000-01-01T00:00:00&limit=1000" % status,
                         headers=harness.admin()).json()["images"]
    return [i["id"] for i in found]


def assert_nothing_left(dep):
    """Every name in the store (file, object, segment, multipart upload)
    belongs to an active image, and no upload is still saving."""
    active = images_in_status(dep, "active")
    leftovers = [name for name in dep.stored_files()
                 if name.endswith(".partial") or not any(name.startswith(i) for i in active)]
    assert leftovers == []
    assert images_in_status(dep, "saving") == []


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "filesystem:///etc/passwd", "swift+config://ref1/c/o",
    "gopher://example.org/x", "", "http://0x7f.1/x",
])
def test_unsafe_locations_are_refused(strict, url):
    before = images_in_status(strict, "queued") + images_in_status(strict, "active")
    response = post(strict, dict(IMAGE, **{"x-image-meta-location": url}))
    assert response.status_code == 400, response.text
    assert ("External source" in response.text) or ("not be empty" in response.text)
    after = images_in_status(strict, "queued") + images_in_status(strict, "active")
    assert after == before


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x", "http://2130706433/x", "http://[::1]/x",
    "http://localhost/x", "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/x", "http://0.0.0.0/x", "http://[::ffff:127.0.0.1]/x",
])
def test_internal_hosts_are_refused_for_locations_and_copy_from(strict, url):
    assert post(strict, dict(IMAGE, **{"x-image-meta-location": url})).status_code == 400
    copy = post(strict, dict(IMAGE, **{"x-glance-api-copy-from": url}))
    assert copy.status_code == 400, copy.text


def test_a_redirect_to_an_internal_host_is_refused(glance, strict, remote):
    # Allowed on the lenient deployment: the first hop is our test server,
    # but the redirect points at a host that is not allowed.
    _Handler.redirect_to = "http://169.254.169.254/latest/meta-data"
    active_before = images_in_status(glance, "active")
    response = post(glance, dict(IMAGE, **{"x-image-meta-location": remote + "/redirect"}))
    assert response.status_code == 400, response.text
    assert images_in_status(glance, "active") == active_before


def test_allowed_external_location_works_and_is_never_shown(glance, remote):
    created = post(glance, dict(IMAGE, **{"x-image-meta-location": remote + "/image"}))
    assert created.status_code == 201, created.text
    image = created.json()["image"]
    assert image["status"] == "active" and image["size"] == 1700
    for response in (created,
                     requests.head(glance.url + "/v1/images/" + image["id"],
                                   headers=harness.identity("t1")),
                     requests.get(glance.url + "/v1/images/detail",
                                  headers=harness.identity("t1"))):
        text = response.text + json.dumps(dict(response.headers))
        assert remote not in text
        assert "location" not in response.text
        assert not any("location" in name.lower() for name in response.headers
                       if name.lower().startswith("x-image-meta"))
    download = requests.get(glance.url + "/v1/images/" + image["id"],
                            headers=harness.identity("t1"))
    assert download.content == b"remote image data" * 100


def test_store_location_never_leaks(glance):
    created = post(glance, IMAGE, data=b"x" * 1000)
    assert created.status_code == 201
    image_id = created.json()["image"]["id"]
    for response in (created,
                     requests.head(glance.url + "/v1/images/" + image_id,
                                   headers=harness.identity("t1")),
                     requests.get(glance.url + "/v1/images/detail",
                                  headers=harness.identity("t1")),
                     requests.put(glance.url + "/v1/images/" + image_id,
                                  headers=dict(harness.identity("t1"),
                                               **{"x-image-meta-name": "renamed"}))):
        text = response.text + json.dumps(dict(response.headers))
        assert [s for s in glance.revealing() if s in text] == []


def test_other_tenants_cannot_touch_an_image(glance):
    private = post(glance, dict(IMAGE, **{"x-image-meta-name": "mine"}), data=b"p" * 100,
                   tenant="owner").json()["image"]["id"]
    url = glance.url + "/v1/images/" + private
    intruder = harness.identity("intruder")
    assert requests.delete(url, headers=intruder).status_code == 404
    rename = {"x-image-meta-name": "x"}
    assert requests.put(url, headers=dict(intruder, **rename)).status_code == 404
    assert requests.put(url + "/members/intruder", headers=intruder).status_code == 404
    assert requests.get(url, headers=intruder).status_code == 404
    # A member can download but not change or re-share.
    assert requests.put(url + "/members/friend",
                        headers=harness.identity("owner")).status_code == 204
    friend = harness.identity("friend")
    assert requests.get(url, headers=friend).content == b"p" * 100
    assert requests.delete(url, headers=friend).status_code in (403, 404)
    assert requests.put(url, headers=dict(friend, **rename)).status_code in (403, 404)
    assert requests.put(url + "/members/third", headers=friend).status_code in (403, 404)
    assert requests.head(url, headers=harness.identity("owner")).headers[
        "x-image-meta-name"] == "mine"


def test_status_cannot_be_written_by_clients(glance):
    image_id = post(glance, {"x-image-meta-name": "q"}).json()["image"]["id"]
    url = glance.url + "/v1/images/" + image_id
    response = requests.put(url, headers=dict(harness.identity("t1"),
                                              **{"x-image-meta-status": "active"}))
    assert response.status_code == 403
    created = post(glance, {"x-image-meta-status": "active", "x-image-meta-name": "s"})
    assert created.json()["image"]["status"] == "queued"


def test_declared_size_over_the_cap_is_refused_before_storing(glance):
    response = post(glance, dict(IMAGE, **{"x-image-meta-size": str(CAP + 1)}))
    assert response.status_code == 400
    assert "Denying attempt to upload image larger than" in response.text
    too_long = post(glance, IMAGE, data=b"z" * (CAP + 1))
    assert too_long.status_code == 400
    assert_nothing_left(glance)


def test_chunked_body_over_the_cap_is_stopped_with_413(glance):
    def body():
        for _ in range(40):
            yield b"c" * 8192

    before = set(images_in_status(glance, "killed"))
    response = post(glance, IMAGE, data=body())
    assert response.status_code == 413, response.text
    killed = set(images_in_status(glance, "killed")) - before
    assert len(killed) == 1
    assert not [name for name in glance.stored_files() for k in killed if name.startswith(k)]
    assert_nothing_left(glance)


def test_long_header_lines_and_too_many_properties(glance):
    response = post(glance, {"x-image-meta-name": "n" * 5000})
    assert response.status_code == 400
    props = {"x-image-meta-property-p%d" % i: "v" for i in range(4)}
    response = post(glance, props)
    assert response.status_code == 413
    assert "image properties" in response.text


def test_client_disconnect_mid_upload_leaves_nothing(glance):
    killed_before = set(images_in_status(glance, "killed"))
    with socket.create_connection(("127.0.0.1", glance.api.port)) as sock:
        headers = dict(harness.identity("t1"), **IMAGE)
        headers["Content-Length"] = str(50_000)
        request = "POST /v1/images HTTP/1.1\r\nHost: x\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        sock.sendall(request.encode() + os.urandom(10_000))
    harness.wait_until(lambda: set(images_in_status(glance, "killed")) - killed_before,
                       30, message="the interrupted upload to be killed")
    assert_nothing_left(glance)


def test_source_credentials_stay_out_of_answers_and_debug_logs(verbose, remote):
    secret = remote.replace("http://", "http://admin:s3cret@") + "/image?sig=t0ken"
    created = post(verbose, dict(IMAGE, **{"x-image-meta-location": secret}))
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    download = requests.get(verbose.url + "/v1/images/" + image_id,
                            headers=harness.identity("t1"))
    assert download.content == b"remote image data" * 100
    copied = post(verbose, dict(IMAGE, **{"x-glance-api-copy-from": secret}))
    assert copied.status_code == 201, copied.text
    copy_id = copied.json()["image"]["id"]
    harness.wait_until(lambda: copy_id in images_in_status(verbose, "active"), 30,
                       message="the copy to become active")
    refused = post(verbose, dict(IMAGE, **{
        "x-image-meta-location": "http://admin:s3cret@10.0.0.1/private?sig=t0ken"}))
    assert refused.status_code == 400
    assert "External sources are not supported: &#x27;http://10.0.0.1&#x27;" in refused.text
    _Handler.redirect_to = "http://admin:s3cret@169.254.169.254/private?sig=t0ken"
    redirected = post(verbose, dict(IMAGE, **{"x-image-meta-location": remote + "/redirect"}))
    assert redirected.status_code == 400
    answers = "".join(r.text for r in (created, copied, refused, redirected))
    logs = verbose.api.log_path.read_text() + verbose.registry.log_path.read_text()
    assert " DEBUG " in logs
    for hidden in ("s3cret", "t0ken", "/private", "169.254"):
        assert hidden not in answers + logs, hidden
