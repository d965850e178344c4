"""``glance.registry.api:API.factory`` for Glance paste files."""

from glance_clone.registry.api import API

__all__ = ["API"]
