"""Regions: the other deployments this one moves images to and from.

Users name a region, never a URL: the operator lists the regions and
says, for each, where its glance-api is and how to speak to it as the
caller::

    [DEFAULT]
    enabled_regions = east

    [region_east]
    api_url = https://glance.east.example.org:9292
    auth = token

``auth`` is how the caller's identity reaches the remote api:

``token`` (default)
    The caller's Keystone token is forwarded: the regions share one
    Keystone, as OpenStack regions do.
``identity_headers``
    The caller's project, user and roles go as the trusted-auth headers
    (``X-Identity-Status: Confirmed``, ``X-Tenant-Id``...): for a remote
    api running the ``trusted-auth`` flavor (or none), whose port only
    this deployment can reach.

The remote api then decides what the caller may read and write there,
exactly as if the caller had called it.
"""

from __future__ import annotations

import dataclasses

from oslo_config import cfg

from glance_clone.common import config, exception

TOKEN = "token"
IDENTITY_HEADERS = "identity_headers"

OPTS = [
    cfg.ListOpt("enabled_regions", default=[],
                help="Names of the other deployments images may be copied "
                     "from (glance-download) or cloned to; each is configured "
                     "in a section [region_<name>]."),
]
REGION_OPTS = [
    cfg.URIOpt("api_url", schemes=["http", "https"],
               help="The region's glance-api, e.g. https://glance.east:9292."),
    cfg.StrOpt("auth", default=TOKEN, choices=(TOKEN, IDENTITY_HEADERS),
               help="How the caller's identity reaches the region: forward "
                    "the Keystone token, or the trusted-auth identity headers."),
    cfg.FloatOpt("timeout", default=60.0, min=0.001,
                 help="Seconds the region's api may send nothing before a "
                      "request to it fails."),
    cfg.StrOpt("ca_file",
               help="CA bundle to verify the region's https certificate "
                    "(default: the system's)."),
]


def section(name: str) -> str:
    return "region_" + name


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)
    for name in conf.enabled_regions:
        config.register_once(conf, REGION_OPTS, group=section(name.strip()))


@dataclasses.dataclass(frozen=True)
class Region:
    name: str
    api_url: str
    auth: str
    timeout: float
    ca_file: str | None


class Regions:
    """The configured regions; raises ConfigError when one is unusable."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self._regions: dict[str, Region] = {}
        for name in (n.strip() for n in conf.enabled_regions):
            if not name:
                continue
            opts = conf[section(name)]
            if not opts.api_url:
                raise exception.ConfigError(
                    f"[{section(name)}] api_url must be set: region '{name}' is "
                    "listed in enabled_regions")
            self._regions[name] = Region(name, opts.api_url.rstrip("/"), opts.auth,
                                         opts.timeout, opts.ca_file)

    def names(self) -> list[str]:
        return list(self._regions)

    def get(self, name: object) -> Region:
        """The region called ``name``; raises Invalid (400) otherwise."""
        region = self._regions.get(name) if isinstance(name, str) else None
        if region is None:
            known = ", ".join(self._regions) or "none is configured"
            raise exception.Invalid("Unknown region %r (regions: %s)" % (name, known))
        return region
