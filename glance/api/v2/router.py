"""``glance.api.v2.router:API.factory`` for Glance paste files."""

from glance_clone.api.v2.router import API

__all__ = ["API"]
