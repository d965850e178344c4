"""The request context every call below the middleware takes first."""

from __future__ import annotations

import dataclasses
import uuid


def new_request_id() -> str:
    return "req-" + str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """Who is calling, as decided by the context middleware.

    ``owner`` is the value written to and compared with ``images.owner``:
    the tenant, or the user when ``owner_is_tenant`` is off.
    """

    user: str | None = None
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    read_only: bool = False
    show_deleted: bool = False
    owner_is_tenant: bool = True
    auth_token: str | None = None
    service_catalog: object = None
    request_id: str = dataclasses.field(default_factory=new_request_id)

    @property
    def owner(self) -> str | None:
        return self.tenant if self.owner_is_tenant else self.user

    def replace(self, **changes: object) -> RequestContext:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_policy_values(self) -> dict[str, object]:
        """The credentials oslo.policy checks rules against."""
        return {
            "user": self.user, "user_id": self.user,
            "tenant": self.tenant, "project_id": self.tenant,
            "roles": list(self.roles), "is_admin": self.is_admin,
        }


def admin_context(request_id: str | None = None) -> RequestContext:
    """A context for trusted internal callers (scrubber, cache tools)."""
    return RequestContext(is_admin=True, roles=("admin",),
                          request_id=request_id or new_request_id())
