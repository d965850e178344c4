"""Glance paste name of the cache filter."""

from glance_clone.api.middleware.cache import CacheFilter

__all__ = ["CacheFilter"]
