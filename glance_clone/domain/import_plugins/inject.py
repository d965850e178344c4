"""``inject_image_metadata``: properties the operator wants on every
imported image, unless the importer has one of ``ignore_user_roles``."""

from __future__ import annotations

from oslo_config import cfg

from glance_clone.domain import reserved
from glance_clone.domain.import_plugins import Work

GROUP = "inject_metadata_properties"

OPTS = [
    cfg.DictOpt("inject", default={},
                help="Properties set on every imported image (key:value,...)."),
    cfg.ListOpt("ignore_user_roles", default=["admin"],
                help="Imports by a user with one of these roles get no "
                     "injected properties."),
]


class InjectMetadata:
    @staticmethod
    def register_opts(import_conf: cfg.ConfigOpts) -> None:
        import_conf.register_opts(OPTS, group=GROUP)

    def __init__(self, import_conf: cfg.ConfigOpts, conf: cfg.ConfigOpts) -> None:
        opts = import_conf[GROUP]
        # os_glance_* properties are glance-api's own: never injected.
        self.inject = {k: v for k, v in opts.inject.items() if not reserved.is_reserved(k)}
        self.ignore = {r.strip().lower() for r in opts.ignore_user_roles if r.strip()}

    def run(self, work: Work) -> dict:
        roles = {r.lower() for r in work.context.roles}
        if not self.inject or roles & self.ignore:
            return {}
        return {"properties": dict(self.inject)}
