"""The api node's local image cache and the logic behind its tools.

Layout under ``image_cache_dir`` (see ``layout``): complete images as
``<dir>/<id>``, fills in progress in ``incomplete/``, rejected files in
``invalid/``, prefetch requests as empty markers in ``queue/``. ``ImageCache``
(``image_cache``) is the one entry point for the middleware and the tools.
"""
