"""The image entity: an image record as the registry holds it, with the
questions both APIs ask of it.

``Image`` wraps the registry's document (a dict) rather than copying it
into fields: v1 views, the cache and the scrubber keep reading the same
document, and a field the registry adds later travels through unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status

# Fields of the document that are not image attributes for policy rules.
NOT_POLICY_TARGET = ("properties", "location", "location_data", "tags")


@dataclasses.dataclass
class Image:
    record: dict[str, Any]
    # What the caller may see of the locations (None: hidden), decided by
    # domain.locations for each read.
    shown_locations: list[dict[str, Any]] | None = None
    shown_direct_url: str | None = None

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def owner(self) -> str | None:
        owner = self.record.get("owner")
        return None if owner is None else str(owner)

    @property
    def visibility(self) -> str:
        return str(self.record.get("visibility") or
                   ("public" if self.record.get("is_public") else "shared"))

    @property
    def properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = self.record.setdefault("properties", {})
        return properties

    @property
    def tags(self) -> list[str]:
        return list(self.record.get("tags") or [])

    @property
    def protected(self) -> bool:
        return bool(self.record.get("protected"))

    def live_locations(self) -> list[dict[str, Any]]:
        """Locations whose bytes belong to the image."""
        return [loc for loc in self.record.get("location_data") or []
                if loc.get("status", "active") == "active"]

    def store_ids(self) -> list[str]:
        """Ids of the named stores holding the data (location metadata)."""
        return list(dict.fromkeys(
            loc["metadata"]["store"] for loc in self.live_locations()
            if isinstance(loc.get("metadata"), dict) and loc["metadata"].get("store")))

    def has_data(self) -> bool:
        return bool(self.live_locations()) or bool(self.record.get("location"))

    def is_owned_by(self, context: RequestContext) -> bool:
        """The caller owns the image (admins own everything)."""
        return bool(context.is_admin) or (
            self.owner is not None and self.owner == context.owner)

    def policy_target(self) -> dict[str, Any]:
        """The image's fields and properties as an oslo.policy target;
        ``project_id`` is the owner, as the v2 rules spell it."""
        target = {k: v for k, v in self.record.items() if k not in NOT_POLICY_TARGET}
        target.update(self.record.get("properties") or {})
        target["project_id"] = self.owner
        return target

    def can_leave(self, to_status: str) -> bool:
        return image_status.allowed(self.status, to_status)
