"""v2 image routes: parse, call the catalog, render. No rules here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import webob

from glance_clone.api.v1.images import has_body
from glance_clone.api.v2 import bodies, list_params, task_schemas, views
from glance_clone.api.v2.schemas import Schemas
from glance_clone.common import byte_range, exception, wsgi
from glance_clone.common.chunking import body_chunks
from glance_clone.common.data_out import download_body
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.import_targets import STORE_HEADER

UPLOAD_TYPE = "application/octet-stream"
SIZE_HEADER = "x-openstack-image-size"


def json_response(req: wsgi.Request, body: Any, status: int = 200) -> webob.Response:
    """Every v2 JSON answer: UTF-8 with non-ASCII text as it is, not as
    ``\\uXXXX`` escapes, as newer Glance writes it (JSON's media type
    needs no charset parameter). Only what UTF-8 cannot carry, half of a
    UTF-16 surrogate pair, stays an escape (``backslashreplace`` writes
    exactly that escape), so no stored text can make an answer fail."""
    response = webob.Response(request=req, status=status,
                              content_type="application/json", charset=None)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response.body = text.encode("utf-8", "backslashreplace")
    return response


def declared_size(req: wsgi.Request) -> int | None:
    """The ``x-openstack-image-size`` a data request declares (None when
    absent); raises Invalid unless it is a non-negative integer."""
    if SIZE_HEADER not in req.headers:
        return None
    text = req.headers[SIZE_HEADER].strip()
    if not (text.isascii() and text.isdigit()):
        raise exception.Invalid("%s must be a non-negative integer, not %r"
                                % (SIZE_HEADER, text[:40]))
    return int(text)


def no_content(req: wsgi.Request) -> webob.Response:
    return webob.Response(request=req, status=204, content_type=None)


def path_text(value: str) -> str:
    """A path segment as text: WSGI hands paths over latin-1 decoded (the
    request guard already refused paths that are not UTF-8)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise exception.Invalid("Request path is not valid UTF-8") from None


def query_items(req: wsgi.Request) -> list[tuple[str, str]]:
    try:
        return list(req.GET.items())
    except UnicodeDecodeError:
        raise exception.Invalid("Query string is not valid UTF-8") from None


def prefer_param(req: wsgi.Request) -> str | None:
    """A download's ``prefer`` stores; repeated, its values join up."""
    values = [value for name, value in query_items(req) if name == "prefer"]
    return ",".join(values) if values else None


def download_response(req: wsgi.Request, image: dict, chunks: Any, length: int,
                      part: tuple[int, int] | None) -> webob.Response:
    """v2's answer with image data: the whole image (200, with its md5 in
    Content-MD5) or the (offset, length) ``part`` of it (206; the md5 is the
    whole image's, so none)."""
    response = webob.Response(request=req, content_type=UPLOAD_TYPE)
    response.app_iter = download_body(chunks, length, image["id"])
    response.content_length = length
    if part is None:
        response.headers["Accept-Ranges"] = "bytes"
        if image.get("checksum"):
            response.headers["Content-MD5"] = image["checksum"]
    else:
        response.status = 206
        response.headers["Content-Range"] = byte_range.content_range(
            part[0], part[1], image.get("size") or 0)
    return response


