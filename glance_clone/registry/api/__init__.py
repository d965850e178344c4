"""The glance-registry WSGI application.

Paste: ``paste.app_factory = glance_clone.registry.api:API.factory``. The v2
registry (``POST /rpc``) is not implemented; ``enable_v2_registry`` is
accepted for configuration compatibility and has no effect.
"""

from __future__ import annotations

import routes
from oslo_config import cfg

from glance_clone.common import config, wsgi
from glance_clone.db import api as db_api
from glance_clone.db import session
from glance_clone.registry.api import v1

API_OPTS = [
    cfg.BoolOpt("enable_v1_registry", default=True,
                help="Serve the v1 registry API."),
    cfg.BoolOpt("enable_v2_registry", default=True,
                help="Accepted for compatibility; the v2 registry (/rpc) "
                     "is not implemented."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the registry app's options; safe to call more than once."""
    config.register_once(conf, API_OPTS)
    v1.register_opts(conf)


class API(wsgi.Router):
    """Routes registry requests to the v1 controllers."""

    def __init__(self, conf: cfg.ConfigOpts, database: db_api.Database) -> None:
        register_opts(conf)
        self.conf = conf
        self._database = database
        mapper = routes.Mapper()
        if conf.enable_v1_registry:
            v1.connect_routes(mapper, conf, database)
        super().__init__(mapper)

    @property
    def database(self) -> db_api.Database:
        """The ``db.api.Database`` behind the app (for health checks)."""
        return self._database

    @classmethod
    def factory(cls, global_conf: dict[str, str], **local_conf: str) -> API:
        """paste.deploy app factory; raises ConfigError outside load_paste_app."""
        conf = config.conf_for_factory()
        register_opts(conf)
        config.register_database_opts(conf)
        return cls(conf, db_api.Database(session.create_engine(conf)))
