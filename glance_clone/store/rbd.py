"""Ceph RBD store: each image is one RBD image with a protected snapshot.

Options (section ``[glance_store]``, Glance's names):

``rbd_store_ceph_conf`` (default ``/etc/ceph/ceph.conf``)
    The cluster's configuration: its monitors, and where each user's
    keyring is.
``rbd_store_user`` (default: librados' own, ``admin``)
    The Ceph user, ``client.<name>``, the store connects as.
``rbd_store_pool`` (default ``images``)
    Pool new images go to; a location names its own pool.
``rbd_store_chunk_size`` (MiB, default 8)
    Object size of new RBD images, a power of two from 1 to 32.
``rados_connect_timeout`` (seconds, default 0)
    How long a connection waits for the monitors; 0 keeps librados' own
    limit (``client_mount_timeout``, 300 s).
``rbd_thin_provisioning`` (default False)
    Do not write objects whose bytes are all zero: they read back as
    zeros and take no space.

Locations are Glance's ``rbd://<fsid>/<pool>/<image>/snap``, each part
URL-quoted; Glance's older ``rbd://<image>`` (an image in
``rbd_store_pool``, no snapshot) is read too. They hold no secret: that is
why Nova and Cinder may be shown them, to clone the snapshot instead of
copying the image. A location naming another cluster's fsid is NotFound
here, since that data is not this cluster's to read or delete.

An upload creates the RBD image (at the announced size, or growing in
doubling steps when the size is unknown), writes it in ``WRITE_SIZE``
pieces with ``WRITES_IN_FLIGHT`` of them under way while the next one
arrives, trims it to the bytes received, then creates the snapshot
``snap`` and protects it, so that it can be cloned. md5 and size are
computed on the way. Any failure, including the client going away,
removes the snapshot and the RBD image before the error goes on. A
download streams the snapshot in ``READ_SIZE`` pieces, ``READS_AHEAD``
of them read while the last one is sent, and raises when a read fails,
so it is cut off rather than short.
A delete unprotects and removes the snapshot, then the image; an image
with clones, or one another client has open, is InUseByStore (409) and is
left as it was.

librados calls block their thread as long as the cluster takes. Under
glance-api's eventlet they run in eventlet's native thread pool, so a
slow cluster stalls only the requests that use it. Writes are sent with
librados' "full try" flag: on a full pool (quota reached, or no room on
its OSDs) they fail at once, which is StorageFull (413), where librados
would hold them until the pool has room; removals go through. A read
from a stopped OSD waits until it is back unless ``rados_osd_op_timeout``
is set: when the ceph.conf leaves it at 0 the store uses ``OP_TIMEOUT``.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import greenlet
from eventlet import hubs, patcher, tpool
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.chunking import BODY_PIECE
from glance_clone.common.data_in import Incoming
from glance_clone.store.base import AddResult, Driver, ReadStream, remote_download
from glance_clone.store.credentialed_uri import check_object_name

LOG = logging.getLogger(__name__)

GROUP = "glance_store"
MiB = 1024 * 1024
SNAPSHOT = "snap"
# Seconds an OSD or monitor operation may wait when the ceph.conf sets no
# limit: librados would wait forever for a stopped OSD.
OP_TIMEOUT = 30
# Pieces (at most one object each) and how many are under way at once.
# Measured on 2 cores with 8 MiB objects: whole-object reads and writes
# left glance-api 100 to 230 MiB larger after moving 1 to 2 GiB (glibc
# keeps librados' freed 8 MiB buffers in its per-thread arenas), these
# sizes about 60 MiB whatever the image size, and 2 MiB reads ahead made
# downloads faster, not slower. A write is one request-body piece
# (chunking.BODY_PIECE), handed to librbd as it came, without a copy.
WRITE_SIZE = BODY_PIECE
WRITES_IN_FLIGHT = 3
READ_SIZE = 2 * MiB
READS_AHEAD = 3
# An image of unknown size starts at this size and doubles, by at most
# MAX_GROWTH at a time; the final resize trims it to the bytes received.
FIRST_SIZE = 64 * MiB
MAX_GROWTH = 8 * 1024 * MiB
NOT_FOUND_MESSAGE = "RBD could not find the image data."

OPTS = [
    cfg.StrOpt("rbd_store_ceph_conf", default="/etc/ceph/ceph.conf",
               help="Ceph configuration file the RBD store connects with."),
    cfg.StrOpt("rbd_store_user",
               help="Ceph user (client.<name>) of the RBD store; librados' "
                    "default (admin) when unset."),
    cfg.StrOpt("rbd_store_pool", default="images",
               help="RADOS pool new images are written to."),
    cfg.IntOpt("rbd_store_chunk_size", default=8, min=1, max=32,
               help="Object size of new RBD images in MiB (a power of two)."),
    cfg.IntOpt("rados_connect_timeout", default=0,
               help="Seconds to wait for the Ceph monitors; 0 keeps librados' default."),
    cfg.BoolOpt("rbd_thin_provisioning", default=False,
                help="Skip writing all-zero objects of uploaded images."),
]

T = TypeVar("T")


def blocking(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in eventlet's native thread pool when eventlet has
    patched threads and we are in a green thread; directly otherwise (the
    hub itself, as in a finaliser, cannot wait for the pool)."""
    if (patcher.is_monkey_patched("thread")
            and greenlet.getcurrent() is not hubs.get_hub().greenlet):
        return tpool.execute(func, *args)
    return func(*args)


