"""``glance.api:root_app_factory`` for Glance paste files."""

from glance_clone.api import root_app_factory

__all__ = ["root_app_factory"]
