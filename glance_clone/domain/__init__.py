"""Image rules: status machine, upload, activation and deletion flows.

Nothing here knows about HTTP: it raises our exceptions and talks to the
registry client and the store set it is given.
"""
