"""The set of enabled store drivers, chosen by URI scheme.

Options (section ``[glance_store]``):

``stores`` (default ``file,http``)
    Drivers to enable, by name (see ``DRIVERS``).
``default_store`` (default ``file``)
    Scheme new uploads go to; must belong to an enabled driver.

Or, as Glance's multiple backends, ``enabled_backends`` and
``[glance_store] default_backend`` with a section per store (``named``).

``StoreSet(conf)`` builds the enabled drivers at startup and raises
ConfigError on a bad configuration, which glance-api turns into exit code 3.
After that every call picks the driver from the URL's scheme.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.store import named, source_filter
from glance_clone.store.base import AddResult, Driver, ReadStream
from glance_clone.store.file import FileDriver
from glance_clone.store.http import HttpDriver
from glance_clone.store.rbd import RbdDriver
from glance_clone.store.s3 import S3Driver
from glance_clone.store.swift import SwiftDriver

LOG = logging.getLogger(__name__)

GROUP = "glance_store"

#: Driver name (as written in ``stores``) -> class. Adding a backend is one
#: line here plus its module.
DRIVERS: dict[str, type[Driver]] = {
    "file": FileDriver,
    "http": HttpDriver,
    "swift": SwiftDriver,
    "s3": S3Driver,
    "rbd": RbdDriver,
}

#: Driver types that only read data from elsewhere: never a target.
READ_ONLY_TYPES = ("http",)

OPTS = [
    cfg.ListOpt("stores", default=["file", "http"],
                help="Store drivers to enable: " + ", ".join(DRIVERS) + "."),
    cfg.StrOpt("default_store", default="file",
               help="Scheme of the store new image data is written to."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[glance_store]``, every driver's and the source filter's options."""
    conf.register_opts(OPTS, group=GROUP)
    for driver_cls in DRIVERS.values():
        driver_cls.register_opts(conf)
    source_filter.register_opts(conf)
    named.register_opts(conf)


@dataclasses.dataclass
class Store:
    """One enabled store: ``id`` (its name in ``stores`` or
    ``enabled_backends``), driver ``type`` and ``driver``."""

    id: str
    type: str
    driver: Driver
    description: str | None = None
    weight: int = 0

    @property
    def read_only(self) -> bool:
        return self.type in READ_ONLY_TYPES


