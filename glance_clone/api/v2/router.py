"""glance-api's /v2 application: the routes of the v2 Image API and the
objects behind them (one catalog, one sharing service, one set of
schemas). Any other method on a routed path is a 405 with ``Allow``."""

from __future__ import annotations

import functools
from typing import Any

import routes
from oslo_config import cfg

from glance_clone.api import property_protections
from glance_clone.api.middleware.cache import open_cache
from glance_clone.api.v1 import router as v1_router
from glance_clone.api.v2 import task_import
from glance_clone.api.v2.bodies import NoBody
from glance_clone.api.v2.cache import CacheController
from glance_clone.api.v2.image_import import ImportController, ImportDeserializer, InfoController
from glance_clone.api.v2.images import ImagesController, SchemasController
from glance_clone.api.v2.info import UsageController
from glance_clone.api.v2.locations import LocationsController
from glance_clone.api.v2.members import MembersController
from glance_clone.api.v2.schemas import SCHEMA_FILE, Schemas, custom_properties
from glance_clone.api.v2.stores import StoresController
from glance_clone.api.v2.task_clone import CloneTask
from glance_clone.api.v2.task_export import ExportTask
from glance_clone.api.v2.task_import import ImportTask
from glance_clone.api.v2.tasks import (
    ImageTasksController,
    TasksController,
    TasksDeserializer,
)
from glance_clone.cache import options as cache_options
from glance_clone.common import background, config, context, policy, wsgi
from glance_clone.domain import (
    copy_import,
    image_import,
    locations,
    quota,
    regions,
    staging,
    task_reaper,
    unified_limits,
)
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.copy_import import CopyImport
from glance_clone.domain.image_import import Importer
from glance_clone.domain.images import ImageService
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.import_plugins import Plugins
from glance_clone.domain.import_runner import ImportRunner
from glance_clone.domain.location_import import LocationImport
from glance_clone.domain.locations import Locations
from glance_clone.domain.region_download import RegionDownload
from glance_clone.domain.regions import Regions
from glance_clone.domain.repository import ImageRepository
from glance_clone.domain.sharing import Sharing
from glance_clone.domain.staging import StagingArea
from glance_clone.domain.task_reaper import TaskReaper, never_raises
from glance_clone.domain.tasks import (
    API_IMAGE_IMPORT,
    CLONE,
    EXPORT,
    IMPORT,
    LOCATION_IMPORT,
    TaskRepository,
)
from glance_clone.registry.client.v1.client import RegistryClient, admin_token
from glance_clone.store import source_filter

