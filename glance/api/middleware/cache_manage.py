"""Glance paste name of the cachemanage filter."""

from glance_clone.api.middleware.cache_manage import CacheManageFilter

__all__ = ["CacheManageFilter"]