class StoreSet:
    """The enabled stores; raises ConfigError when built from bad options.

    With ``enabled_backends`` (see ``named``) the stores are named and
    several may share a driver type: new data goes to ``default_backend``,
    a location is served by the store of its scheme that holds it, and the
    location metadata written by ``add`` names the store (``"store"``).
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        specs = named.configured(conf, DRIVERS)
        self.multi = bool(specs)
        self.stores: dict[str, Store] = {}
        # Every scheme's stores, the default one first.
        self._by_scheme: dict[str, list[Store]] = {}
        if self.multi:
            for spec in specs:
                section = conf[spec.id]
                self._enable(Store(spec.id, spec.type, DRIVERS[spec.type](spec.conf),
                                   section.store_description, section.weight))
            self.default_id = conf[GROUP].default_backend
            self.default_scheme = DRIVERS[self.stores[self.default_id].type].schemes[0]
            for stores in self._by_scheme.values():
                stores.sort(key=lambda store: store.id != self.default_id)
            if "http" not in self._by_scheme:
                # web-download, copy-from and locations read http(s) URLs:
                # without an http store listed, a reader that is no store.
                reader = Store("", "http", HttpDriver(conf))
                for scheme in HttpDriver.schemes:
                    self._by_scheme[scheme] = [reader]
        else:
            self._enable_listed(conf)
        LOG.info("Enabled stores: %s; default store: %s", ", ".join(self.stores),
                 self.default_id)

    def _enable_listed(self, conf: cfg.ConfigOpts) -> None:
        names = [n.strip().lower() for n in conf[GROUP].stores if n.strip()]
        if not names:
            raise exception.ConfigError("[glance_store] stores enables no store")
        for name in dict.fromkeys(names):
            driver_cls = DRIVERS.get(name)
            if driver_cls is None:
                raise exception.ConfigError(
                    f"Unknown store '{name}' in [glance_store] stores; "
                    f"known: {', '.join(DRIVERS)}")
            for scheme in driver_cls.schemes:
                if scheme in self._by_scheme:
                    raise exception.ConfigError(
                        f"Scheme '{scheme}' is served by two enabled stores")
            self._enable(Store(name, name, driver_cls(conf)))
        self.default_scheme = conf[GROUP].default_store.strip().lower()
        if self.default_scheme not in self._by_scheme:
            raise exception.ConfigError(
                f"default_store '{self.default_scheme}' is not a scheme of an "
                f"enabled store ({', '.join(self.known_schemes())})")
        self.default_id = self._by_scheme[self.default_scheme][0].id

    def _enable(self, store: Store) -> None:
        self.stores[store.id] = store
        for scheme in type(store.driver).schemes:
            self._by_scheme.setdefault(scheme, []).append(store)

    @property
    def default(self) -> Store:
        return self.stores[self.default_id]

    def writable(self) -> list[str]:
        """Ids of the stores that take new data, the default first."""
        return [self.default_id] + [s.id for s in self.stores.values()
                                    if not s.read_only and s.id != self.default_id]

    def store_for_uri(self, url: str) -> Store:
        """The store serving ``url``; raises BadStoreUri, UnknownScheme."""
        try:
            scheme = urlsplit(url).scheme if "://" in url else ""
        except ValueError:
            scheme = ""
        if not scheme:
            raise exception.BadStoreUri("Invalid location: the URL has no scheme.")
        candidates = self._by_scheme.get(scheme.lower())
        if not candidates:
            raise exception.UnknownScheme(scheme=scheme)
        return next((s for s in candidates if s.driver.owns(url)), candidates[0])

    def known_schemes(self) -> list[str]:
        """URI schemes of the enabled drivers."""
        return list(self._by_scheme)

    def driver_for_scheme(self, scheme: str) -> Driver:
        """Driver serving ``scheme``; raises UnknownScheme."""
        candidates = self._by_scheme.get(scheme.lower())
        if not candidates:
            raise exception.UnknownScheme(scheme=scheme)
        return candidates[0].driver

    def driver_for_uri(self, uri: str) -> Driver:
        """Driver serving ``uri``; raises BadStoreUri, UnknownScheme."""
        return self.store_for_uri(uri).driver

    def target(self, name: str | None) -> Store:
        """The store new data named ``name`` goes to: the store of that id,
        else the first of that scheme, the default one when None. Raises
        UnknownScheme."""
        store = self.stores.get(name) if name else self.default
        if store is None:
            candidates = self._by_scheme.get(name.lower()) if name else None
            if not candidates or not candidates[0].id:
                raise exception.UnknownScheme(scheme=name)
            store = candidates[0]
        return store

    def add(self, image_id: str, chunks: Iterable[bytes], size: int,
            scheme: str | None = None) -> AddResult:
        """Write image data to the store named ``scheme`` (a store id, or a
        scheme: its first store), the default store when None.

        Returns (url, size, md5 hex, location metadata); with named stores
        the metadata's ``store`` is the store's id. Raises as
        ``Driver.add`` plus UnknownScheme.
        """
        store = self.target(scheme)
        url, written, checksum, metadata = store.driver.add(image_id, chunks, size)
        if self.multi:
            metadata = dict(metadata or {}, store=store.id)
        return url, written, checksum, metadata

    def get(self, url: str) -> tuple[ReadStream, int | None]:
        """(chunk iterator, size or None); raises as ``Driver.get``."""
        return self.driver_for_uri(url).get(url)

    def get_range(self, url: str, offset: int, length: int) -> ReadStream:
        """``length`` bytes from ``offset``; raises as ``Driver.get``."""
        return self.driver_for_uri(url).get_range(url, offset, length)

    def get_size(self, url: str) -> int:
        """Stored size, 0 if unknown; raises as ``Driver.get_size``."""
        return self.driver_for_uri(url).get_size(url)

    def delete(self, url: str) -> None:
        """Delete the data at ``url``; raises NotFound (callers usually log
        and ignore it), Forbidden, InUseByStore. Read-only stores log only."""
        self.driver_for_uri(url).delete(url)

    def remove_leftovers(self, image_id: str, keep: Iterable[str] = (),
                         scheme: str | None = None) -> None:
        """What a dead writer of ``image_id`` left in the store named
        ``scheme`` (as ``add`` names it); see ``Driver.remove_leftovers``."""
        self.target(scheme).driver.remove_leftovers(image_id, keep)

    def set_acls(self, url: str, public: bool = False,
                 read_tenants: list[str] | None = None,
                 write_tenants: list[str] | None = None) -> None:
        """Apply image sharing to the backend; raises UnknownScheme, BadStoreUri."""
        self.driver_for_uri(url).set_acls(url, public, read_tenants, write_tenants)