class ImagesController:
    def __init__(self, conf: Any, catalog: ImageCatalog, schemas: Schemas,
                 delete: Callable[[wsgi.Request, str], None] | None = None,
                 import_methods: Callable[[], list[str]] = list,
                 store_ids: Callable[[], list[str]] = list) -> None:
        self.conf = conf
        self.catalog = catalog
        self.schemas = schemas
        # The importer's delete (given the request: it may ask the api node
        # holding the image's staged data) also removes staged data.
        self._delete = delete or (lambda req, image_id: catalog.delete(req.context, image_id))
        self.import_methods = import_methods
        self.store_ids = store_ids

    def index(self, req: wsgi.Request) -> webob.Response:
        params = query_items(req)
        search = list_params.search(params, self.conf.limit_param_default,
                                    self.conf.api_limit_max)
        images = self.catalog.list(req.context, search)
        # Links rebuilt from the query as a dict: the last of a repeated key wins.
        query = {k: v for k, v in params if k != "marker"}
        body: dict[str, Any] = {
            "images": [views.image_view(image) for image in images],
            "first": "/v2/images" + ("?" + urlencode(query) if query else ""),
            "schema": "/v2/schemas/images",
        }
        if images and len(images) == search["limit"]:
            body["next"] = "/v2/images?" + urlencode(dict(query, marker=images[-1].id))
        return json_response(req, body)

    def create(self, req: wsgi.Request, body: Any = None) -> webob.Response:
        if body is None:
            raise exception.Invalid("Body expected in request.")
        image = self.catalog.create(req.context, bodies.create_values(self.schemas, body))
        response = json_response(req, views.image_view(image), status=201)
        # application_url is where this app is mounted: it ends in /v2.
        response.headers["Location"] = "%s/images/%s" % (req.application_url, image.id)
        methods = self.import_methods()
        if methods:
            # Clients (openstacksdk's use_import) read how the data may come.
            response.headers["OpenStack-image-import-methods"] = ",".join(methods)
        stores = self.store_ids()
        if stores:
            # Named stores only, as Glance: where an import may put the data.
            response.headers["OpenStack-image-store-ids"] = ",".join(stores)
        return response

    def show(self, req: wsgi.Request, image_id: str) -> webob.Response:
        return json_response(req, views.image_view(self.catalog.get(req.context, image_id)))

    def update(self, req: wsgi.Request, image_id: str) -> webob.Response:
        media_type = req.content_type
        if media_type not in bodies.PATCH_TYPES:
            raise exception.UnsupportedMediaType(
                "Unsupported Content-Type %s" % (media_type or "(none)"),
                accept_patch=", ".join(bodies.PATCH_TYPES))
        raw = wsgi.read_json_body(req)
        if not raw:
            raise exception.Invalid("Body expected in request.")
        changes = bodies.patch_changes(self.schemas, media_type, wsgi.parse_json(raw))
        image = self.catalog.update(req.context, image_id, changes)
        return json_response(req, views.image_view(image))

    def delete(self, req: wsgi.Request, image_id: str) -> webob.Response:
        self._delete(req, image_id)
        return no_content(req)

    def deactivate(self, req: wsgi.Request, image_id: str) -> webob.Response:
        self.catalog.deactivate(req.context, image_id)
        return no_content(req)

    def reactivate(self, req: wsgi.Request, image_id: str) -> webob.Response:
        self.catalog.reactivate(req.context, image_id)
        return no_content(req)

    # -- tags ------------------------------------------------------------------
    def add_tag(self, req: wsgi.Request, image_id: str, tag: str) -> webob.Response:
        self.catalog.add_tag(req.context, image_id, path_text(tag))
        return no_content(req)

    def remove_tag(self, req: wsgi.Request, image_id: str, tag: str) -> webob.Response:
        self.catalog.remove_tag(req.context, image_id, path_text(tag))
        return no_content(req)

    # -- data --------------------------------------------------------------------
    def upload(self, req: wsgi.Request, image_id: str) -> webob.Response:
        if req.content_type != UPLOAD_TYPE:
            raise exception.UnsupportedMediaType(
                "Content-Type must be %s" % UPLOAD_TYPE)
        chunked = req.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = None if chunked or not has_body(req) else req.content_length
        size = declared_size(req) or length or 0
        chunks = body_chunks(req.environ["wsgi.input"], length)
        try:
            self.catalog.upload(req.context, image_id, chunks, size,
                                req.headers.get(STORE_HEADER))
        except exception.ImageFormatRefused as err:
            # v2 answers a refused disk image with 415, as Glance does.
            raise exception.UnsupportedMediaType(str(err)) from err
        except exception.ImageDeletedDuringUpload as err:
            # v2 says the image is gone (410); v1 keeps its 412.
            raise exception.ImageGoneDuringUpload(str(err)) from err
        return no_content(req)

    def download(self, req: wsgi.Request, image_id: str) -> webob.Response:
        wanted = byte_range.parse_v2(req.headers.get("Range"),
                                     req.headers.get("Content-Range"))
        image, chunks, size, part = self.catalog.download(req.context, image_id, wanted,
                                                          prefer_param(req))
        if chunks is None:
            return no_content(req)
        return download_response(req, image.record, chunks, size, part)


class SchemasController:
    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas

    def show(self, req: wsgi.Request, name: str) -> webob.Response:
        if name in task_schemas.SCHEMAS:
            return json_response(req, task_schemas.schema_document(name))
        if name not in ("image", "images", "member", "members"):
            raise exception.NotFound("No schema %s" % name)
        return json_response(req, self.schemas.document(name))
