"""Disk-format inspection of image data while it streams in.

A qcow2 that names a backing file or an external data file, or a vmdk whose
extents point outside itself, makes the hypervisor host that uses it read
its own files. Every path that brings image bytes in shows them, chunk by
chunk, to an ``Inspection`` (through ``data_in.Incoming``): nothing is read
twice, and a refused image raises ``ImageFormatRefused`` from the data
itself, so the store removes what it wrote.

The per-format parsing is oslo.utils' ``format_inspector``, the code Glance
itself uses since 2025.1: each inspector keeps only the byte regions it
needs (headers, descriptors, the last bytes of a vmdk) and is kept up to
date with every newly found way of disguising an image. The rules on top
(which formats may be declared as what) are here:

- Every known inspector sees the stream, whatever the declared formats:
  the safety checks below apply to every upload (Glance skips images whose
  ``container_format`` is not ``bare``, and v1 lets an active image's
  formats be changed afterwards). The declared ``disk_format`` is compared
  with the data, and ``virtual_size`` filled, only for ``bare`` images.
- The detected format is the single one that matched (none: raw). ISO
  together with GPT (a hybrid boot ISO) counts as ISO; any other double
  match is refused.
- Detected = declared: accepted, ``virtual_size`` from the image header.
  Declared ``raw``: accepted whatever was detected, ``virtual_size`` = the
  byte count. Raw content under a format no inspector knows (ami, ari,
  aki, ploop): accepted, no ``virtual_size``. Anything else is a mismatch,
  refused unless ``[image_format] require_image_format_match`` is false.
- The detected format's safety checks always run, also when the declared
  format differs: a qcow2 with a backing file declared raw is refused, and
  QED is never accepted. Data matching several formats, when that is
  tolerated, gets the checks of every format it matches. MBR/GPT checks named in
  ``[image_format] gpt_safety_checks_nonfatal`` (e.g. ``mbr``) only log.
- A vmdk's ``createType`` must be in ``[image_format] vmdk_allowed_types``
  (default ``streamOptimized,monolithicSparse``, compared without case as
  the descriptor is; an empty list refuses every vmdk). The inspector
  itself knows no other types whose data is all in the one file, so the
  list can only narrow that choice.

A refusal comes as soon as every inspector has what it needs (the first
few hundred KiB), not after the whole image was received; an image whose
last bytes matter (a streamOptimized vmdk footer) is judged at its end.

Other services (the v2 upload, tasks) call ``for_image`` and pass the
result as the ``inspector`` of their ``Incoming``; after the store write
``virtual_size`` holds what to record.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg
from oslo_utils.imageutils import format_inspector as fi

from glance_clone.common import config, exception

LOG = logging.getLogger(__name__)

GROUP = "image_format"

# The VMDK createTypes whose data is all in the one file (newer Glance's
# default for vmdk_allowed_types).
VMDK_DEFAULT = ["streamOptimized", "monolithicSparse"]

OPTS = [
    cfg.BoolOpt("require_image_format_match", default=True,
                help="Refuse image data whose detected disk format differs from the "
                     "declared disk_format. Safety checks are enforced either way."),
    cfg.ListOpt("gpt_safety_checks_nonfatal", default=[],
                help="MBR/GPT safety checks (e.g. mbr) whose failure is only logged."),
    cfg.ListOpt("vmdk_allowed_types", default=VMDK_DEFAULT,
                help="The VMDK createTypes image data may have; empty refuses "
                     "every VMDK. Types whose extents are other files are "
                     "refused whatever this says."),
]

RAW = "raw"
# The largest virtual size an image may claim: what the virtual_size column
# holds (a signed 64-bit integer), more than any hypervisor opens. A
# header claiming more is malformed, not a size to record.
MAX_VIRTUAL_SIZE = 2 ** 63 - 1
# The ways the formats below may legitimately overlap: a hybrid ISO carries
# a partition table for booting from a USB stick.
HYBRIDS = {frozenset(("iso", "gpt")): "iso"}


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS, group=GROUP)


def for_image(conf: cfg.ConfigOpts, disk_format: str | None,
              container_format: str | None, strict: bool = False) -> Inspection:
    """The inspection the data of an image with these formats gets.

    ``strict``: a mismatch is refused whatever
    ``require_image_format_match`` says (data about to be handed to
    qemu-img as its declared format).
    """
    opts = conf[GROUP]
    declared = disk_format if container_format == "bare" else None
    return Inspection(declared or None, strict or opts.require_image_format_match,
                      frozenset(opts.gpt_safety_checks_nonfatal),
                      vmdk_types(opts.vmdk_allowed_types))


def vmdk_types(allowed: list[str]) -> frozenset[str]:
    """``vmdk_allowed_types`` as the inspector spells createTypes (lower case)."""
    return frozenset(t.strip().lower() for t in allowed if t.strip())


VMDK_TYPES = vmdk_types(VMDK_DEFAULT)


class Inspection:
    """Every known inspector, fed the image data as it streams; raises on refusal.

    ``disk_format`` None: nothing is declared to compare with (only the
    safety checks apply, and no ``virtual_size`` is computed).

    ``virtual_size`` (None when unknown) and ``detected`` are set once the
    stream ended and was accepted.
    """

    def __init__(self, disk_format: str | None, require_match: bool = True,
                 gpt_nonfatal: frozenset[str] = frozenset(),
                 vmdk_allowed: frozenset[str] = VMDK_TYPES) -> None:
        self.disk_format = disk_format
        self.require_match = require_match
        self.gpt_nonfatal = gpt_nonfatal
        self.vmdk_allowed = vmdk_allowed
        self._inspectors = [cls() for cls in fi.ALL_FORMATS.values()]
        self._live = list(self._inspectors)
        self._judged = False
        self.bytes_read = 0
        self.detected: str | None = None
        self.virtual_size: int | None = None

    # -- the stream ---------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Show the next chunk to every inspector; raises ImageFormatRefused."""
        self.bytes_read += len(chunk)
        for inspector in list(self._live):
            try:
                inspector.eat_chunk(chunk)
            except Exception as err:
                # A parser that chokes on the data has seen a format it
                # does not recognise; what it matched before still counts.
                LOG.debug("The %s inspector stops here: %s", inspector, err)
                self._live.remove(inspector)
        if not self._judged and self._decided():
            self._judged = True
            self._judge()

    def finish(self) -> None:
        """The stream ended: judge it, fill ``virtual_size``; raises ImageFormatRefused."""
        for inspector in self._inspectors:
            inspector.finish()
        self._judge()

    def _decided(self) -> bool:
        """Whether every format inspector has all it needs before the end."""
        return all(i.complete for i in self._inspectors
                   if i.NAME != RAW and i in self._live)

    # -- the verdict --------------------------------------------------------------------------
    def _judge(self) -> None:
        found = self._detect()
        if found is None:
            return
        self.detected = found.NAME
        self._check_safety(found)
        self.virtual_size = self._virtual_size(found)

    def _detect(self) -> Any:
        """The matching inspector, or None when a mismatch is tolerated."""
        matches = [i for i in self._inspectors if i.NAME != RAW and i.format_match]
        names = frozenset(i.NAME for i in matches)
        if len(matches) > 1:
            hybrid = HYBRIDS.get(names)
            if hybrid is None:
                return self._format_error("Multiple formats detected: %s"
                                          % ",".join(sorted(names)), *matches)
            matches = [i for i in matches if i.NAME == hybrid]
        if not matches:
            matches = [i for i in self._inspectors if i.NAME == RAW]
        found = matches[0]
        declared = self.disk_format
        if declared is None:
            return found
        if found.NAME == declared or declared == RAW:
            if found.NAME != declared:
                LOG.warning("Image data declared raw looks like %s", found.NAME)
            return found
        if found.NAME == RAW and fi.get_inspector(declared) is None:
            return found
        return self._format_error("Image disk_format %s does not match stream data %s"
                                  % (declared, found.NAME), found)

    def _format_error(self, reason: str, *found: Any) -> Any:
        if self.require_match:
            raise exception.ImageFormatRefused(reason=reason)
        LOG.warning("%s; accepted as [image_format] require_image_format_match is "
                    "false", reason)
        # A tolerated mismatch still gets the detected format's safety
        # checks; data matching several formats gets those of each, as a
        # hypervisor may read it as any of them (Glance checks none there,
        # so a qcow2 with a backing file that is also an ISO would pass).
        for inspector in found:
            self._check_safety(inspector)
        return None

    def _check_safety(self, found: Any) -> None:
        try:
            found.safety_check()
        except fi.SafetyCheckFailed as err:
            failed = set(err.failures)
            if found.NAME == "gpt" and failed <= self.gpt_nonfatal:
                LOG.warning("Image data failed the MBR/GPT checks %s, allowed by "
                            "gpt_safety_checks_nonfatal", ",".join(sorted(failed)))
                return
            raise exception.ImageFormatRefused(
                reason="Image failed safety checks (%s: %s)"
                % (found.NAME, ",".join(sorted(failed)))) from err
        except fi.ImageFormatError as err:
            raise exception.ImageFormatRefused(
                reason="Image format inspection failed (%s: %s)" % (found.NAME, err)) from err
        if found.NAME == "vmdk":
            # Set once the descriptor was parsed, which its safety check needs.
            create_type = getattr(found, "vmdktype", None)
            if create_type not in self.vmdk_allowed:
                raise exception.ImageFormatRefused(
                    reason="Image failed safety checks (vmdk: createType %r is not in "
                    "[image_format] vmdk_allowed_types)" % create_type)

    def _virtual_size(self, found: Any) -> int | None:
        if self.disk_format is None:
            return None
        if found.NAME != self.disk_format:
            # Declared raw: the bytes are the disk; unknown format: unknown size.
            return self.bytes_read if self.disk_format == RAW else None
        try:
            size = int(found.virtual_size)
        except Exception as err:
            LOG.warning("No virtual size for %s image data: %s", found.NAME, err)
            return None
        if size > MAX_VIRTUAL_SIZE:
            raise exception.ImageFormatRefused(
                reason="Image format inspection failed (%s: a virtual size of %d bytes)"
                % (found.NAME, size))
        return size or None
