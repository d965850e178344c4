"""The ``authtoken`` paste filter of the keystone flavors.

Operators' paste files name ``keystonemiddleware.auth_token:filter_factory``
(or ``egg:keystonemiddleware#auth_token``); ``config.load_paste_app`` runs
``filter_factory`` below in its place, so those files keep working
unchanged. It differs from keystonemiddleware's own factory in two ways:

- keystonemiddleware reads ``[keystone_authtoken]`` from an oslo.config
  object, by default the process-wide ``cfg.CONF``. Our servers keep no
  global configuration (each builds its own ``ConfigOpts``), so the filter
  is handed the configuration of the server being built.
- Without keystonemiddleware installed, the server refuses to start with a
  one-line error that names the extra to install, instead of a traceback
  from paste.deploy's import.

The filter itself (``keystone_filter``) lives in a module of its own,
imported only here, because it subclasses keystonemiddleware's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glance_clone.common import config, exception


def _filter_class() -> Any:
    try:
        from glance_clone.common import keystone_filter
    except ImportError as err:
        if (err.name or "").partition(".")[0] != "keystonemiddleware":
            raise
        raise exception.MissingDependency(
            feature="The keystone flavor (the authtoken filter)",
            package="keystonemiddleware", extra="keystone") from None
    return keystone_filter.AuthTokenFilter


def filter_factory(global_conf: dict, **local_conf: str) -> Callable:
    """Paste filter factory: keystonemiddleware's auth_token with the
    server's own configuration (``[keystone_authtoken]``)."""
    filter_class = _filter_class()
    conf = config.conf_for_factory()
    settings: dict[str, Any] = dict(global_conf, **local_conf)

    def filter_(app: Callable) -> Any:
        # keystonemiddleware pops oslo_config_config from the dict it gets.
        return filter_class(app, dict(settings, oslo_config_config=conf))
    return filter_
