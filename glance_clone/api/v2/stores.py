"""Routes over the stores themselves: ``GET /v2/info/stores/detail``
(admins and services: each store with its type, weight and settings) and
``DELETE /v2/stores/{store_id}/{image_id}`` (v2.10: drop the image's copy
in one named store, never its last). The rules are in the domain."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.api.v2.image_import import store_list
from glance_clone.api.v2.images import json_response, no_content
from glance_clone.common import wsgi
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.locations import require_named_stores
from glance_clone.store import backend, details


class StoresController:
    def __init__(self, stores: backend.StoreSet, policy: Any,
                 catalog: ImageCatalog) -> None:
        self.store_set = stores
        self.policy = policy
        self.catalog = catalog

    def detail(self, req: wsgi.Request) -> webob.Response:
        self.policy.enforce(req.context, "stores_info_detail", {})
        require_named_stores(self.store_set)
        listed = store_list(self.store_set)
        for shown in listed:
            store = self.store_set.stores[shown["id"]]
            shown.update(type=store.type, weight=store.weight,
                         properties=details.store_properties(store))
        return json_response(req, {"stores": listed})

    def delete_from_store(self, req: wsgi.Request, store_id: str,
                          image_id: str) -> webob.Response:
        self.catalog.delete_from_store(req.context, store_id, image_id)
        return no_content(req)
