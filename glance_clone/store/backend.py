"""The set of enabled store drivers, chosen by URI scheme.

Options (section ``[glance_store]``):

``stores`` (default ``file,http``)
    Drivers to enable, by name (see ``DRIVERS``).
``default_store`` (default ``file``)
    Scheme new uploads go to; must belong to an enabled driver.

``StoreSet(conf)`` builds the enabled drivers at startup and raises
ConfigError on a bad configuration, which glance-api turns into exit code 3.
After that every call picks the driver from the URL's scheme.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.store import source_filter
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


class StoreSet:
    """The enabled drivers; raises ConfigError when built from bad options."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        names = [n.strip().lower() for n in conf[GROUP].stores if n.strip()]
        if not names:
            raise exception.ConfigError("[glance_store] stores enables no store")
        self._by_scheme: dict[str, Driver] = {}
        for name in dict.fromkeys(names):
            driver_cls = DRIVERS.get(name)
            if driver_cls is None:
                raise exception.ConfigError(
                    f"Unknown store '{name}' in [glance_store] stores; "
                    f"known: {', '.join(DRIVERS)}")
            driver = driver_cls(conf)
            for scheme in driver_cls.schemes:
                if scheme in self._by_scheme:
                    raise exception.ConfigError(
                        f"Scheme '{scheme}' is served by two enabled stores")
                self._by_scheme[scheme] = driver
        self.default_scheme = conf[GROUP].default_store.strip().lower()
        if self.default_scheme not in self._by_scheme:
            raise exception.ConfigError(
                f"default_store '{self.default_scheme}' is not a scheme of an "
                f"enabled store ({', '.join(self.known_schemes())})")
        LOG.info("Enabled stores: %s; default store: %s",
                 ", ".join(dict.fromkeys(names)), self.default_scheme)

    def known_schemes(self) -> list[str]:
        """URI schemes of the enabled drivers."""
        return list(self._by_scheme)

    def driver_for_scheme(self, scheme: str) -> Driver:
        """Driver serving ``scheme``; raises UnknownScheme."""
        driver = self._by_scheme.get(scheme.lower())
        if driver is None:
            raise exception.UnknownScheme(scheme=scheme)
        return driver

    def driver_for_uri(self, uri: str) -> Driver:
        """Driver serving ``uri``'s scheme; raises BadStoreUri, UnknownScheme."""
        try:
            scheme = urlsplit(uri).scheme if "://" in uri else ""
        except ValueError:
            scheme = ""
        if not scheme:
            raise exception.BadStoreUri("Invalid location: the URL has no scheme.")
        return self.driver_for_scheme(scheme)

    def add(self, image_id: str, chunks: Iterable[bytes], size: int,
            scheme: str | None = None) -> AddResult:
        """Write image data to ``scheme``'s store (default_store when None).

        Returns (url, size, md5 hex, location metadata); raises as
        ``Driver.add`` plus UnknownScheme.
        """
        driver = self.driver_for_scheme(scheme or self.default_scheme)
        return driver.add(image_id, chunks, size)

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

    def set_acls(self, url: str, public: bool = False,
                 read_tenants: list[str] | None = None,
                 write_tenants: list[str] | None = None) -> None:
        """Apply image sharing to the backend; raises UnknownScheme, BadStoreUri."""
        self.driver_for_uri(url).set_acls(url, public, read_tenants, write_tenants)
