"""Policy checks for glance-api, on top of oslo.policy.

Rules come from ``[oslo_policy] policy_file`` (default ``policy.json``),
found like any oslo config file (``conf.find_file``: the config directories,
then ``~/.glance``, ``/etc/glance`` ...). oslo.policy re-reads the file when
its modification time changes, so operators can edit it without a restart.

When the file is missing, or does not name a rule, these built-in rules
apply::

    context_is_admin    role:admin
    default             ""  (everyone; the fallback for unnamed actions)
    manage_image_cache  role:admin
    cache_list, cache_image, cache_delete  role:admin
    publicize_image     role:admin
    communitize_image   role:admin
    get_image_location  role:admin
    set_image_location  role:admin or (role:member and project_id:%(project_id)s)
    delete_image_location  role:admin
    add_image_location, fetch_image_location  role:admin or role:service
    stores_info_detail  role:admin or role:service
    copy_image          role:admin

NOTE: Glance 11.0.2's in-code defaults lacked ``publicize_image``, so without
a policy file anybody could make an image public; its shipped policy.json
said ``role:admin``. We always default it to admin, and so
``communitize_image`` (newer Glance lets any project member make its
images community images, readable by every project). The v2 location rules
that only v2 uses (seeing locations and direct_url, removing a location)
are admin-only: a location names where the bytes are, past every check of
the API. ``set_image_location`` (v1's ``x-image-meta-location``, v2's
JSON-patch add and replace of ``locations``, which also need
``show_multiple_locations``) has newer Glance's default: admins, and
callers with the ``member`` role in the image's project (the target's
``project_id`` is the image's owner); Glance 11 let everyone. With
``owner_is_tenant = false`` owners are users, not projects, so only
admins pass unless the operator writes another rule.

Admin-ness is a role: ``role:admin`` does not look at ``context.is_admin``,
exactly as in Glance, so a context with ``is_admin`` but no ``admin`` role
(the unauthenticated-context pipeline) fails admin-only rules.

Rule names used by the v1 API: get_images, get_image, add_image,
modify_image, delete_image, download_image, upload_image, copy_from,
publicize_image, set_image_location, get_members, modify_member,
delete_member, manage_image_cache, context_is_admin. The v2 API adds
communitize_image, add_member, get_member, deactivate, reactivate,
download_from_store (a download that prefers stores; by default whoever
download_image allows),
get_image_location, delete_image_location, add_image_location,
fetch_image_location, stores_info_detail, cache_list, cache_image and
cache_delete, and
for tasks tasks_api_access (admin-only by default), add_task, get_task and
get_tasks.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg
from oslo_policy import _checks
from oslo_policy import opts as policy_opts
from oslo_policy import policy as oslo_policy

from glance_clone.common import exception
from glance_clone.common.context import RequestContext

LOG = logging.getLogger(__name__)

POLICY_FILE = "policy.json"
# How often, at most, the policy file is looked at for changes.
RELOAD_INTERVAL = 1.0

DEFAULT_RULES: dict[str, str] = {
    "context_is_admin": "role:admin",
    "default": "",
    "manage_image_cache": "role:admin",
    # The v2 cache API.
    "cache_list": "role:admin",
    "cache_image": "role:admin",
    "cache_delete": "role:admin",
    "publicize_image": "role:admin",
    "communitize_image": "role:admin",
    "get_image_location": "role:admin",
    # Pointing an image at data elsewhere: its project's members, as in
    # newer Glance (v1 and v2 alike).
    "set_image_location": "role:admin or (role:member and project_id:%(project_id)s)",
    "delete_image_location": "role:admin",
    # The v2.17 location API, for services that wrote the bytes.
    "add_image_location": "role:admin or role:service",
    "fetch_image_location": "role:admin or role:service",
    # Store settings in GET /v2/info/stores/detail.
    "stores_info_detail": "role:admin or role:service",
    # A download that prefers stores (?prefer=): asked only once
    # download_image has allowed it, so "" makes it download_image's equal.
    "download_from_store": "",
    # copy-image imports write to the operator's stores: admin-only, as in
    # Glance.
    "copy_image": "role:admin",
    # The whole Tasks API, before the task rules: admin-only, as in newer
    # Glance.
    "tasks_api_access": "role:admin",
}

V1_RULES: tuple[str, ...] = (
    "get_images", "get_image", "add_image", "modify_image", "delete_image",
    "download_image", "upload_image", "copy_from", "publicize_image",
    "set_image_location", "get_members", "modify_member", "delete_member",
    "manage_image_cache", "context_is_admin",
)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register oslo.policy's ``[oslo_policy]`` options with our file name."""
    policy_opts.set_defaults(conf)  # registers only: no policy_file argument
    # Per-conf default: oslo's set_defaults(policy_file=...) would change the
    # module-level Opt objects shared by every ConfigOpts in the process.
    conf.set_default("policy_file", POLICY_FILE, group="oslo_policy")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The ``[oslo_policy]`` options as we default them, for the sample."""
    listed = copy.deepcopy(policy_opts.list_opts())
    for _group, opts in listed:
        for opt in opts:
            if opt.dest == "policy_file":
                opt.default = POLICY_FILE
    return listed


def _conf_parsed(conf: cfg.ConfigOpts) -> bool:
    try:
        conf.find_file(POLICY_FILE)
    except cfg.NotInitializedError:
        return False
    return True


class Enforcer:
    """Checks actions of a request context against the policy rules.

    Raises ConfigError from the constructor when the policy file cannot be
    parsed, so the api refuses to start with a broken file.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self._conf = conf
        self._oslo = oslo_policy.Enforcer(conf)
        self._oslo.register_defaults([oslo_policy.RuleDefault(name, rule)
                                      for name, rule in DEFAULT_RULES.items()])
        if not _conf_parsed(conf):
            # A bare ConfigOpts (unit tests building an app) cannot search
            # for files; oslo would raise NotInitializedError on every check.
            LOG.debug("Configuration not parsed: built-in policy rules only")
            self._oslo.set_rules(oslo_policy.Rules.from_dict(
                DEFAULT_RULES, self._oslo.default_rule), use_conf=False)
        self._load()
        self._checked_at = time.monotonic()

    def _load(self) -> None:
        try:
            self._oslo.load_rules()
        except ValueError as err:
            raise exception.ConfigError(
                f"Invalid policy file {self._conf.oslo_policy.policy_file}: {err}"
            ) from err

    def check(self, context: RequestContext, action: str,
              target: Mapping[str, Any] | None = None) -> bool:
        """Whether ``action`` is allowed; raises ConfigError on a bad file."""
        self._reload_if_due()
        rules = self._oslo.rules
        rule = rules.get(action, rules.get(self._oslo.default_rule))
        if isinstance(rule, _checks.TrueCheck):
            # Most v1 rules are "" (everyone): skip oslo's per-call file
            # checks and evaluation on the request path.
            return True
        creds = context.to_policy_values()
        return bool(self._oslo.enforce(action, dict(target or {}), creds))

    def _reload_if_due(self) -> None:
        """Look for policy file changes at most once per RELOAD_INTERVAL."""
        now = time.monotonic()
        if now - self._checked_at >= RELOAD_INTERVAL:
            self._checked_at = now
            self._load()

    def enforce(self, context: RequestContext, action: str,
                target: Mapping[str, Any] | None = None) -> None:
        """Raise PolicyNotAuthorized (403) unless ``action`` is allowed."""
        if not self.check(context, action, target):
            LOG.debug("Policy %s denied for user %s", action, context.user)
            raise exception.PolicyNotAuthorized(action=action)

    def check_is_admin(self, context: RequestContext) -> bool:
        """Whether rule ``context_is_admin`` passes; the creds are the target."""
        return self.check(context, "context_is_admin", context.to_policy_values())

    def is_defined(self, action: str) -> bool:
        """Whether a rule of that name exists (file or built-in).

        Undefined names are otherwise judged by the ``default`` rule.
        """
        self._load()
        return action in self._oslo.rules
