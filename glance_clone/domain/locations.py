"""Image locations on v2: who sees them, and JSON-patch changes to them.

A location is where an image's bytes live (``file://``, ``rbd://``,
``swift://``, an http URL...). It can name the store's credentials and
lets its reader fetch the data behind every check of the API, so it is
shown only when the operator asks for it (``show_multiple_locations`` for
``locations``, ``show_image_direct_url`` for ``direct_url``, both off by
default) and then only to callers the ``get_image_location`` policy lets
through (admin-only by default), never for a deactivated image to a
non-admin. Nova's RBD backend reads ``direct_url`` (an ``rbd://`` URL) with
such a trusted identity to clone images instead of downloading them.

Changes (``add``/``replace``/``remove`` on ``/locations``) need
``show_multiple_locations`` (403 otherwise: nobody may write what they
cannot read), an image that is ``queued`` or ``active`` (409) and the
``set_image_location`` (add, replace) or ``delete_image_location``
(remove) policy. A new URL passes the same source filter as v1's
locations and copy-from (no local files, no internal hosts unless
allowed). Adding the first location to a queued image activates it with
the size the store reports.

The v2.17 location API serves services that wrote an image's bytes
themselves (Cinder, Nova): ``POST /v2/images/{id}/locations`` gives a
queued image its one location (``add_image_location``; callers without
the ``service`` or ``admin`` role only http(s) URLs) through a
``location_import`` task that reads and checks the data first
(``location_import``); ``GET`` lists them (``fetch_image_location``);
both rules default to admins and services, and neither needs
``show_multiple_locations``.

``DELETE /v2/stores/{store_id}/{image_id}`` (v2.10, named stores only)
removes an active image's location in one store, as a remove of that
position would, under ``get_image_location`` and ``delete_image_location``
but without needing ``show_multiple_locations``.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.common.redaction import redact_url
from glance_clone.domain import image_status, quota
from glance_clone.domain.entity import Image

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.BoolOpt("show_image_direct_url", default=False,
                help="Show v2's direct_url (the image's first location) to "
                     "callers the get_image_location policy lets through."),
    cfg.BoolOpt("show_multiple_locations", default=False,
                help="Show v2's locations to callers the get_image_location "
                     "policy lets through, and let callers change them "
                     "(set_image_location, delete_image_location)."),
]
# Fields of validation_data and the image attribute each must agree with.
VALIDATION_FIELDS = ("checksum", "os_hash_algo", "os_hash_value")
# Hash algorithms of the location API's validation_data, and the length of
# their hex digests.
API_HASHES = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
TRUSTED_ROLES = ("admin", "service")
HTTP_SCHEMES = ("http", "https")
CHANGEABLE = (image_status.QUEUED, image_status.ACTIVE)


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


class Locations:
    def __init__(self, conf: Any, policy: Any, stores: Any, source_check: Any,
                 registry: Any) -> None:
        self.conf = conf
        self.policy = policy
        self.stores = stores
        # v1's check of external sources (ImageService.check_external_source).
        self.source_check = source_check
        self.registry = registry

    # -- reads ---------------------------------------------------------------
    def reveal(self, context: RequestContext, image: Image) -> None:
        """Set what ``context`` may see of the image's locations
        (``Image.shown_locations``, ``Image.shown_direct_url``)."""
        conf = self.conf
        image.shown_locations = image.shown_direct_url = None
        if not (conf.show_multiple_locations or conf.show_image_direct_url):
            return
        if image.status == image_status.DEACTIVATED and not context.is_admin:
            return
        if not self.policy.check(context, "get_image_location", image.policy_target()):
            return
        live = [{"url": loc["url"], "metadata": loc.get("metadata") or {}}
                for loc in image.live_locations()]
        if conf.show_multiple_locations:
            image.shown_locations = live
        if conf.show_image_direct_url and live:
            image.shown_direct_url = live[0]["url"]

    # -- changes ---------------------------------------------------------------
    def apply(self, context: RequestContext, image: Image,
              changes: list[Any]) -> tuple[dict[str, Any], list[str]]:
        """The registry values of ``changes`` (JSON-patch operations on
        ``locations``, in order), and the URLs whose data is to be removed
        once the registry took them.

        Raises Forbidden (locations hidden, policy, last location), Conflict
        (status; validation data that disagrees), Invalid (bad position,
        URL or duplicate), LimitExceeded (location quota, storage quota).
        """
        if not self.conf.show_multiple_locations:
            raise exception.Forbidden("It's not allowed to change locations if "
                                      "locations are invisible.")
        target = image.policy_target()
        for change in changes:
            rule = "delete_image_location" if change.op == "remove" else "set_image_location"
            self.policy.enforce(context, rule, target)
        return self.changed(context, image, changes)

    def changed(self, context: RequestContext, image: Image,
                changes: list[Any]) -> tuple[dict[str, Any], list[str]]:
        """``apply`` past the visibility and policy checks."""
        if image.status not in CHANGEABLE:
            raise exception.Conflict("Locations of an image in status %s cannot be "
                                     "changed." % image.status)
        live = [dict(loc) for loc in image.live_locations()]
        values: dict[str, Any] = {}
        for change in changes:
            if change.op == "remove":
                self._remove(image, live, change.position)
            else:
                if change.op == "add":
                    self._add(image, live, change.position, change.value, values)
                else:
                    self._replace(image, live, change.value, values)
        removed = [loc["url"] for loc in image.live_locations()
                   if loc["url"] not in {new["url"] for new in live}]
        self._check_quotas(context, image, live, values)
        kept = [loc for loc in image.record.get("location_data") or []
                if loc.get("status", "active") != "active"]
        values["location_data"] = live + kept
        return values, removed

    def _add(self, image: Image, live: list[dict], position: Any, value: dict,
             values: dict) -> None:
        index = len(live) if position == "-" else position
        if not isinstance(index, int) or not 0 <= index <= len(live):
            raise exception.Invalid("Invalid position for adding a location.")
        live.insert(index, self._new_location(image, live, value, values))

    def _replace(self, image: Image, live: list[dict], value: list[dict],
                 values: dict) -> None:
        if not value:
            raise exception.Forbidden("Cannot remove last location in the image.")
        if live:
            # Only the metadata of the same URLs may change: a different set
            # would drop data the image is known by.
            if sorted(loc["url"] for loc in value) != sorted(loc["url"] for loc in live):
                raise exception.Invalid("Locations of an image with data can only be "
                                        "replaced by the same URLs.")
            by_url = {loc["url"]: loc for loc in live}
            live[:] = [dict(by_url[loc["url"]], metadata=loc["metadata"]) for loc in value]
            return
        for loc in value:
            live.append(self._new_location(image, live, loc, values))

    def _remove(self, image: Image, live: list[dict], position: Any) -> None:
        _check_active(image)
        if not isinstance(position, int) or not 0 <= position < len(live):
            raise exception.Invalid("Invalid position for removing a location.")
        _check_not_last(live)
        del live[position]

    # -- DELETE /v2/stores/{store_id}/{image_id} ---------------------------------
    def check_store(self, store_id: str) -> None:
        """Raises NotFound without named stores, Conflict for a store id
        this node does not have."""
        require_named_stores(self.stores)
        if store_id not in self.stores.stores:
            raise exception.Conflict("Unknown store '%s'." % store_id)

    def position_in_store(self, context: RequestContext, image: Image,
                          store_id: str) -> int:
        """Where in the image's locations is the one of ``store_id``, for
        its removal; raises Forbidden (policy, last location), Conflict
        (status), NotFound (no location in that store)."""
        target = image.policy_target()
        for rule in ("get_image_location", "delete_image_location"):
            self.policy.enforce(context, rule, target)
        live = image.live_locations()
        _check_active(image)
        _check_not_last(live)
        position = next((index for index, loc in enumerate(live)
                         if self._store_of(loc) == store_id), None)
        if position is None:
            raise exception.NotFound("Image %s is not available in store '%s'."
                                     % (image.id, store_id))
        return position

    def _store_of(self, location: dict[str, Any]) -> str | None:
        """The store id a location names, else the store serving its URL."""
        store = (location.get("metadata") or {}).get("store")
        if store:
            return str(store)
        try:
            return self.stores.store_for_uri(location["url"]).id
        except exception.GlanceError:
            return None

    def _new_location(self, image: Image, live: list[dict], value: dict,
                      values: dict) -> dict:
        url = value["url"]
        self.source_check(url)
        if any(loc["url"] == url for loc in live):
            raise exception.Invalid("Location %s is already in the image's "
                                    "locations." % redact_url(url))
        self._validate_data(image, value.get("validation_data") or {}, values)
        return {"url": url, "metadata": value.get("metadata") or {}, "status": "active"}

    @staticmethod
    def _validate_data(image: Image, data: dict, values: dict) -> None:
        """Checksum and hash given with a location must agree with the
        image's (409); a queued image takes them."""
        for name in VALIDATION_FIELDS:
            if name not in data:
                continue
            known = values.get(name) or image.record.get(name)
            if known and known != data[name]:
                raise exception.Conflict("The %s of the location does not match the "
                                         "image's." % name)
            if image.status == image_status.QUEUED:
                values[name] = data[name]

    def _check_quotas(self, context: RequestContext, image: Image, live: list[dict],
                      values: dict) -> None:
        limit = self.conf.image_location_quota
        if 0 <= limit < len(live):
            raise exception.ImageLocationLimitExceeded(attempted=len(live),
                                                       maximum=limit)
        if image.status == image_status.QUEUED and live:
            # The first data of the image: its size is what the store says.
            values["size"] = self.stores.get_size(live[0]["url"]) or None
        size = values.get("size") or image.record.get("size") or 0
        remaining = quota.remaining_storage(self.conf, self.registry, context, image.id)
        if remaining is not None and size * len(live) > remaining:
            raise exception.StorageQuotaFull(reason="%d bytes left, %d needed"
                                             % (remaining, size * len(live)))

    # -- the v2.17 location API ------------------------------------------------
    def check_api_request(self, context: RequestContext, image: Image, url: Any,
                          validation_data: Any) -> None:
        """Raises Invalid (malformed), Forbidden (policy, a URL the http
        store does not serve from a caller that is neither admin nor
        service), Conflict (not queued)."""
        if not isinstance(url, str) or not url:
            raise exception.Invalid("'url' must be a non-empty string.")
        if validation_data is not None:
            _check_api_hash(validation_data)
        self.policy.enforce(context, "add_image_location", image.policy_target())
        trusted = any(role in TRUSTED_ROLES for role in context.roles)
        scheme = url.split(":", 1)[0].lower()
        if not trusted and (scheme not in HTTP_SCHEMES
                            or scheme not in self.stores.known_schemes()):
            raise exception.Forbidden("Only admins and services may add a location "
                                      "that is not an http(s) URL served by the "
                                      "http store.")
        if image.status != image_status.QUEUED:
            raise exception.Conflict("A location can only be added to a queued image, "
                                     "not to one in status %s." % image.status)

    def listed(self, context: RequestContext, image: Image) -> list[dict[str, Any]]:
        """The locations of the v2.17 GET; raises Forbidden (policy)."""
        self.policy.enforce(context, "fetch_image_location", image.policy_target())
        return [{"url": loc["url"], "metadata": loc.get("metadata") or {}}
                for loc in image.live_locations()]

    def remove_data(self, urls: list[str]) -> None:
        """Delete the data of locations the registry no longer lists; a
        store refusal is logged (the image no longer points there)."""
        for url in urls:
            try:
                self.stores.delete(url)
            except exception.NotFound:
                pass
            except exception.GlanceError as err:
                LOG.error("The data of a removed location was left in its store "
                          "(%s): %s", redact_url(url), err)


