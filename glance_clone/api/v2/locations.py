"""The v2.17 location API: ``POST /v2/images/{id}/locations`` starts a
``location_import`` task (202), ``GET`` lists an image's locations."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.api.v2.images import json_response
from glance_clone.common import exception, wsgi
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.location_import import LocationImport


class LocationsController:
    def __init__(self, catalog: ImageCatalog, imports: LocationImport) -> None:
        self.catalog = catalog
        self.imports = imports

    def add(self, req: wsgi.Request, image_id: str, body: Any = None) -> webob.Response:
        if not isinstance(body, dict) or set(body) - {"url", "validation_data"}:
            raise exception.Invalid("The body is {\"url\": ..., \"validation_data\": "
                                    "{...}} (validation_data optional).")
        self.imports.start(req.context, image_id, body.get("url"),
                           body.get("validation_data"))
        return webob.Response(request=req, status=202, content_type=None)

    def index(self, req: wsgi.Request, image_id: str) -> webob.Response:
        return json_response(req, self.catalog.image_locations(req.context, image_id))
