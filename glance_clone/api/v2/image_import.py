"""Interoperable import routes: discovery (/v2/info/import, /v2/info/stores),
staging (PUT /v2/images/{id}/stage) and POST /v2/images/{id}/import.
Parse, call the importer, render; the rules are in the domain."""

from __future__ import annotations

import re
from typing import Any

import webob

from glance_clone.api.v1.images import has_body
from glance_clone.api.v2.images import UPLOAD_TYPE, declared_size, json_response, no_content
from glance_clone.common import exception, faults, wsgi
from glance_clone.common.chunking import body_chunks
from glance_clone.domain.image_import import Importer
from glance_clone.domain.locations import require_named_stores
from glance_clone.domain.stage_host import Caller
from glance_clone.store import backend


def store_list(stores: backend.StoreSet) -> list[dict[str, str]]:
    """The enabled stores, the default one and the read-only ones marked."""
    listed = []
    for store in stores.stores.values():
        shown: dict[str, str] = {"id": store.id}
        if store.description:
            shown["description"] = store.description
        if store.id == stores.default_id:
            shown["default"] = "true"
        if store.read_only:
            shown["read-only"] = "true"
        listed.append(shown)
    return listed


class InfoController:
    def __init__(self, stores: backend.StoreSet, importer: Importer) -> None:
        self.store_set = stores
        self.importer = importer

    def import_methods(self, req: wsgi.Request) -> webob.Response:
        _refuse_body(req)
        return json_response(req, {"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": self.importer.methods()}})

    def stores(self, req: wsgi.Request) -> webob.Response:
        _refuse_body(req)
        require_named_stores(self.store_set)
        return json_response(req, {"stores": store_list(self.store_set)})


class ImportController:
    def __init__(self, importer: Importer) -> None:
        self.importer = importer

    def stage(self, req: wsgi.Request, image_id: str) -> webob.Response:
        self.importer.check_staging()
        if req.content_type != UPLOAD_TYPE:
            raise exception.UnsupportedMediaType("Content-Type must be %s" % UPLOAD_TYPE)
        declared = declared_size(req)
        piece = content_range(req.headers.get("Content-Range"))
        chunked = req.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = None if chunked or not has_body(req) else req.content_length
        try:
            staged = self.importer.stage(req.context, image_id,
                                         body_chunks(req.environ["wsgi.input"], length),
                                         piece, Caller.of(req.headers), length, declared)
        except exception.ImageFormatRefused as err:
            # As a refused upload: 415 on v2.
            raise exception.UnsupportedMediaType(str(err)) from err
        return _staged(req, staged)

    def staged(self, req: wsgi.Request, image_id: str) -> webob.Response:
        """GET/HEAD: how much of the image is staged (resumable staging)."""
        return _staged(req, self.importer.staged_length(req.context, image_id,
                                                        Caller.of(req.headers)))

    def import_image(self, req: wsgi.Request, image_id: str,
                     body: Any = None) -> webob.Response:
        self.importer.import_image(req.context, image_id, body, Caller.of(req.headers))
        return webob.Response(request=req, status=202, content_type=None)

    def delete_image(self, req: wsgi.Request, image_id: str) -> None:
        """DELETE /v2/images/{id} (answered by ImagesController): the image
        and its staged data, wherever the data is."""
        self.importer.delete(req.context, image_id, Caller.of(req.headers))


CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")


def content_range(value: str | None) -> tuple[int, int] | None:
    """(start, total) of a stage's ``Content-Range: bytes START-END/TOTAL``;
    raises Invalid for a malformed one. The body is the data from START on
    (its length is the request's): the data is complete once TOTAL bytes
    are staged, and a body that would go past TOTAL is refused."""
    if value is None:
        return None
    found = CONTENT_RANGE.fullmatch(value.strip())
    if found is None:
        raise exception.Invalid("Content-Range must be 'bytes START-END/TOTAL'")
    start, end, total = (int(n) for n in found.groups())
    if not start <= end < total:
        raise exception.Invalid("Content-Range needs START <= END < TOTAL")
    return start, total


def _staged(req: wsgi.Request, staged: int) -> webob.Response:
    response = no_content(req)
    response.headers[faults.STAGED_SIZE_HEADER] = str(staged)
    return response


def _refuse_body(req: wsgi.Request) -> None:
    if has_body(req):
        raise exception.Invalid("This request does not take a body")


class ImportDeserializer(wsgi.JSONDeserializer):
    """JSON for import; staged data is read by the action."""

    def stage(self, req: wsgi.Request) -> dict[str, Any]:
        return {}
