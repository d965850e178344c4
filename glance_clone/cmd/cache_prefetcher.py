"""glance-cache-prefetcher: fetch the images queued in the cache's queue/.

Reads image metadata from glance-registry as admin (``registry_host``,
``registry_port``; towards a trusted-auth registry ``send_identity_headers``
with ``admin_user``, ``admin_tenant_name``, ``admin_role``; towards a keystone
one a token of the admin credentials, as for glance-scrubber) and the data from the
image's location through the store drivers (``[glance_store]``), verifying
each image's checksum before it enters the cache. Exit 0 even when some
images could not be fetched (they are logged; the others stay queued).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from glance_clone.cache import prefetcher, tool
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import config
from glance_clone.common.context import RequestContext
from glance_clone.registry.client.v1 import client
from glance_clone.store import backend

PROG = "glance-cache-prefetcher"


def _register(conf: cfg.ConfigOpts) -> None:
    client.register_opts(conf)
    backend.register_opts(conf)
    for opt in config.CONTEXT_OPTS:
        if opt.name == "admin_role":
            conf.register_opt(opt)


def _prefetch(conf: cfg.ConfigOpts) -> int:
    cache = ImageCache(conf)
    stores = backend.StoreSet(conf)
    context = RequestContext(user=conf.admin_user, tenant=conf.admin_tenant_name,
                             roles=(conf.admin_role,), is_admin=True)
    registry = client.RegistryClient(conf, as_service=True)
    prefetcher.Prefetcher(cache, registry, stores, context).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return tool.run_tool(PROG, argv, _register, _prefetch)


if __name__ == "__main__":
    sys.exit(main())
