"""The newer v2 routes through python-glanceclient 4.13 against real api
and registry processes: the cache API (the client checks the versions
document for it), and /v2/info/usage."""

from __future__ import annotations

import pytest

from tests.functional import clients, harness
from tests.functional.test_v2_clients import NO_ENV

pytestmark = pytest.mark.timeout(600)


@pytest.mark.stores("file")
def test_cache_api_and_usage_with_glanceclient_4(tmp_path, backend):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dep = harness.Deployment(tmp_path, api_flavor=None, registry_flavor=None,
                             backend=backend,
                             api_options={"DEFAULT": {"image_cache_dir": str(cache_dir)}})
    dep.start()
    bin_dir = clients.ensure_venv()

    def glance(*args: str, ok: bool = True):
        return clients.run(bin_dir / "glance", "--os-image-api-version", "2",
                           "--os-image-url", dep.url, "--os-auth-token", "unused",
                           *args, env=NO_ENV, ok=ok)
    try:
        data = tmp_path / "data.raw"
        data.write_bytes(b"x" * 4096)
        created = glance("image-create", "--name", "c", "--disk-format", "raw",
                         "--container-format", "bare", "--file", str(data))
        image_id = clients.table_value(created.stdout, "id")
        glance("cache-queue", image_id)
        assert image_id in glance("cache-list").stdout
        glance("cache-clear", "--target", "queue")
        assert image_id not in glance("cache-list").stdout
        glance("cache-queue", image_id)
        glance("cache-delete", image_id)
        assert image_id not in glance("cache-list").stdout
        usage = glance("usage").stdout
        assert "image_count_total" in usage and "image_size_total" in usage
    finally:
        dep.stop()
