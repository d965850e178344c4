"""v1 image routes: parse the request, call ImageService, shape the answer."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.api.v1 import headers as meta_headers
from glance_clone.common import byte_range, exception, wsgi
from glance_clone.common.chunking import body_chunks
from glance_clone.common.data_out import download_body
from glance_clone.domain import reserved
from glance_clone.domain.images import ImageData

BODY_ENCODINGS = frozenset(("chunked", "compress", "deflate", "gzip", "identity"))
LIST_PARAMS = ("name", "status", "container_format", "disk_format", "min_ram",
               "min_disk", "size_min", "size_max", "changes-since", "protected",
               "sort_key", "sort_dir", "limit", "marker")
INT_FILTERS = ("min_ram", "min_disk", "size_min", "size_max")
IS_PUBLIC_WORDS = {"none": "none", "true": "true", "1": "true",
                   "false": "false", "0": "false"}
# What v1 shows of an image: never a location, nor what only v2 knows
# (visibility beyond is_public, os_hidden, tags, multihash).
V1_FIELDS = meta_headers.RESPONSE_FIELDS + ("properties",)


def public_image(image: dict) -> dict:
    """An image as v1 shows it."""
    shown = {k: image[k] for k in V1_FIELDS if k in image}
    if shown.get("properties"):
        shown["properties"] = reserved.shown(shown["properties"])
    return shown


def has_body(req: wsgi.Request) -> bool:
    encoding = req.headers.get("Transfer-Encoding", "").lower()
    if encoding in BODY_ENCODINGS:
        return True
    return bool(req.content_length and req.content_length > 0)


def request_data(req: wsgi.Request) -> ImageData | None:
    """The request body as image data, unread; None without a body."""
    if not has_body(req):
        return None
    length = req.content_length if req.content_length else None
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        length = None
    return ImageData(body_chunks(req.environ["wsgi.input"], length),
                     length or 0, req.content_type or None)


def copy_from_header(req: wsgi.Request) -> str | None:
    value: str | None = req.headers.get("x-glance-api-copy-from")
    return None if value is None else value.strip()


def download_response(req: wsgi.Request, image: dict, chunks: Any, length: int,
                      part: tuple[int, int] | None) -> webob.Response:
    """An image download: the whole image (200) or one range of it (206).

    A part carries no checksum header: the checksum is the whole image's.
    """
    response = webob.Response(request=req, content_type="application/octet-stream")
    headers = meta_headers.image_meta_headers(image)
    if part is None:
        response.headers["Accept-Ranges"] = "bytes"
    else:
        response.status = 206
        response.headers["Content-Range"] = byte_range.content_range(
            part[0], part[1], image.get("size") or 0)
        headers = [(k, v) for k, v in headers
                   if k.lower() not in ("x-image-meta-checksum", "etag")]
    response.headers.extend(headers)
    if chunks is not None:
        response.app_iter = download_body(chunks, length, image["id"])
    response.content_length = length
    return response


class ImagesController:
    def __init__(self, conf: Any, service: Any) -> None:
        self.conf = conf
        self.service = service

    # -- lists -----------------------------------------------------------------
    def index(self, req: wsgi.Request) -> dict:
        return {"images": self.service.list_images(req.context, False, self._list_params(req))}

    def detail(self, req: wsgi.Request) -> dict:
        images = self.service.list_images(req.context, True, self._list_params(req))
        return {"images": [public_image(i) for i in images]}

    def _list_params(self, req: wsgi.Request) -> dict[str, str]:
        params = {k: v for k, v in req.params.items()
                  if k in LIST_PARAMS or k.startswith("property-")}
        for name in INT_FILTERS:
            if name in params:
                value = params[name]
                if not (value.isascii() and value.isdigit()):
                    raise exception.Invalid(
                        "Bad value passed to filter %s got %s" % (name, value))
        if "is_public" in req.params:
            value = req.params["is_public"]
            word = IS_PUBLIC_WORDS.get(value.strip().lower())
            if word is None:
                raise exception.Invalid(
                    "Bad value passed to filter is_public got %s" % value)
            # Only admins may widen or narrow the list by is_public.
            if req.context.is_admin:
                params["is_public"] = word
        return params

    # -- one image -------------------------------------------------------------------
    def meta(self, req: wsgi.Request, id: str) -> webob.Response:
        image = self.service.get(req.context, id)
        response = webob.Response(request=req, content_type=None)
        response.headers.extend(meta_headers.image_meta_headers(image))
        return response

    def show(self, req: wsgi.Request, id: str) -> webob.Response:
        wanted = byte_range.parse(req.headers.get("Range"))
        download = self.service.open_download(req.context, id, wanted)
        return download_response(req, download.image, download.chunks,
                                 download.length, download.part)

    # -- writes ------------------------------------------------------------------------
    def create(self, req: wsgi.Request) -> webob.Response:
        image = self.service.create(req.context, self._parse_meta(req),
                                    request_data(req), copy_from_header(req))
        return self._image_response(req, image, status=201, location=True)

    def update(self, req: wsgi.Request, id: str) -> webob.Response:
        purge = req.headers.get("x-glance-registry-purge-props", "true")
        image = self.service.update(req.context, id, self._parse_meta(req),
                                    request_data(req), copy_from_header(req),
                                    meta_headers.bool_from_string(purge))
        return self._image_response(req, image, status=200)

    def delete(self, req: wsgi.Request, id: str) -> webob.Response:
        self.service.delete(req.context, id)
        return webob.Response(request=req, status=200, content_type=None)

    # -- helpers -------------------------------------------------------------------------
    def _parse_meta(self, req: wsgi.Request) -> dict:
        meta = meta_headers.parse_image_meta(req.headers.items())
        meta_headers.validate_formats(meta, self.conf.image_format.disk_formats,
                                      self.conf.image_format.container_formats)
        self._check_size_cap(req, meta)
        return meta

    def _check_size_cap(self, req: wsgi.Request, meta: dict) -> None:
        cap = self.conf.image_size_cap
        size = req.content_length if req.content_length and req.content_length > 0 \
            else meta.get("size")
        if size is not None and size > cap:
            raise exception.Invalid(
                "Denying attempt to upload image larger than %d bytes." % cap)

    @staticmethod
    def _image_response(req: wsgi.Request, image: dict, status: int,
                        location: bool = False) -> webob.Response:
        response = webob.Response(request=req, status=status,
                                  content_type="application/json", charset=None)
        response.json_body = {"image": public_image(image)}
        if location:
            response.headers["Location"] = "%s/v1/images/%s" % (req.host_url, image["id"])
        if image.get("checksum"):
            response.headers["ETag"] = image["checksum"]
        return response
