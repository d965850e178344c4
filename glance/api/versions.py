"""``glance.api.versions:create_resource`` for Glance paste files."""

from glance_clone.api.versions import create_resource

__all__ = ["create_resource"]
