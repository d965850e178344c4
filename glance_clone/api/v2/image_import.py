"""Interoperable import routes: discovery (/v2/info/import, /v2/info/stores),
staging (PUT /v2/images/{id}/stage) and POST /v2/images/{id}/import.
Parse, call the importer, render; the rules are in the domain."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.api.v1.images import has_body
from glance_clone.api.v2.images import UPLOAD_TYPE, json_response, no_content
from glance_clone.common import exception, wsgi
from glance_clone.common.chunking import body_chunks
from glance_clone.domain.image_import import Importer
from glance_clone.store import backend

# Stores that only read data from elsewhere: never an import target.
READ_ONLY_STORES = ("http",)


def store_list(conf: Any) -> list[dict[str, str]]:
    """The enabled stores of [glance_store] stores, the default one marked."""
    default_scheme = conf.glance_store.default_store.strip().lower()
    stores = []
    for name in dict.fromkeys(n.strip().lower() for n in conf.glance_store.stores
                              if n.strip()):
        store: dict[str, str] = {"id": name}
        if default_scheme in backend.DRIVERS[name].schemes:
            store["default"] = "true"
        if name in READ_ONLY_STORES:
            store["read-only"] = "true"
        stores.append(store)
    return stores


class InfoController:
    def __init__(self, conf: Any, importer: Importer) -> None:
        self.conf = conf
        self.importer = importer

    def import_methods(self, req: wsgi.Request) -> webob.Response:
        _refuse_body(req)
        return json_response(req, {"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": self.importer.methods()}})

    def stores(self, req: wsgi.Request) -> webob.Response:
        _refuse_body(req)
        return json_response(req, {"stores": store_list(self.conf)})


class ImportController:
    def __init__(self, importer: Importer) -> None:
        self.importer = importer

    def stage(self, req: wsgi.Request, image_id: str) -> webob.Response:
        if req.content_type != UPLOAD_TYPE:
            raise exception.UnsupportedMediaType("Content-Type must be %s" % UPLOAD_TYPE)
        chunked = req.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = None if chunked or not has_body(req) else req.content_length
        self.importer.stage(req.context, image_id,
                            body_chunks(req.environ["wsgi.input"], length))
        return no_content(req)

    def import_image(self, req: wsgi.Request, image_id: str,
                     body: Any = None) -> webob.Response:
        self.importer.import_image(req.context, image_id, body)
        return webob.Response(request=req, status=202, content_type=None)

    def delete(self, req: wsgi.Request, image_id: str) -> webob.Response:
        self.importer.delete(req.context, image_id)
        return no_content(req)


def _refuse_body(req: wsgi.Request) -> None:
    if has_body(req):
        raise exception.Invalid("This request does not take a body")


class ImportDeserializer(wsgi.JSONDeserializer):
    """JSON for import; staged data is read by the action."""

    def stage(self, req: wsgi.Request) -> dict[str, Any]:
        return {}
