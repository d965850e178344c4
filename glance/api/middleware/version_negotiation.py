"""Glance paste name of the versionnegotiation filter."""

from glance_clone.api.middleware.version_negotiation import VersionNegotiationFilter

__all__ = ["VersionNegotiationFilter"]