# --- locations ---------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """A parsed RBD location; fsid and snapshot are None in the old form."""

    fsid: str | None
    pool: str
    image: str
    snapshot: str | None


def location_url(fsid: str, pool: str, image: str, snapshot: str = SNAPSHOT) -> str:
    """Glance's location of an image's snapshot."""
    parts = (quote(part, safe="") for part in (fsid, pool, image, snapshot))
    return "rbd://" + "/".join(parts)


def parse_location(url: str, default_pool: str) -> Location:
    """Split ``rbd://fsid/pool/image/snapshot`` or ``rbd://image``; raises BadStoreUri."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "rbd" or not sep:
        raise exception.BadStoreUri("Invalid RBD location: it must start with rbd://")
    parts = [unquote(part) for part in rest.split("/")]
    if "" in parts:
        raise exception.BadStoreUri("Invalid RBD location: it has an empty part.")
    if len(parts) == 4:
        return Location(*parts)
    if len(parts) == 1:
        return Location(None, default_pool, parts[0], None)
    raise exception.BadStoreUri(
        "Invalid RBD location: use rbd://<fsid>/<pool>/<image>/<snapshot> or rbd://<image>.")


# --- errors ------------------------------------------------------------------
def _errno(err: BaseException) -> int | None:
    return getattr(err, "errno", None)


def _errname(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


class _Session:
    """A connection to the cluster and an I/O context on one pool.

    Its methods block: call them through ``blocking``.
    """

    def __init__(self, cluster: Any, ioctx: Any) -> None:
        self.cluster = cluster
        self.ioctx = ioctx

    def close(self) -> None:
        try:
            self.ioctx.close()
        finally:
            self.cluster.shutdown()


class RbdDriver(Driver):
    """Stores images as RBD images (with a protected snapshot) in one pool."""

    schemes = ("rbd",)

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        conf.register_opts(OPTS, group=GROUP)

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        # Imported here: a deployment without Ceph must still start.
        try:
            import rados
            import rbd
        except ImportError as err:
            raise exception.ConfigError(
                "The rbd store needs Ceph's python modules rados and rbd: install "
                "python3-rados and python3-rbd (in a venv: bash "
                "tools/backends/link-ceph-python.sh VENV)") from err
        self._rados: Any = rados
        self._rbd: Any = rbd
        opts = conf[GROUP]
        self.ceph_conf = opts.rbd_store_ceph_conf
        if not self.ceph_conf or not os.access(self.ceph_conf, os.R_OK):
            raise exception.ConfigError(
                f"rbd_store_ceph_conf {self.ceph_conf!r} cannot be read; point it at "
                "the cluster's ceph.conf")
        self.user = opts.rbd_store_user or None
        self.pool = opts.rbd_store_pool
        if not self.pool or "/" in self.pool:
            raise exception.ConfigError(f"rbd_store_pool {self.pool!r} is not a pool name")
        chunk_mib = opts.rbd_store_chunk_size
        if chunk_mib & (chunk_mib - 1):
            raise exception.ConfigError(
                f"rbd_store_chunk_size {chunk_mib} is not a power of two (MiB)")
        self.object_size = chunk_mib * MiB
        self.order = self.object_size.bit_length() - 1
        self.write_size = min(self.object_size, WRITE_SIZE)
        self.read_size = min(self.object_size, READ_SIZE)
        self.connect_timeout = opts.rados_connect_timeout
        self.thin = opts.rbd_thin_provisioning

    # --- connections --------------------------------------------------------
    def _who(self) -> str:
        return f"client.{self.user or 'admin'}"

    def _connect(self, pool: str, writing: bool) -> _Session:
        """Connect and open ``pool`` (blocks). Raises StorageWriteDenied or
        ServiceUnavailable (``writing``), else RemoteServiceUnavailable or
        NotFound, with a message naming the store and the setting to check."""
        unavailable = exception.ServiceUnavailable if writing else \
            exception.RemoteServiceUnavailable
        try:
            cluster = self._rados.Rados(conffile=self.ceph_conf, rados_id=self.user)
            # Each byte is written or read once, in order: librbd's cache
            # would only copy it once more and hold up to 32 MiB per image.
            cluster.conf_set("rbd_cache", "false")
        except self._rados.Error as err:
            LOG.error("RBD store cannot read its ceph.conf: %s", err)
            raise unavailable("RBD store cannot read its Ceph configuration; "
                              "check rbd_store_ceph_conf.") from err
        try:
            if self.connect_timeout > 0:
                cluster.conf_set("client_mount_timeout", str(self.connect_timeout))
            for name in ("rados_osd_op_timeout", "rados_mon_op_timeout"):
                if float(cluster.conf_get(name) or 0) <= 0:
                    cluster.conf_set(name, str(OP_TIMEOUT))
            cluster.connect()
        except self._rados.Error as err:
            cluster.shutdown()
            LOG.error("RBD store could not connect as %s: %s", self._who(), err)
            if _errno(err) == errno.ETIMEDOUT:
                raise unavailable("RBD store could not reach the Ceph monitors; check "
                                  "their addresses in rbd_store_ceph_conf and "
                                  "rados_connect_timeout.") from err
            denied = exception.StorageWriteDenied if writing else unavailable
            raise denied(f"RBD store could not log in to Ceph as {self._who()} "
                         f"({_errname(_errno(err))}): check rbd_store_user and its "
                         "keyring.") from err
        try:
            ioctx = cluster.open_ioctx(pool)
        except self._rados.Error as err:
            cluster.shutdown()
            LOG.error("RBD store could not open pool %s: %s", pool, err)
            if _errno(err) != errno.ENOENT:
                raise unavailable(f"RBD store could not open pool {pool} "
                                  f"({_errname(_errno(err))}).") from err
            if writing:
                raise unavailable(f"RBD store: pool {pool} does not exist; check "
                                  "rbd_store_pool.") from err
            raise exception.NotFound(NOT_FOUND_MESSAGE) from err
        # A write to a full pool fails (EDQUOT, ENOSPC) instead of waiting
        # for room; a removal, which frees space, goes through.
        ioctx.set_osdmap_full_try()
        return _Session(cluster, ioctx)

    def _location(self, url: str) -> Location:
        return parse_location(url, self.pool)

    def _check_cluster(self, session: _Session, loc: Location) -> None:
        if loc.fsid is not None and loc.fsid != session.cluster.get_fsid():
            LOG.warning("RBD location names cluster %s, not this store's", loc.fsid)
            raise exception.NotFound("RBD image data is in another Ceph cluster.")

    def _read_error(self, err: Exception) -> exception.GlanceError:
        """Our exception for a failed get, get_size or delete step."""
        if isinstance(err, exception.GlanceError):
            return err
        code = _errno(err)
        if code == errno.ENOENT:
            return exception.NotFound(NOT_FOUND_MESSAGE)
        LOG.error("RBD store request failed: %s", err)
        if code in (errno.EACCES, errno.EPERM):
            return exception.RemoteServiceUnavailable(
                f"RBD store was refused access as {self._who()}; check the user's caps.")
        return exception.RemoteServiceUnavailable(
            f"RBD store is unavailable ({_errname(code)}).")

    # --- add ----------------------------------------------------------------
    def add(self, image_id: str, chunks: Iterable[bytes], size: int) -> AddResult:
        """Write ``chunks`` as RBD image ``image_id`` with snapshot ``snap``.

        Raises Invalid, Duplicate, StorageFull (pool full or over quota),
        StorageWriteDenied (user, keyring), ServiceUnavailable (monitors,
        pool), StoreError, and re-raises what ``chunks`` raises; the RBD
        image is removed on any failure.
        """
        check_object_name(image_id)
        reader = Incoming.wrap(chunks)
        upload = _Upload(self, image_id)
        try:
            upload.start(size)
            upload.write(reader)
            blocking(upload.finish, reader.bytes_read)
        except BaseException as err:
            upload.discard()
            reader.reraise(err, upload.error)
        LOG.debug("Wrote %d bytes of image %s to RBD pool %s",
                  reader.bytes_read, image_id, self.pool)
        return (location_url(upload.fsid, self.pool, image_id), reader.bytes_read,
                reader.checksum, {})

    # --- get ----------------------------------------------------------------
    def get(self, url: str, offset: int = 0,
            length: int | None = None) -> tuple[ReadStream, int | None]:
        """Stream the snapshot, or ``length`` bytes of it from ``offset``.

        Returns (iterator, bytes it will yield). Raises BadStoreUri,
        NotFound, RemoteServiceUnavailable; the iterator raises
        RemoteDataIncomplete (502) when a read fails.
        """
        loc = self._location(url)
        session, image, size = self._open_for_read(loc)
        start = min(max(offset, 0), size)
        end = size if length is None else min(size, start + max(length, 0))
        reads = _ReadAhead(image, start, end, self.read_size)

        def close() -> None:
            blocking(reads.close, session)

        name = f"{loc.pool}/{loc.image}@{loc.snapshot or ''}"
        return remote_download(reads.read, close, end - start, "RBD", name, LOG,
                               chunk_size=self.read_size), end - start

    def get_range(self, url: str, offset: int, length: int) -> ReadStream:
        """``length`` bytes from ``offset``: RBD reads at any offset."""
        return self.get(url, offset, length)[0]

    def _open_for_read(self, loc: Location) -> tuple[_Session, Any, int]:
        def open_image() -> tuple[_Session, Any, int]:
            session = self._connect(loc.pool, writing=False)
            try:
                self._check_cluster(session, loc)
                image = self._rbd.Image(session.ioctx, loc.image,
                                        snapshot=loc.snapshot, read_only=True)
            except BaseException:
                session.close()
                raise
            try:
                return session, image, image.size()
            except BaseException:
                _close_read(image, session)
                raise

        try:
            return blocking(open_image)
        except Exception as err:
            raise self._read_error(err) from err

    def get_size(self, url: str) -> int:
        """Size of the snapshot; raises BadStoreUri, NotFound,
        RemoteServiceUnavailable."""
        session, image, size = self._open_for_read(self._location(url))
        blocking(_close_read, image, session)
        return size

    # --- delete -------------------------------------------------------------
    def delete(self, url: str) -> None:
        """Unprotect and remove the snapshot, then remove the image.

        Raises BadStoreUri, NotFound, InUseByStore (clones, or another
        client has the image open: nothing is changed),
        RemoteServiceUnavailable.
        """
        loc = self._location(url)
        try:
            blocking(self._delete, loc)
        except Exception as err:
            raise self._read_error(err) from err
        LOG.debug("Deleted RBD image %s/%s", loc.pool, loc.image)

    def _delete(self, loc: Location) -> None:
        rbd = self._rbd
        session = self._connect(loc.pool, writing=False)
        try:
            self._check_cluster(session, loc)
            removed_snapshot = False
            with rbd.Image(session.ioctx, loc.image) as image:
                snapshots = {snap["name"] for snap in image.list_snaps()}
                if loc.snapshot in snapshots:
                    if image.is_protected_snap(loc.snapshot):
                        try:
                            image.unprotect_snap(loc.snapshot)
                        except rbd.ImageBusy as err:
                            raise exception.InUseByStore(
                                "RBD image has clones; delete them first.") from err
                    image.remove_snap(loc.snapshot)
                    removed_snapshot = True
            try:
                rbd.RBD().remove(session.ioctx, loc.image)
            except (rbd.ImageBusy, rbd.ImageHasSnapshots) as err:
                # Open elsewhere, or snapshots of someone else's: put ours
                # back so the image stays as whole as it was.
                if removed_snapshot:
                    with rbd.Image(session.ioctx, loc.image) as image:
                        image.create_snap(loc.snapshot)
                        image.protect_snap(loc.snapshot)
                raise exception.InUseByStore(
                    "RBD image is in use by another client or has other snapshots.") from err
        finally:
            session.close()


    # --- leftovers ----------------------------------------------------------
    def remove_leftovers(self, image_id: str, keep: Iterable[str] = ()) -> None:
        """Remove the RBD image ``image_id`` in this store's pool and its
        snapshots (a writer that died left it half written, or finished it
        and died before its location was recorded), unless a location in
        ``keep`` names it. Raises InUseByStore while a client still has it
        open (a dead client's watch lapses after Ceph's watch timeout; the
        reaper tries again), RemoteServiceUnavailable."""
        if any(self._names(url, image_id) for url in keep):
            return
        try:
            removed = blocking(self._remove_leftovers, image_id)
        except Exception as err:
            raise self._read_error(err) from err
        if removed:
            LOG.info("Removed RBD image %s/%s, left by a write that did not finish",
                     self.pool, image_id)

    def _names(self, url: str, image_id: str) -> bool:
        try:
            loc = self._location(url)
        except exception.BadStoreUri:
            return False
        return (loc.pool, loc.image) == (self.pool, image_id)

    def _remove_leftovers(self, image_id: str) -> bool:
        rbd = self._rbd
        session = self._connect(self.pool, writing=False)
        try:
            remove_image(rbd, session.ioctx, image_id)
        except rbd.ImageNotFound:
            return False
        except rbd.ImageBusy as err:
            raise exception.InUseByStore(
                f"RBD image {image_id} is still open by another client.") from err
        finally:
            session.close()
        return True


def remove_image(rbd: Any, ioctx: Any, name: str) -> None:
    """Remove RBD image ``name`` with all its snapshots, protected or not."""
    with rbd.Image(ioctx, name) as image:
        for snap in list(image.list_snaps()):
            if image.is_protected_snap(snap["name"]):
                image.unprotect_snap(snap["name"])
            image.remove_snap(snap["name"])
    rbd.RBD().remove(ioctx, name)


def _check(completion: Any) -> None:
    """Raise OSError when the aio read or write of ``completion`` failed."""
    result = completion.get_return_value()
    if result < 0:
        raise OSError(-result, os.strerror(-result))


def _close_read(image: Any, session: _Session) -> None:
    try:
        image.close()
    finally:
        session.close()


class _ReadAhead:
    """Reads of ``[start, end)`` of an open image in pieces of ``size``
    (aligned, so none straddles objects), ``READS_AHEAD`` in flight."""

    def __init__(self, image: Any, start: int, end: int, size: int) -> None:
        self.image = image
        self.next = start
        self.end = end
        self.size = size
        self.pending: collections.deque[tuple[Any, list[bytes]]] = collections.deque()

    def _submit(self) -> None:
        while len(self.pending) < READS_AHEAD and self.next < self.end:
            length = min(self.end, (self.next // self.size + 1) * self.size) - self.next
            box: list[bytes] = []
            completion = self.image.aio_read(self.next, length,
                                             lambda _c, data, box=box: box.append(data))
            self.pending.append((completion, box))
            self.next += length

    def read(self, _amount: int) -> bytes:
        """The next piece, b"" at the end; raises OSError when it failed."""
        self._submit()
        if not self.pending:
            return b""
        completion, box = self.pending.popleft()
        blocking(completion.wait_for_complete_and_cb)
        _check(completion)
        self._submit()
        return box[0] if box else b""

    def close(self, session: _Session) -> None:
        """Let the reads in flight end, then close the image and the
        session (blocks)."""
        try:
            while self.pending:
                self.pending.popleft()[0].wait_for_complete_and_cb()
        finally:
            _close_read(self.image, session)


def _ignore(_completion: Any) -> None:
    """Completion callback of writes: the upload waits on the completions."""


class _Upload:
    """One image being written: its session, image and writes in flight."""

    def __init__(self, driver: RbdDriver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.pool = driver.pool
        self.session: _Session | None = None
        self.image: Any = None
        self.created = False
        self.fsid = ""
        self.size = 0                 # the RBD image's current size
        self.pending: collections.deque[tuple[Any, bytes]] = collections.deque()
        self._zeros = bytes(driver.write_size) if driver.thin else b""

    def start(self, size: int) -> None:
        self.session = blocking(self.driver._connect, self.pool, True)
        blocking(self._create, max(size, 0))

    def _create(self, size: int) -> None:
        assert self.session is not None
        self.fsid = self.session.cluster.get_fsid()
        rbd = self.driver._rbd
        try:
            rbd.RBD().create(self.session.ioctx, self.name, size,
                             order=self.driver.order, old_format=False)
        except rbd.ImageExists as err:
            raise exception.Duplicate(
                f"RBD already holds an image named {self.name}") from err
        self.created = True
        self.size = size
        self.image = rbd.Image(self.session.ioctx, self.name)

    def write(self, reader: Incoming) -> None:
        """Read the upload a piece at a time (in this green thread) and hand
        each to librbd, ``WRITES_IN_FLIGHT`` at most. Pieces never straddle
        objects, so an all-zero one is simply not written."""
        size = self.driver.write_size
        offset = 0
        while True:
            block = reader.read_block(size)
            if not block:
                break
            end = offset + len(block)
            if end > self.size:
                self._grow(end)
            if not (self._zeros and self._is_zero(block)):
                if len(self.pending) >= WRITES_IN_FLIGHT:
                    self._wait_oldest()
                completion = self.image.aio_write(block, offset, _ignore)
                self.pending.append((completion, block))
            offset = end

    def _is_zero(self, block: bytes) -> bool:
        zeros = self._zeros
        return block == (zeros if len(block) == len(zeros) else zeros[:len(block)])

    def _grow(self, needed: int) -> None:
        """Enlarge the image past ``needed`` (no writes in flight meanwhile)."""
        while self.pending:
            self._wait_oldest()
        new_size = max(needed, FIRST_SIZE, min(2 * self.size, self.size + MAX_GROWTH))
        blocking(self.image.resize, new_size)
        self.size = new_size

    def _wait_oldest(self) -> None:
        completion, _ = self.pending.popleft()
        blocking(completion.wait_for_complete_and_cb)
        _check(completion)


    def finish(self, size: int) -> None:
        """Wait for the writes, trim to ``size``, snapshot and protect (blocks)."""
        while self.pending:
            completion, _ = self.pending.popleft()
            completion.wait_for_complete_and_cb()
            _check(completion)
        if size != self.size:
            self.image.resize(size)
            self.size = size
        self.image.flush()
        self.image.create_snap(SNAPSHOT)
        self.image.protect_snap(SNAPSHOT)
        image, self.image = self.image, None
        image.close()
        self._close_session()

    def error(self, err: Exception) -> exception.GlanceError:
        """Our exception for a failed write step."""
        if isinstance(err, exception.GlanceError):
            return err
        code = _errno(err)
        LOG.error("RBD store write of image %s failed: %s", self.name, err)
        if code in (errno.ENOSPC, errno.EDQUOT):
            return exception.StorageFull(
                f"RBD store: pool {self.pool} is full or over its quota.")
        if code == errno.ETIMEDOUT:
            return exception.ServiceUnavailable(
                "RBD store did not complete a write in time; try again later.")
        if code in (errno.EACCES, errno.EPERM):
            return exception.StorageWriteDenied(
                f"RBD store was refused writing to pool {self.pool} as "
                f"{self.driver._who()}; check the user's caps.")
        return exception.StoreError(f"RBD store write failed ({_errname(code)}).")

    def discard(self) -> None:
        """Remove what a failed upload wrote; log what cannot be removed."""
        try:
            blocking(self._discard)
        except Exception as err:
            LOG.error("Could not remove RBD image %s/%s of a failed upload: %s",
                      self.pool, self.name, err)

    def _discard(self) -> None:
        if self.session is None:
            return
        try:
            # Writes still in flight end (or time out) before the image closes.
            while self.pending:
                self.pending.popleft()[0].wait_for_complete_and_cb()
            if self.image is not None:
                image, self.image = self.image, None
                image.close()
            if self.created:
                self._remove()
        finally:
            self._close_session()

    def _remove(self) -> None:
        assert self.session is not None
        remove_image(self.driver._rbd, self.session.ioctx, self.name)
        self.created = False
        LOG.info("Removed RBD image %s/%s of a failed upload", self.pool, self.name)

    def _close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()