PAGING_OPTS = [
    cfg.IntOpt("limit_param_default", default=25, min=0,
               help="Page size of image lists when the caller gives no limit."),
    cfg.IntOpt("api_limit_max", default=1000, min=0,
               help="Largest page size of image lists."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    v1_router.register_opts(conf)
    config.register_once(conf, PAGING_OPTS)
    staging.register_opts(conf)
    image_import.register_opts(conf)
    locations.register_opts(conf)
    task_reaper.register_opts(conf)
    task_import.register_opts(conf)
    regions.register_opts(conf)
    cache_options.register_opts(conf)


class API(wsgi.Router):
    """glance-api's /v2 application."""

    def __init__(self, conf: cfg.ConfigOpts, registry: Any = None, stores: Any = None) -> None:
        register_opts(conf)
        quota.parse_storage_quota(conf.user_storage_quota)
        unified_limits.check_opts(conf)
        self.conf = conf
        self.registry = registry or RegistryClient(conf)
        self.stores = stores or v1_router._store_set(conf)
        enforcer = policy.Enforcer(conf)
        rules = property_protections.PropertyRules(conf, enforcer)
        # The v1 service's delete and upload paths serve v2 too: one of each.
        deleter = ImageService(conf, self.registry, self.stores, enforcer, rules,
                               functools.partial(source_filter.check_source, conf))
        repository = ImageRepository(self.registry, deleter.writes)
        image_locations = Locations(conf, enforcer, self.stores,
                                    deleter.check_external_source, self.registry)
        self.catalog = ImageCatalog(conf, repository, enforcer, rules, deleter.uploader,
                                    deleter, image_locations)
        self.sharing = Sharing(conf, repository, self.catalog, enforcer)
        self.schemas = Schemas(conf.image_format.disk_formats,
                               conf.image_format.container_formats,
                               *custom_properties(conf.find_file(SCHEMA_FILE)))
        self.enforcer = enforcer
        self.task_repository = TaskRepository(conf, self.registry, deleter.writes)
        # The reaper and the import lock look at the tasks of every
        # project: an admin context, and with Keystone admin credentials
        # configured, their token.
        admin_registry = registry or RegistryClient(conf, as_service=True)
        admin_tasks = TaskRepository(conf, admin_registry, deleter.writes)
        lock = ImportLock(deleter.writes, admin_tasks,
                          lambda: conf.task.task_stall_timeout, context.admin_context)
        staging_area = StagingArea(conf)
        self.regions = Regions(conf)
        downloads = RegionDownload(conf, self.regions)
        plugins = Plugins(conf)
        self.import_runner = ImportRunner(conf, self.task_repository, lock,
                                          deleter.uploader, staging_area, self.stores,
                                          plugins=plugins, downloads=downloads)
        copies = CopyImport(conf, self.catalog, self.stores, self.task_repository, lock,
                            context.admin_context)
        self.importer = Importer(conf, self.catalog, staging_area, self.task_repository,
                                 lock, self.import_runner, copies, downloads)
        self.location_import = LocationImport(
            conf, self.catalog, image_locations, self.task_repository, lock,
            deleter.uploader, self.stores, context.admin_context)
        legacy = ImportTask(conf, self.task_repository, self.catalog, self.schemas,
                            self.stores, deleter.uploader,
                            import_conf=plugins.import_conf)
        clone = CloneTask(conf, self.task_repository, self.catalog, self.stores,
                          self.regions, admin_token=lambda: admin_token(conf))
        self.task_types = {
            IMPORT: legacy,
            EXPORT: ExportTask(conf, self.task_repository, self.catalog, self.stores),
            CLONE: clone}
        # The reaper's image writes need an admin's view of every image.
        admin_runner = ImportRunner(
            conf, admin_tasks, lock, deleter.uploader, staging_area, self.stores,
            image_reverters={LOCATION_IMPORT: self.location_import.revert_image})
        self.task_reaper = TaskReaper(
            conf, admin_tasks,
            {IMPORT: legacy.revert, CLONE: clone.revert,
             API_IMAGE_IMPORT: copy_import.by_method(copies.revert, admin_runner.revert),
             LOCATION_IMPORT: self.location_import.revert},
            context.admin_context,
            sweeps=[never_raises("Repairing imports", admin_runner.sweep_images),
                    never_raises("Sweeping staged data", admin_runner.sweep_staging)])
        super().__init__(self._mapper())

    def _named_store_ids(self) -> list[str]:
        """The stores images may be written to, when they are named."""
        return self.stores.writable() if self.stores.multi else []

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> API:
        api = cls(config.conf_for_factory())
        # In every api process: tasks whose worker died are failed within
        # [task] task_stall_timeout (several reapers are safe: each failure
        # is a compare-and-swap).
        background.register("task reaper", api.task_reaper.loop)
        return api

    def _cache_controller(self) -> CacheController:
        # The cache filter keeps its own handle on the same directory.
        cache, reason = (open_cache(self.conf, "the v2 cache API answers 503")
                         if self.conf.image_cache_dir else (None, ""))
        return CacheController(self.conf, cache, reason, self.enforcer, self.catalog)

    def _mapper(self) -> routes.Mapper:
        mapper = routes.Mapper()
        # Reads, deletes and actions that take no body refuse one (400).
        import_controller = ImportController(self.importer)
        images = wsgi.Resource(ImagesController(self.conf, self.catalog, self.schemas,
                                                import_controller.delete_image,
                                                self.importer.methods,
                                                self._named_store_ids),
                               deserializer=NoBody(_ImagesDeserializer(), (
                                   "show", "delete", "deactivate", "reactivate",
                                   "add_tag", "remove_tag", "download")))
        info = wsgi.Resource(InfoController(self.stores, self.importer),
                             deserializer=NoBody(wsgi.JSONDeserializer(),
                                                 ("import_methods", "stores")))
        imports = wsgi.Resource(import_controller,
                                deserializer=ImportDeserializer())
        members = wsgi.Resource(MembersController(self.sharing),
                                deserializer=NoBody(wsgi.JSONDeserializer(),
                                                    ("index", "show", "delete")))
        schemas = wsgi.Resource(SchemasController(self.schemas),
                                deserializer=NoBody(wsgi.JSONDeserializer(), ("show",)))
        tasks = wsgi.Resource(TasksController(self.conf, self.task_repository,
                                              self.enforcer, self.task_types),
                              deserializer=TasksDeserializer(self.enforcer))
        connect = wsgi.connect_methods
        connect(mapper, "/schemas/{name}", schemas, {"GET": "show"})
        connect(mapper, "/images", images, {"GET": "index", "POST": "create"})
        connect(mapper, "/images/{image_id}", images,
                {"GET": "show", "PATCH": "update", "DELETE": "delete"})
        for action in ("deactivate", "reactivate"):
            connect(mapper, "/images/{image_id}/actions/" + action, images,
                    {"POST": action})
        connect(mapper, "/images/{image_id}/file", images,
                {"PUT": "upload", "GET": "download"})
        locations = wsgi.Resource(LocationsController(self.catalog, self.location_import),
                                  deserializer=NoBody(wsgi.JSONDeserializer(), ("index",)))
        connect(mapper, "/images/{image_id}/locations", locations,
                {"POST": "add", "GET": "index"})
        connect(mapper, "/images/{image_id}/stage", imports,
                {"PUT": "stage", "GET": "staged", "HEAD": "staged"})
        connect(mapper, "/images/{image_id}/import", imports, {"POST": "import_image"})
        connect(mapper, "/info/import", info, {"GET": "import_methods"})
        connect(mapper, "/info/stores", info, {"GET": "stores"})
        usage = wsgi.Resource(UsageController(self.conf, self.registry),
                              deserializer=NoBody(wsgi.JSONDeserializer(), ("usage",)))
        connect(mapper, "/info/usage", usage, {"GET": "usage"})
        stores = wsgi.Resource(StoresController(self.stores, self.enforcer, self.catalog),
                               deserializer=NoBody(wsgi.JSONDeserializer(),
                                                   ("detail", "delete_from_store")))
        connect(mapper, "/info/stores/detail", stores, {"GET": "detail"})
        connect(mapper, "/stores/{store_id}/{image_id}", stores,
                {"DELETE": "delete_from_store"})
        cache = wsgi.Resource(self._cache_controller(),
                              deserializer=NoBody(wsgi.JSONDeserializer(),
                                                  ("index", "queue", "delete", "clear",
                                                   "nodes")))
        connect(mapper, "/cache", cache, {"GET": "index", "DELETE": "clear"})
        # Before /cache/{image_id}, which would take "clean" for an id.
        connect(mapper, "/cache/nodes/{image_id}", cache, {"GET": "nodes"})
        connect(mapper, "/cache/clean", cache, {"POST": "clean"})
        connect(mapper, "/cache/prune", cache, {"POST": "prune"})
        connect(mapper, "/cache/{image_id}", cache, {"PUT": "queue", "DELETE": "delete"})
        connect(mapper, "/images/{image_id}/tags/{tag}", images,
                {"PUT": "add_tag", "DELETE": "remove_tag"})
        connect(mapper, "/images/{image_id}/members", members,
                {"GET": "index", "POST": "create"})
        connect(mapper, "/images/{image_id}/members/{member_id}", members,
                {"GET": "show", "PUT": "update", "DELETE": "delete"})
        image_tasks = wsgi.Resource(ImageTasksController(self.conf, self.catalog,
                                                         self.task_repository),
                                    deserializer=NoBody(wsgi.JSONDeserializer(), ("index",)))
        connect(mapper, "/images/{image_id}/tasks", image_tasks, {"GET": "index"})
        connect(mapper, "/tasks", tasks, {"GET": "index", "POST": "create"})
        # DELETE answers 405 itself, after the access check.
        connect(mapper, "/tasks/{task_id}", tasks, {"GET": "show", "DELETE": "delete"})
        return mapper


class _ImagesDeserializer(wsgi.JSONDeserializer):
    """JSON for create; PATCH bodies and image data are read by the action."""

    def update(self, req: wsgi.Request) -> dict[str, Any]:
        return {}

    upload = update
