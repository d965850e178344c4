"""Named stores: several stores, each with its own section, as operators
configure Glance's multiple backends.

Options::

    [DEFAULT]
    enabled_backends = fast:file, cheap:file, objects:swift

    [glance_store]
    default_backend = fast

    [fast]
    store_description = Local SSD
    filesystem_store_datadir = /srv/glance/fast

A store's section takes the options its driver reads from
``[glance_store]`` in the one-store configuration, plus
``store_description`` and ``weight``. ``enabled_backends`` unset keeps
the one-store configuration (``[glance_store] stores`` / ``default_store``).

Drivers are written against ``conf.glance_store``: ``SectionConf`` hands
each driver a view of the configuration whose ``[glance_store]`` is the
store's own section, so the drivers need no change to serve a named store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception

GROUP = "glance_store"

OPTS = [
    cfg.DictOpt("enabled_backends", default={},
                help="Named stores as id:type pairs (type one of file, http, "
                     "swift, s3, rbd); each store's options go in a section "
                     "named by its id. Unset: the stores of [glance_store] "
                     "stores."),
]
STORE_OPTS = [
    cfg.StrOpt("default_backend",
               help="Id (from enabled_backends) of the store new image data "
                    "is written to; required with enabled_backends."),
]
SECTION_OPTS = [
    cfg.StrOpt("store_description",
               help="Shown to users in GET /v2/info/stores."),
    cfg.IntOpt("weight", default=0,
               help="Preference among stores holding an image when reading "
                    "it: higher first."),
]

# Ids that would clash with a section the service already uses.
RESERVED_IDS = frozenset({"default", GROUP, "database", "paste_deploy",
                          "keystone_authtoken", "oslo_policy", "task",
                          "import_filtering_opts", "image_format"})


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)
    config.register_once(conf, STORE_OPTS, group=GROUP)


def store_ids(conf: cfg.ConfigOpts) -> list[str]:
    """The ids ``enabled_backends`` names (empty when unset), for code that
    needs no store built (glance-api checked them at start)."""
    register_opts(conf)
    return [store_id.strip() for store_id in conf.enabled_backends or {}
            if store_id.strip()]


class SectionConf:
    """The configuration as the driver of one named store sees it: its own
    section stands for ``[glance_store]``; everything else is shared."""

    def __init__(self, conf: cfg.ConfigOpts, section: str) -> None:
        self._conf = conf
        self._section = section

    def _group(self, group: Any) -> Any:
        name = getattr(group, "name", group)
        return self._section if name == GROUP else group

    def __getitem__(self, name: str) -> Any:
        return self._conf[self._group(name)]

    def __getattr__(self, name: str) -> Any:
        if name == GROUP:
            return self._conf[self._section]
        return getattr(self._conf, name)

    def register_opts(self, opts: Any, group: Any = None) -> None:
        self._conf.register_opts(opts, group=self._group(group))

    def register_opt(self, opt: Any, group: Any = None, **kwargs: Any) -> Any:
        return self._conf.register_opt(opt, group=self._group(group), **kwargs)


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """One configured store: its id, driver type and section's view."""

    id: str
    type: str
    conf: Any


def configured(conf: cfg.ConfigOpts, driver_types: dict[str, Any]) -> list[StoreSpec]:
    """The stores of ``enabled_backends`` (empty when unset), their sections'
    options registered; raises ConfigError naming the fix."""
    register_opts(conf)
    specs = []
    for store_id, store_type in (conf.enabled_backends or {}).items():
        store_id, store_type = store_id.strip(), (store_type or "").strip().lower()
        if not store_id or store_id.lower() in RESERVED_IDS or store_id.startswith(
                "os_glance_"):
            raise exception.ConfigError(
                f"enabled_backends: '{store_id}' cannot name a store; pick "
                "another id")
        driver_cls = driver_types.get(store_type)
        if driver_cls is None:
            raise exception.ConfigError(
                f"enabled_backends: store '{store_id}' has unknown type "
                f"'{store_type}'; use one of {', '.join(driver_types)}")
        specs.append(StoreSpec(store_id, store_type,
                               register_section(conf, store_id, driver_cls)))
    if specs:
        default = conf[GROUP].default_backend
        if default not in {spec.id for spec in specs}:
            raise exception.ConfigError(
                f"[glance_store] default_backend must name one of the stores of "
                f"enabled_backends ({', '.join(s.id for s in specs)}); it is "
                f"{default!r}")
    return specs


def register_section(conf: cfg.ConfigOpts, store_id: str, driver_cls: Any) -> SectionConf:
    """Register the options of store ``store_id``'s section; its view."""
    view = SectionConf(conf, store_id)
    config.register_once(conf, SECTION_OPTS, group=store_id)
    driver_cls.register_opts(view)
    return view
