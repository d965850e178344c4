"""v1 member routes and shared-images (api-v1.md section 12)."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.common import wsgi


def _no_content(req: wsgi.Request) -> webob.Response:
    return webob.Response(request=req, status=204, content_type=None)


class MembersController:
    def __init__(self, service: Any) -> None:
        self.service = service

    def index(self, req: wsgi.Request, image_id: str) -> dict:
        return {"members": self.service.members(req.context, image_id)}

    def update_all(self, req: wsgi.Request, image_id: str, body: Any = None) -> webob.Response:
        self.service.replace(req.context, image_id, body)
        return _no_content(req)

    def update(self, req: wsgi.Request, image_id: str, id: str,
               body: Any = None) -> webob.Response:
        self.service.add(req.context, image_id, id, body)
        return _no_content(req)

    def delete(self, req: wsgi.Request, image_id: str, id: str) -> webob.Response:
        self.service.remove(req.context, image_id, id)
        return _no_content(req)

    def index_shared_images(self, req: wsgi.Request, id: str) -> dict:
        return {"shared_images": self.service.shared_with(req.context, id)}
