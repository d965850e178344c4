"""Compatibility names for an operator's existing Glance paste files.

Glance 11's ``glance-api-paste.ini`` and ``glance-registry-paste.ini`` name
factories under ``glance.*``; each module here re-exports ours under that
name, so those files load unchanged. Nothing else should import this package.
"""
