"""Image data backends.

``backend.StoreSet`` is the entry point: it builds the drivers enabled in
``[glance_store] stores`` and routes each call by URI scheme. ``file`` keeps
images in a local directory, ``http`` reads them from web servers, and
``source_filter`` decides which external URLs may be fetched at all.
"""
