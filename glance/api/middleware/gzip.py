"""Glance paste name of the gzip filter."""

from glance_clone.api.middleware.gzip import GzipMiddleware

__all__ = ["GzipMiddleware"]
