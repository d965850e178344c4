"""Glance paste names of the context filters."""

from glance_clone.common.context_middleware import (
    ContextMiddleware,
    UnauthenticatedContextMiddleware,
)

__all__ = ["ContextMiddleware", "UnauthenticatedContextMiddleware"]
