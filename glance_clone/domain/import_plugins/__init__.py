"""Import plugins: work done on an image's data between its arrival and
its store, as Glance operators configure it.

``glance-image-import.conf`` (found where glance-api.conf is, like
Glance's) lists them in order::

    [image_import_opts]
    image_import_plugins = image_decompression, image_conversion

    [image_conversion]
    output_format = raw

    [inject_metadata_properties]
    inject = hw_rng_model:virtio
    ignore_user_roles = admin

With plugins configured, an import first writes its bytes to the staging
area (a glance-direct import's staged file already is), the plugins run
on that file in list order (put decompression before conversion), each
may change the image (formats, size, properties), and the result goes to
the store through the upload path. A plugin that refuses the data fails
the task with a message saying why, and the import is undone like any
other failure. An unknown plugin name stops glance-api at start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Protocol

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import registry_writes

LOG = logging.getLogger(__name__)

CONFIG_FILE = "glance-image-import.conf"
GROUP = "image_import_opts"

OPTS = [
    cfg.ListOpt("image_import_plugins", default=[],
                help="Import plugins, run in this order on imported data: "
                     "no_op, image_decompression, image_conversion, "
                     "inject_image_metadata."),
]


@dataclasses.dataclass
class Work:
    """What a plugin works on: the image's data in ``path`` and its record
    (with the changes of the plugins before it), for the caller ``context``.
    ``scratch`` is a path for new data (moved over ``path`` when done); the
    import's undo removes both."""

    context: RequestContext
    record: dict
    path: str
    scratch: str

    def replace(self) -> None:
        """The new data in ``scratch`` becomes the image's data."""
        os.replace(self.scratch, self.path)


class Plugin(Protocol):
    def run(self, work: Work) -> dict:
        """Work on ``work.path`` in place; the image values to change
        (``properties`` merged). Raises GlanceError to refuse the data."""


class NoOp:
    """Logs only (Glance's example plugin)."""

    def __init__(self, import_conf: cfg.ConfigOpts, conf: cfg.ConfigOpts) -> None:
        pass

    def run(self, work: Work) -> dict:
        LOG.info("no_op import plugin: image %s", work.record["id"])
        return {}


def _known() -> dict[str, Any]:
    from glance_clone.domain.import_plugins import conversion, decompression, inject

    return {"no_op": NoOp, "image_decompression": decompression.Decompression,
            "image_conversion": conversion.Conversion,
            "inject_image_metadata": inject.InjectMetadata}


def register_opts(import_conf: cfg.ConfigOpts) -> None:
    import_conf.register_opts(OPTS, group=GROUP)
    for plugin in _known().values():
        register = getattr(plugin, "register_opts", None)
        if register is not None:
            register(import_conf)


def load_import_conf(conf: cfg.ConfigOpts, path: str | None = None) -> cfg.ConfigOpts:
    """The options of glance-image-import.conf (``path``, else the file of
    that name beside the server's configuration; defaults when none)."""
    import_conf = cfg.ConfigOpts()
    register_opts(import_conf)
    if path is None:
        try:
            path = conf.find_file(CONFIG_FILE)
        except cfg.NotInitializedError:
            path = None
    try:
        import_conf([], project="glance", default_config_files=[path] if path else [],
                    default_config_dirs=[])
    except cfg.Error as err:
        raise exception.ConfigError("%s: %s" % (path, err)) from err
    return import_conf


class Plugins:
    """The configured plugins, in order."""

    def __init__(self, conf: cfg.ConfigOpts, path: str | None = None) -> None:
        self.import_conf = load_import_conf(conf, path)
        known = _known()
        names = [n.strip() for n in self.import_conf[GROUP].image_import_plugins
                 if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise exception.ConfigError(
                "Unknown import plugin %s in [%s] image_import_plugins of %s; "
                "known: %s" % (", ".join(unknown), GROUP, CONFIG_FILE,
                               ", ".join(sorted(known))))
        self.names = names
        self.chain: list[Plugin] = [known[n](self.import_conf, conf) for n in names]

    def __bool__(self) -> bool:
        return bool(self.chain)

    @property
    def decompresses(self) -> bool:
        """Whether imported data may arrive compressed: then staged data is
        not inspected, the data is once decompressed."""
        return "image_decompression" in self.names

    def run(self, work: Work) -> dict:
        """Every plugin in order on ``work``; all their changes, merged."""
        changes: dict = {}
        for name, plugin in zip(self.names, self.chain, strict=True):
            found = plugin.run(work)
            if found:
                LOG.info("Import plugin %s changed image %s: %s", name,
                         work.record["id"], ", ".join(sorted(found)))
            properties = dict(changes.get("properties") or {},
                              **found.pop("properties", {}))
            changes.update(found)
            work.record.update(found)
            if properties:
                changes["properties"] = properties
                work.record["properties"] = dict(work.record.get("properties") or {},
                                                 **properties)
        return changes


def staged_through(plugins: Any, area: Any, writes: registry_writes.RegistryWrites,
                   context: RequestContext, record: dict, chunks: Any,
                   size: int | None, from_state: str) -> tuple[dict, Any, int]:
    """The image's data written to ``area`` (a ``StagingArea``; data it
    already holds is kept) and run through ``plugins`` (anything with
    ``run(Work)``; none when false); the image as they changed it (written
    while its status is ``from_state``), the data to store and its size.
    Raises ImageDataMismatch (the source sent other than the size it
    announced) and what the writes and plugins raise."""
    image_id = record["id"]
    if not area.holds(image_id):
        try:
            area.write(image_id, chunks)
        finally:
            _close(chunks)
        written = os.path.getsize(area.path(image_id))
        if size is not None and written != size:
            raise exception.ImageDataMismatch("The source sent %d bytes of the %d "
                                              "it announced" % (written, size))
    else:
        _close(chunks)
    path = area.path(image_id)
    if plugins:
        changes = plugins.run(Work(context, dict(record), path, area.scratch(image_id)))
        # Size and virtual size are the upload's to record, from the data.
        values = {k: v for k, v in changes.items() if k not in ("size", "virtual_size")}
        if values:
            record = writes.change(
                context, image_id, values, from_state=from_state,
                applied=lambda found: all(found.get(k) == v for k, v in values.items()
                                          if k != "properties"))
    return record, area.read(image_id), os.path.getsize(path)


def _close(chunks: Any) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
