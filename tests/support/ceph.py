"""Looking behind the RBD store's back: a connection as its user, image
snapshots, removal. Needs Debian's rados and rbd modules in the venv."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def session(conf: str, user: str, pool: str) -> Iterator[tuple[Any, Any]]:
    """(connection, I/O context on ``pool``) as ``client.<user>``, both
    closed afterwards."""
    import rados

    cluster = rados.Rados(conffile=conf, rados_id=user,
                          conf={"client_mount_timeout": "30", "rados_osd_op_timeout": "60"})
    cluster.connect()
    try:
        ioctx = cluster.open_ioctx(pool)
        try:
            yield cluster, ioctx
        finally:
            ioctx.close()
    finally:
        cluster.shutdown()


def snapshots(ioctx: Any, name: str) -> dict[str, bool]:
    """{snapshot name: protected} of RBD image ``name``."""
    import rbd

    with rbd.Image(ioctx, name, read_only=True) as image:
        return {s["name"]: image.is_protected_snap(s["name"]) for s in image.list_snaps()}


def remove_image(ioctx: Any, name: str) -> None:
    """Unprotect and remove every snapshot of RBD image ``name``, then it;
    nothing when it is gone already."""
    import rbd

    from glance_clone.store import rbd as rbd_store

    try:
        rbd_store.remove_image(rbd, ioctx, name)
    except rbd.ImageNotFound:
        pass


def conf_copy(conf: str, folder: Path, setting: str, value: str,
              section: str = "global") -> str:
    """A copy of ceph.conf ``conf`` in ``folder`` with ``setting`` of
    ``section`` replaced (it must be there); returns its path."""
    text = Path(conf).read_text()
    pattern = rf"(?ms)(^\[{re.escape(section)}\]$.*?^){setting} = [^\n]*"
    text, count = re.subn(pattern, rf"\g<1>{setting} = {value}", text, count=1)
    assert count == 1, (section, setting)
    path = folder / ("ceph-%s.conf" % setting)
    path.write_text(text)
    return str(path)


def conf_with_client(conf: str, folder: Path, **settings: str) -> str:
    """A copy of ceph.conf ``conf`` in ``folder`` with a ``[client]``
    section of ``settings`` (e.g. ``rados_osd_op_timeout``)."""
    lines = ["[client]"] + ["%s = %s" % item for item in settings.items()]
    path = folder / "ceph-client.conf"
    path.write_text(Path(conf).read_text() + "\n" + "\n".join(lines) + "\n")
    return str(path)
