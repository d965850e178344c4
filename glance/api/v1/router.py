"""``glance.api.v1.router:API.factory`` for Glance paste files."""

from glance_clone.api.v1.router import API

__all__ = ["API"]
