"""Image record writes that survive a lost registry answer.

glance-api changes an image's record in the registry and its bytes in a
store, and the two never share a transaction. When a write to the registry
gets no answer (the connection reset, a timeout, a 5xx other than 503), it
may or may not have been committed. Acting as if it was not (removing the
bytes just uploaded, say) is how an image ends up active with no data.

So every image write goes through ``RegistryWrites``. When the registry
does not answer, it reads the record back and decides from what the
registry holds:

- the write's effect is there: it was committed; carry on as if answered;
- the record is still as the write expects (the status it swaps from; no
  record yet for a create): it was not; send it again;
- anything else: another writer changed the image first, as if the
  registry had answered 409 (StatusConflict), or 404 (ImageNotFound) when
  the image is gone.

Sending again is safe because every status write here is a
compare-and-swap on the status, a create of an id chosen before the first
attempt, or a conditional soft delete: none can apply twice or undo
another writer's change. Metadata, tag and member writes set values
(last writer wins, as with any two updates): sending one again gives the
record it would have had had the first attempt arrived a little later.
An idempotency key remembered by the registry would answer the same
question, but needs a table, its expiry and more protocol; the status
machine already says everything the caller needs.

The registry's answers are final: a 4xx, and a 503, which it sends only
when it refused before writing (its database down or its pool full). Reads
and re-sends go on for ``settle_time`` seconds (a registry restart); after
that RegistryUnavailable is raised and the outcome may still be unknown:
callers must then leave bytes where they are. The scrubber's reaper kills
uploads left in ``saving`` and finishes deletes left in ``pending_delete``.

Every status these writes set is checked against the one table of
``image_status`` before anything is sent: v1 and v2 creates, uploads,
(de)activations and deletes all pass here.

This module knows nothing of HTTP requests: v1 and v2 both use it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import eventlet

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status

LOG = logging.getLogger(__name__)

# How long a write is retried before the api gives up and answers 503: a
# registry restart takes a second or two.
SETTLE_TIME = 30.0
FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0

# The registry did not answer: the write may or may not have happened.
# (Its own 503 is an answer: RegistryUnavailable, our client's "could not
# reach", is the subclass of ServiceUnavailable that is not.)
UNANSWERED = (exception.RegistryUnavailable, exception.ServerError)

APPLIED, NOT_YET, CONFLICT, GONE = "applied", "not yet", "conflict", "gone"


def new_image_id() -> str:
    """An id for a new image: chosen before the create is sent, so that a
    lost answer can be checked by reading that id."""
    return str(uuid.uuid4())


def holds(image: dict | None, url: str) -> bool:
    """Whether the record has ``url`` as a live location (its bytes are the
    record's: nobody else may remove them)."""
    return image is not None and any(
        loc.get("url") == url and loc.get("status", "active") != "deleted"
        for loc in image.get("location_data") or [])


class RegistryWrites:
    """Creates, status swaps and deletes of image records, settled."""

    def __init__(self, registry: Any, settle_time: float = SETTLE_TIME,
                 sleep: Callable[[float], Any] = eventlet.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.settle_time = settle_time
        self.sleep = sleep
        self.clock = clock

    # -- reads ---------------------------------------------------------------
    def read(self, context: RequestContext, image_id: str) -> dict | None:
        """The record as the registry holds it now, None when it is not
        there for this caller (deleted images are hidden from non-admins).

        Retried while the registry does not answer; raises
        RegistryUnavailable after ``settle_time``.
        """
        return self._retrying(lambda: self._read_once(context, image_id))

    def _read_once(self, context: RequestContext, image_id: str) -> dict | None:
        try:
            image: dict = self.registry.get_image(context, image_id)
        except exception.NotFound:
            return None
        return image

    # -- writes --------------------------------------------------------------
    def create(self, context: RequestContext, values: dict) -> dict:
        """Add a record; ``values["id"]`` must be set (``new_image_id``).

        Raises InvalidImageStatusTransition (not a status to start in), the
        registry's refusals (Duplicate on the first attempt, Invalid,
        Forbidden) and RegistryUnavailable.
        """
        image_id = values["id"]
        image_status.check_initial(values.get("status", image_status.QUEUED))

        def verdict(image: dict | None) -> str:
            return NOT_YET if image is None else APPLIED

        return self._settle(context, image_id,
                            lambda: self.registry.add_image(context, values), verdict)

    def change(self, context: RequestContext, image_id: str, values: dict,
               from_state: str, applied: Callable[[dict], bool] | None = None,
               purge_props: bool = False,
               properties_from: dict[str, str | None] | None = None,
               remove_properties: list[str] | None = None) -> dict:
        """Update the record while its status is ``from_state`` (with
        ``purge_props``, ``values["properties"]`` become all its properties)
        and, with ``properties_from``, while those properties have those
        values (None: absent); ``remove_properties`` are removed by name.

        ``applied(record)`` tells whether a record read back shows this
        change; by default, its status is ``values["status"]``. Raises
        InvalidImageStatusTransition (a move the table does not allow),
        StatusConflict (the status is neither), ImageNotFound (gone), the
        registry's other refusals and RegistryUnavailable.
        """
        if values.get("status", from_state) != from_state:
            image_status.check(from_state, values["status"])
        if applied is None:
            target = values["status"]

            def applied(image: dict) -> bool:
                return bool(image["status"] == target)

        def verdict(image: dict | None) -> str:
            if image is None or image.get("deleted"):
                return GONE
            if applied(image):
                return APPLIED
            held = image.get("properties") or {}
            if image["status"] == from_state and all(
                    held.get(k) == v for k, v in (properties_from or {}).items()):
                return NOT_YET
            return CONFLICT

        extra: dict[str, Any] = {}
        if properties_from:
            extra["properties_from"] = properties_from
        if remove_properties:
            extra["remove_properties"] = remove_properties
        return self._settle(
            context, image_id,
            lambda: self.registry.update_image(context, image_id, values,
                                               purge_props=purge_props,
                                               from_state=from_state, **extra),
            verdict)

    def destroy(self, context: RequestContext, image_id: str, from_state: str,
                to_state: str = image_status.DELETED) -> None:
        """Soft-delete the record while its status is ``from_state``; its
        status becomes ``to_state`` (deleted, or pending_delete to leave
        the data to the scrubber).

        Raises InvalidImageStatusTransition, StatusConflict, NotFound (not
        there, or not the caller's to delete), the registry's other refusals
        and RegistryUnavailable. Once an attempt went unanswered, a record
        gone counts as done.
        """
        if to_state != from_state:
            # The same status is no move: an interrupted delete left the
            # record in its final status, only the soft delete is missing.
            image_status.check(from_state, to_state)

        def verdict(image: dict | None) -> str:
            if image is None or image.get("deleted"):
                return APPLIED
            if image["status"] == from_state:
                return NOT_YET
            return CONFLICT

        to = None if to_state == image_status.DELETED else to_state
        self._settle(context, image_id,
                     lambda: self.registry.delete_image(context, image_id,
                                                        from_state=from_state, to_state=to),
                     verdict)

    # -- metadata, tags and members: values set, last writer wins -------------
    def update(self, context: RequestContext, image_id: str, values: dict,
               purge_props: bool = False, from_state: str | None = None,
               remove_properties: list[str] | None = None) -> dict:
        """Write ``values`` (no status change) and remove the properties
        named in ``remove_properties``; with ``from_state``, only while the
        image has that status.

        Raises StatusConflict, ImageNotFound, the registry's other
        refusals and RegistryUnavailable.
        """

        def verdict(image: dict | None) -> str:
            if image is None or image.get("deleted"):
                return GONE
            if shows(image, values, purge_props, remove_properties or ()):
                return APPLIED
            if from_state is not None and image["status"] != from_state:
                return CONFLICT
            return NOT_YET

        extra = {"remove_properties": remove_properties} if remove_properties else {}
        return self._settle(
            context, image_id,
            lambda: self.registry.update_image(context, image_id, values,
                                               purge_props=purge_props,
                                               from_state=from_state, **extra),
            verdict)

    def add_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        self._settle(context, image_id,
                     lambda: self.registry.add_tag(context, image_id, tag),
                     _unless_gone(lambda image: tag in (image.get("tags") or [])))

    def remove_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        """Raises NotFound when the image has no such tag (answered so)."""
        self._settle(context, image_id,
                     lambda: self.registry.delete_tag(context, image_id, tag),
                     _unless_gone(lambda image: tag not in (image.get("tags") or [])))

    def add_member(self, context: RequestContext, image_id: str, member: str,
                   can_share: bool | None = None) -> None:
        """Add ``member`` or change its can_share."""

        def shown(rows: list[dict]) -> bool:
            row = _row(rows, member)
            return row is not None and can_share in (None, row["can_share"])

        self._settle_members(context, image_id,
                             lambda: self.registry.add_member(context, image_id, member,
                                                              can_share),
                             _unless_gone(shown))

    def remove_member(self, context: RequestContext, image_id: str, member: str) -> None:
        """Raises NotFound when ``member`` is not a member (answered so)."""
        self._settle_members(context, image_id,
                             lambda: self.registry.delete_member(context, image_id, member),
                             _unless_gone(lambda rows: _row(rows, member) is None))

    def replace_members(self, context: RequestContext, image_id: str,
                        memberships: list[dict]) -> None:
        """Make ``memberships`` (member_id, can_share) the member list."""

        # The list is not validated here: a malformed one never shows, is
        # sent again and refused by the registry.
        wanted = {m.get("member_id"): m for m in memberships if isinstance(m, dict)}

        def shown(rows: list[dict]) -> bool:
            held = {row["member_id"]: row for row in rows}
            return set(held) == set(wanted) and all(
                held[member]["can_share"] == m["can_share"]
                for member, m in wanted.items() if "can_share" in m)

        self._settle_members(context, image_id,
                             lambda: self.registry.replace_members(context, image_id,
                                                                   memberships),
                             _unless_gone(shown))

    def set_member_status(self, context: RequestContext, image_id: str, member: str,
                          status: str) -> dict:
        """The member's consent; raises MemberNotFound (also when the image
        went meanwhile)."""

        def verdict(rows: list[dict] | None) -> str:
            row = _row(rows or [], member)
            if row is None:
                return GONE
            return APPLIED if row["status"] == status else NOT_YET

        found = self.settle(
            "member %s of image %s" % (member, image_id),
            lambda: self.registry.set_member_status(context, image_id, member, status),
            lambda: self._members_once(context, image_id), verdict,
            lambda: exception.MemberNotFound(
                "Member %s not found for image %s" % (member, image_id)))
        if isinstance(found, list):  # settled by reading the member list back
            found = _row(found, member)
        return found

    def _settle_members(self, context: RequestContext, image_id: str,
                        send: Callable[[], Any], verdict: Callable[[Any], str]) -> None:
        self.settle("members of image %s" % image_id, send,
                    lambda: self._members_once(context, image_id), verdict,
                    lambda: exception.ImageNotFound(
                        "Image with identifier %s not found" % image_id))

    def _members_once(self, context: RequestContext, image_id: str) -> list[dict] | None:
        try:
            rows: list[dict] = self.registry.get_image_members(context, image_id)
        except exception.NotFound:
            return None
        return rows

    # -- the rule --------------------------------------------------------------
    def _settle(self, context: RequestContext, image_id: str,
                send: Callable[[], Any], verdict: Callable[[dict | None], str]) -> Any:
        return self.settle(
            "image %s" % image_id, send, lambda: self._read_once(context, image_id),
            verdict, lambda: exception.ImageNotFound(
                "Image with identifier %s not found" % image_id))

    def settle(self, what: str, send: Callable[[], Any],
               read: Callable[[], dict | None],
               verdict: Callable[[dict | None], str],
               gone: Callable[[], Exception]) -> Any:
        """``send()`` until the registry answers; after an unanswered
        attempt, a 409 or 404 answer may be our own earlier attempt's
        doing, so the record ``read()`` back decides (``verdict``), for
        any kind of record (``what`` names it in logs; ``gone()`` is the
        error when it is no longer there)."""
        patience = self._patience()
        unanswered = False
        while True:
            try:
                return send()
            except UNANSWERED as err:
                LOG.warning("Registry write for %s got no answer (%s); "
                            "reading it back", what, err)
                unanswered = True
                failure: Exception = err
            except (exception.Conflict, exception.NotFound) as err:
                if not unanswered:
                    raise
                failure = err
            record = self._retrying(read, patience)
            found = verdict(record)
            if found == APPLIED:
                LOG.info("Registry write for %s was committed", what)
                return record
            if found == CONFLICT:
                raise exception.StatusConflict()
            if found == GONE:
                raise gone()
            patience.wait("The image registry did not take the change in time; "
                          "try again.", failure)

    def _retrying(self, call: Callable[[], Any], patience: _Patience | None = None) -> Any:
        """``call()`` until the registry answers or patience runs out."""
        patience = patience or self._patience()
        while True:
            try:
                return call()
            except UNANSWERED as err:
                patience.wait("The image registry did not answer in time; the "
                              "outcome of the change is unknown.", err)

    def _patience(self) -> _Patience:
        return _Patience(self.clock() + self.settle_time, self.clock, self.sleep)


def shows(image: dict, values: dict, purge_props: bool = False,
          removed: Iterable[str] = ()) -> bool:
    """Whether the record holds every value of an update (``purge_props``:
    exactly its properties) and none of the properties it ``removed``. A
    representation the registry changed reads as "not yet": the update is
    then sent again, which is harmless."""
    if any(name in (image.get("properties") or {}) for name in removed):
        return False
    for name, value in values.items():
        held = image.get(name)
        if name == "properties":
            held = held or {}
            missing = any(held.get(key) != item for key, item in value.items())
            if missing or (purge_props and set(held) != set(value)):
                return False
        elif name == "tags":
            if set(held or []) != set(value):
                return False
        elif held != value:
            return False
    return True


def _unless_gone(shown: Callable[[Any], bool]) -> Callable[[Any], str]:
    """A verdict for a write with no status to swap: there or not yet."""

    def verdict(record: Any) -> str:
        if record is None or (isinstance(record, dict) and record.get("deleted")):
            return GONE
        return APPLIED if shown(record) else NOT_YET
    return verdict


def _row(rows: list[dict], member: str) -> dict | None:
    return next((row for row in rows if row["member_id"] == member), None)


class _Patience:
    """Growing pauses between tries, until a deadline."""

    def __init__(self, deadline: float, clock: Callable[[], float],
                 sleep: Callable[[float], Any]) -> None:
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.pause = FIRST_PAUSE

    def wait(self, message: str, cause: Exception) -> None:
        """Pause before the next try; RegistryUnavailable when it would end
        past the deadline."""
        if self.clock() + self.pause > self.deadline:
            raise exception.RegistryUnavailable(message) from cause
        self.sleep(self.pause)
        self.pause = min(self.pause * 2, MAX_PAUSE)