def _check_active(image: Image) -> None:
    """Locations are removed only from active images (Conflict)."""
    if image.status != image_status.ACTIVE:
        raise exception.Conflict("Locations can only be removed from an active "
                                 "image.")


def _check_not_last(live: list[dict]) -> None:
    """An image keeps at least one location (Forbidden)."""
    if len(live) == 1:
        raise exception.Forbidden("Cannot remove last location in the image.")


def _check_api_hash(data: Any) -> None:
    """validation_data of the location API: both keys, a known algorithm,
    a hex digest of its length; raises Invalid."""
    if not isinstance(data, dict) or set(data) != {"os_hash_algo", "os_hash_value"}:
        raise exception.Invalid("validation_data takes os_hash_algo and os_hash_value, "
                                "both.")
    algo, value = data["os_hash_algo"], data["os_hash_value"]
    if algo not in API_HASHES:
        raise exception.Invalid("os_hash_algo must be one of %s."
                                % ", ".join(sorted(API_HASHES)))
    if not isinstance(value, str) or len(value) != API_HASHES[algo] or \
            any(c not in "0123456789abcdefABCDEF" for c in value):
        raise exception.Invalid("os_hash_value must be the hex digest of %s." % algo)


def require_named_stores(stores: Any) -> None:
    """Raises NotFound unless named stores (``enabled_backends``) are
    configured: the routes over stores by id have nothing to show or act
    on without them."""
    if not stores.multi:
        raise exception.NotFound("Multi backend is not supported at this site.")
