"""``image_conversion``: imported images are stored in one disk format,
``[image_conversion] output_format`` (raw, qcow2 or vmdk; default raw),
converted by ``qemu-img convert`` (Debian's qemu-utils).

qemu-img reads what an image header points at, so it only ever sees data
that passed the disk-format inspection of uploads first (the declared
format must match, even with ``require_image_format_match`` false; no
backing or data file, no unsafe vmdk extents), and ``qemu-img info``
must agree (the same format, no backing file, no data file, a vmdk's
``create-type`` in ``[image_format] vmdk_allowed_types``). Both runs
have resource limits (address space, CPU seconds). Data that is an ISO is
left as it is when declared ``iso`` and refused otherwise. A vmdk output
is streamOptimized when ``vmdk_allowed_types`` leaves out qemu-img's
monolithicSparse. The output is inspected again as ``output_format``; the image then has that
``disk_format``, ``container_format`` bare, and the converted ``size`` and
``virtual_size``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
from collections.abc import Callable

from eventlet.green import subprocess
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.domain import inspection
from glance_clone.domain.import_plugins import Work

LOG = logging.getLogger(__name__)

GROUP = "image_conversion"
FORMATS = ("raw", "qcow2", "vmdk")
# Disk formats qemu-img knows by another name.
QEMU_NAMES = {"vhd": "vpc"}

OPTS = [
    cfg.StrOpt("output_format", default="raw", choices=FORMATS,
               help="Disk format imported images are converted to."),
    cfg.IntOpt("convert_cpu_seconds", default=3600, min=1,
               help="CPU seconds one qemu-img convert may use."),
]

# qemu-img info: Glance's limits (it only reads headers).
INFO_LIMITS = {"cpu": 2, "memory": 1024 ** 3}
# qemu-img convert: the address space bound, its CPU from the option.
CONVERT_MEMORY = 2 * 1024 ** 3


def _limited(cpu: int, memory: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return apply


def _run(args: list[str], cpu: int, memory: int) -> str:
    """Run qemu-img with limits; its output. Raises Invalid when it fails,
    or complains on stderr: on well-formed data it says nothing there, and
    a warning (an option it ignored, a header it read its own way) means
    it did not read the data as it was inspected."""
    try:
        done = subprocess.run(args, capture_output=True, text=True,
                              preexec_fn=_limited(cpu, memory), check=False)
    except OSError as err:
        raise exception.ConfigError("qemu-img could not run (install qemu-utils): %s"
                                    % err) from err
    if done.returncode != 0 or done.stderr.strip():
        LOG.warning("%s failed: %s", " ".join(args[:2]), done.stderr.strip())
        raise exception.Invalid("qemu-img %s failed on the image data: %s"
                                % (args[1], done.stderr.strip()[-300:]))
    return str(done.stdout)


def inspected(conf: cfg.ConfigOpts, path: str, disk_format: str,
              container_format: str = "bare") -> inspection.Inspection:
    """The data at ``path`` judged as ``disk_format``; raises ImageFormatRefused.

    A mismatch is refused even when ``require_image_format_match`` is
    false: qemu-img is told to read the data as ``disk_format``, and data
    that is something else is not converted (as Glance's plugin does).
    """
    judge = inspection.for_image(conf, disk_format, container_format, strict=True)
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(CHUNK_SIZE), b""):
            judge.feed(chunk)
    judge.finish()
    return judge


class Conversion:
    @staticmethod
    def register_opts(import_conf: cfg.ConfigOpts) -> None:
        import_conf.register_opts(OPTS, group=GROUP)

    def __init__(self, import_conf: cfg.ConfigOpts, conf: cfg.ConfigOpts,
                 output: str | None = None) -> None:
        # ``output``: another format than output_format (the import task
        # converts to its own [taskflow_executor] conversion_format).
        self.output = output or import_conf[GROUP].output_format
        self.cpu = import_conf[GROUP].convert_cpu_seconds
        self.conf = conf
        inspection.register_opts(conf)

    def run(self, work: Work) -> dict:
        source = work.record.get("disk_format") or ""
        found = inspected(self.conf, work.path, source,
                          work.record.get("container_format") or "bare")
        if found.detected == "iso":
            if source == "iso":
                return {}
            raise exception.ImageFormatRefused(
                reason="ISO data is not converted unless declared iso")
        # qemu-img info has its say also on data already in the output
        # format: it is what the hypervisor will read.
        self._check_info(work.path, source)
        if source == self.output:
            return {}
        try:
            _run(["qemu-img", "convert", "-f", QEMU_NAMES.get(source, source),
                  "-O", self.output, *self._output_options(), work.path, work.scratch],
                 self.cpu, CONVERT_MEMORY)
            converted = inspected(self.conf, work.scratch, self.output)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(work.scratch)
            raise
        work.replace()
        size = os.path.getsize(work.path)
        LOG.info("Image %s converted from %s to %s", work.record["id"], source,
                 self.output)
        return {"disk_format": self.output, "container_format": "bare", "size": size,
                "virtual_size": converted.virtual_size}

    def _output_options(self) -> list[str]:
        """qemu-img writes monolithicSparse vmdks; when vmdk_allowed_types
        leaves that out, a streamOptimized one, so the output is not
        refused by the inspection it gets next."""
        if self.output != "vmdk":
            return []
        allowed = inspection.vmdk_types(self.conf[inspection.GROUP].vmdk_allowed_types)
        if "monolithicsparse" not in allowed and "streamoptimized" in allowed:
            return ["-o", "subformat=streamOptimized"]
        return []

    def _check_info(self, path: str, source: str) -> None:
        driver = QEMU_NAMES.get(source, source)
        info = json.loads(_run(["qemu-img", "info", "--output=json", "-f", driver, path],
                               INFO_LIMITS["cpu"], INFO_LIMITS["memory"]))
        if info.get("format") != driver:
            # What convert would read is not what was inspected.
            raise exception.ImageFormatRefused(
                reason="qemu-img reads the data as %r, not %r"
                % (info.get("format"), driver))
        if info.get("backing-filename"):
            raise exception.ImageFormatRefused(reason="the image has a backing file")
        specific = (info.get("format-specific") or {}).get("data") or {}
        if specific.get("data-file"):
            raise exception.ImageFormatRefused(reason="the image has a data file")
        if source == "vmdk":
            # qemu-img names the type as the descriptor writes it; compared
            # as written, as it is what qemu-img convert will follow.
            allowed = self.conf[inspection.GROUP].vmdk_allowed_types
            create_type = specific.get("create-type")
            if not create_type or create_type not in allowed:
                raise exception.ImageFormatRefused(
                    reason="vmdk createType %r is not in [image_format] "
                    "vmdk_allowed_types" % create_type)
