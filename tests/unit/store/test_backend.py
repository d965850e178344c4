"""Tests for StoreSet: driver selection, startup checks and routing."""

from __future__ import annotations

import pathlib

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.store import backend
from glance_clone.store.file import FileDriver
from glance_clone.store.http import HttpDriver
from tests.unit.store.conftest import make_conf

pytestmark = pytest.mark.timeout(10)


def test_defaults(conf: cfg.ConfigOpts) -> None:
    stores = backend.StoreSet(conf)
    assert stores.known_schemes() == ["file", "filesystem", "http", "https"]
    assert stores.default_scheme == "file"
    assert isinstance(stores.driver_for_scheme("FILE"), FileDriver)
    assert isinstance(stores.driver_for_scheme("https"), HttpDriver)


def test_unknown_store_name(conf: cfg.ConfigOpts) -> None:
    conf.set_override("stores", ["file", "rbd"], "glance_store")
    with pytest.raises(exception.ConfigError, match="rbd"):
        backend.StoreSet(conf)


def test_no_stores(conf: cfg.ConfigOpts) -> None:
    conf.set_override("stores", [], "glance_store")
    with pytest.raises(exception.ConfigError):
        backend.StoreSet(conf)


def test_default_store_must_be_enabled(conf: cfg.ConfigOpts) -> None:
    conf.set_override("stores", ["http"], "glance_store")
    with pytest.raises(exception.ConfigError, match="default_store"):
        backend.StoreSet(conf)
    conf.set_override("default_store", "https", "glance_store")
    assert backend.StoreSet(conf).known_schemes() == ["http", "https"]


def test_file_store_needs_datadir() -> None:
    with pytest.raises(exception.ConfigError):
        backend.StoreSet(make_conf())
    # Not needed when the file store is off.
    conf = make_conf(glance_store={"stores": ["http"], "default_store": "http"})
    assert backend.StoreSet(conf).known_schemes() == ["http", "https"]


def test_lookup_errors(conf: cfg.ConfigOpts) -> None:
    stores = backend.StoreSet(conf)
    with pytest.raises(exception.UnknownScheme):
        stores.driver_for_scheme("s3")
    with pytest.raises(exception.UnknownScheme):
        stores.driver_for_uri("swift://account/container/obj")
    for uri in ("", "no-scheme", "/var/lib/glance/images/x"):
        with pytest.raises(exception.BadStoreUri):
            stores.driver_for_uri(uri)
    with pytest.raises(exception.UnknownScheme):
        stores.get_size("s3://bucket/obj")


def test_round_trip_through_default_store(conf: cfg.ConfigOpts, datadir: pathlib.Path) -> None:
    stores = backend.StoreSet(conf)
    url, size, _md5, meta = stores.add("img-1", iter([b"abc", b"def"]), 6)
    assert url == f"file://{datadir}/img-1" and size == 6 and meta == {}
    assert stores.get_size(url) == 6
    it, got_size = stores.get(url)
    assert (b"".join(it), got_size) == (b"abcdef", 6)
    stores.set_acls(url, public=True, read_tenants=["t1"])  # no-op for files
    stores.delete(url)
    with pytest.raises(exception.NotFound):
        stores.delete(url)


def test_add_to_read_only_scheme(conf: cfg.ConfigOpts) -> None:
    stores = backend.StoreSet(conf)
    with pytest.raises(exception.StoreAddDisabled):
        stores.add("img-1", iter([b"x"]), 1, scheme="http")
    with pytest.raises(exception.UnknownScheme):
        stores.add("img-1", iter([b"x"]), 1, scheme="s3")


def test_register_opts_twice_is_harmless() -> None:
    conf = cfg.ConfigOpts()
    backend.register_opts(conf)
    backend.register_opts(conf)
    conf([], default_config_files=[], default_config_dirs=[])
    assert conf.glance_store.stores == ["file", "http"]
    assert conf.import_filtering_opts.allowed_schemes == ["http", "https"]
