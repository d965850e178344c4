"""What ``GET /v2/info/stores/detail`` tells admins of each named store:
its driver type, weight and a few driver settings, as newer Glance lists
them (sizes in bytes). Credentials and endpoints are never shown.

The RBD store's ``fsid`` is not listed: learning it takes a connection to
the cluster, which a discovery call should not depend on.
"""

from __future__ import annotations

from typing import Any

from glance_clone.common.chunking import CHUNK_SIZE

MiB = 1024 * 1024


def _file(opts: Any) -> dict[str, Any]:
    # Data is read and written in CHUNK_SIZE pieces; files are written whole.
    return {"data_dir": opts.filesystem_store_datadir, "chunk_size": CHUNK_SIZE,
            "thin_provisioning": False}


def _rbd(opts: Any) -> dict[str, Any]:
    return {"chunk_size": opts.rbd_store_chunk_size * MiB, "pool": opts.rbd_store_pool,
            "thin_provisioning": opts.rbd_thin_provisioning}


def _swift(opts: Any) -> dict[str, Any]:
    return {"container": opts.swift_store_container,
            "large_object_size": opts.swift_store_large_object_size * MiB,
            "large_object_chunk_size": opts.swift_store_large_object_chunk_size * MiB}


def _s3(opts: Any) -> dict[str, Any]:
    return {"s3_store_large_object_size": opts.s3_store_large_object_size * MiB,
            "s3_store_large_object_chunk_size":
                opts.s3_store_large_object_chunk_size * MiB,
            "s3_store_thread_pools": opts.s3_store_thread_pools}


PROPERTIES = {"file": _file, "rbd": _rbd, "swift": _swift, "s3": _s3}


def store_properties(store: Any) -> dict[str, Any]:
    """The listed settings of ``store`` (a ``backend.Store``); http: none."""
    shown = PROPERTIES.get(store.type)
    return shown(store.driver.conf.glance_store) if shown else {}
