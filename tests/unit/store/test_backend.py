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


def named_conf(tmp_path: pathlib.Path, backends: dict[str, str], default: str = "fast",
               **sections: dict[str, object]) -> cfg.ConfigOpts:
    """A configuration of named stores, written as an operator would."""
    lines = ["[DEFAULT]",
             "enabled_backends = " + ", ".join("%s:%s" % kv for kv in backends.items()),
             "[glance_store]", "default_backend = " + default]
    for section, values in sections.items():
        lines.append("[%s]" % section)
        lines += ["%s = %s" % kv for kv in values.items()]
    path = tmp_path / "glance-api.conf"
    path.write_text("\n".join(lines) + "\n")
    conf = cfg.ConfigOpts()
    backend.register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    return conf


def test_named_stores_each_with_its_section(tmp_path: pathlib.Path) -> None:
    conf = named_conf(tmp_path, {"fast": "file", "cheap": "file", "web": "http"},
                      fast={"filesystem_store_datadir": tmp_path / "fast",
                            "store_description": "Local SSD"},
                      cheap={"filesystem_store_datadir": tmp_path / "cheap",
                             "weight": 5})
    stores = backend.StoreSet(conf)
    assert stores.multi and list(stores.stores) == ["fast", "cheap", "web"]
    assert stores.default_id == "fast" and stores.writable() == ["fast", "cheap"]
    assert stores.stores["fast"].description == "Local SSD"
    assert stores.stores["cheap"].weight == 5 and stores.stores["web"].read_only
    # New data goes to the default store unless a store is named; the
    # location metadata names the store, and each URL is read by its own.
    fast_url, _size, _md5, meta = stores.add("img", iter([b"abc"]), 3)
    assert fast_url == "file://%s/img" % (tmp_path / "fast") and meta == {"store": "fast"}
    cheap_url, _size, _md5, meta = stores.add("img", iter([b"abcd"]), 4, "cheap")
    assert cheap_url == "file://%s/img" % (tmp_path / "cheap") and meta == {"store": "cheap"}
    assert stores.store_for_uri(cheap_url).id == "cheap"
    assert stores.get_size(cheap_url) == 4 and stores.get_size(fast_url) == 3
    stores.delete(cheap_url)
    assert stores.get_size(fast_url) == 3
    with pytest.raises(exception.UnknownScheme):
        stores.add("img", iter([b"x"]), 1, "nowhere")


def test_named_stores_read_http_without_an_http_store(tmp_path: pathlib.Path) -> None:
    conf = named_conf(tmp_path, {"fast": "file"},
                      fast={"filesystem_store_datadir": tmp_path / "fast"})
    stores = backend.StoreSet(conf)
    assert list(stores.stores) == ["fast"] and "https" in stores.known_schemes()
    assert isinstance(stores.driver_for_uri("https://example.com/x"), HttpDriver)
    with pytest.raises(exception.UnknownScheme):
        stores.add("img", iter([b"x"]), 1, "http")


@pytest.mark.parametrize("backends,default,message", [
    ({"fast": "tape"}, "fast", "unknown type 'tape'"),
    ({"fast": "file"}, "slow", "default_backend must name one of"),
    ({"glance_store": "file"}, "glance_store", "cannot name a store"),
    ({"os_glance_staging_store": "file"}, "os_glance_staging_store", "cannot name"),
])
def test_named_store_misconfigurations(tmp_path: pathlib.Path, backends: dict,
                                       default: str, message: str) -> None:
    conf = named_conf(tmp_path, backends, default,
                      **{name: {"filesystem_store_datadir": tmp_path / name}
                         for name in backends if name != "glance_store"})
    with pytest.raises(exception.ConfigError, match=message):
        backend.StoreSet(conf)


def test_named_store_needs_its_own_options(tmp_path: pathlib.Path) -> None:
    # [glance_store]'s datadir is not a named store's.
    conf = named_conf(tmp_path, {"fast": "file"},
                      glance_store={"filesystem_store_datadir": tmp_path / "x"})
    with pytest.raises(exception.ConfigError, match="filesystem_store_datadir"):
        backend.StoreSet(conf)
