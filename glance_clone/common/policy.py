"""Policy checks for glance-api, on top of oslo.policy.

Rules come from ``[oslo_policy] policy_file`` (default ``policy.json``),
found like any oslo config file (``conf.find_file``: the config directories,
then ``~/.glance``, ``/etc/glance`` ...). oslo.policy re-reads the file when
its modification time changes, so operators can edit it without a restart.

When the file is missing, or does not name a rule, a built-in default
applies. ``[oslo_policy] enforce_new_defaults`` (on by default, as in newer
Glance) picks the table: NEW_DEFAULT_RULES, newer Glance's rules on the
Keystone roles ``reader`` and ``member`` in the image's project (a reader
reads, a member also writes, admin does everything), or, when off,
LEGACY_DEFAULT_RULES, where nearly every rule is "" (everyone). Either way
the owner and membership checks of the domain and the registry stay on,
so a Glance 11 policy.json with its "" rules keeps working as it did.
``publicize_image`` is admin-only in both (Glance 11.0.2's in-code
defaults forgot it). etc/policy.yaml.sample lists every rule.

Admin-ness is a role: ``role:admin`` does not look at ``context.is_admin``,
exactly as in Glance, so a context with ``is_admin`` but no ``admin`` role
(the unauthenticated-context pipeline gives its caller the admin role).

Rule names used by the v1 API: get_images, get_image, add_image,
modify_image, delete_image, download_image, upload_image, copy_from,
publicize_image, set_image_location, get_members, modify_member,
delete_member, manage_image_cache, context_is_admin. The v2 API adds
communitize_image, add_member, get_member, deactivate, reactivate,
download_from_store (a download that prefers stores; by default whoever
download_image allows),
get_image_location, delete_image_location, add_image_location,
fetch_image_location, stores_info_detail, cache_list, cache_image,
cache_delete, list_cached_nodes, cache_clean and cache_prune, and
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

# Pieces of the newer defaults. "admin" is the admin role in any project;
# a target's ``project_id`` is the image's owner and ``member_id`` the
# caller's project when it holds a membership of the image.
_ADMIN = "role:admin"
_PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
_PROJECT_READER = "role:reader and project_id:%(project_id)s"
_ADMIN_OR_PROJECT_MEMBER = f"{_ADMIN} or ({_PROJECT_MEMBER})"
# Whose image it is, or who may see it anyway (the registry still hides
# a shared image from projects that are not its members).
_READABLE = ('project_id:%(project_id)s or project_id:%(member_id)s or '
             '"community":%(visibility)s or "public":%(visibility)s or '
             '"shared":%(visibility)s')

# The rules every table has, old or new.
_COMMON_RULES: dict[str, str] = {
    "context_is_admin": _ADMIN,
    # The fallback for actions no rule names (the task rules among them).
    "default": "",
    "manage_image_cache": _ADMIN,
    # The v2 cache API.
    "cache_list": _ADMIN,
    "cache_image": _ADMIN,
    "cache_delete": _ADMIN,
    "list_cached_nodes": _ADMIN,
    "cache_clean": _ADMIN,
    "cache_prune": _ADMIN,
    "publicize_image": _ADMIN,
    "delete_image_location": _ADMIN,
    # Pointing an image at data elsewhere: its project's members, as in
    # newer Glance, whichever table (v1 and v2 alike). With
    # owner_is_tenant = false owners are users, so only admins pass.
    "set_image_location": _ADMIN_OR_PROJECT_MEMBER,
    # copy-image imports write to the operator's stores.
    "copy_image": _ADMIN,
    # The whole Tasks API, before the task rules.
    "tasks_api_access": _ADMIN,
}

# ``[oslo_policy] enforce_new_defaults = True`` (the default): the roles of
# a Keystone project decide. ``reader`` reads, ``member`` also writes,
# always within the caller's own project; ``admin`` does everything.
NEW_DEFAULT_RULES: dict[str, str] = {
    **_COMMON_RULES,
    "service_api": "role:service or role:admin",
    "get_images": f"{_ADMIN} or ({_PROJECT_READER})",
    "get_image": f"{_ADMIN} or (role:reader and ({_READABLE}))",
    "download_image": f"{_ADMIN} or (role:member and ({_READABLE}))",
    "download_from_store": f"{_ADMIN} or (role:member and ({_READABLE}))",
    "add_image": f"{_ADMIN} or ({_PROJECT_MEMBER} and project_id:%(owner)s)",
    "modify_image": _ADMIN_OR_PROJECT_MEMBER,
    "delete_image": _ADMIN_OR_PROJECT_MEMBER,
    "upload_image": _ADMIN_OR_PROJECT_MEMBER,
    # v1's x-glance-api-copy-from (newer Glance has no v1): an upload.
    "copy_from": _ADMIN_OR_PROJECT_MEMBER,
    "deactivate": _ADMIN_OR_PROJECT_MEMBER,
    "reactivate": _ADMIN_OR_PROJECT_MEMBER,
    "communitize_image": _ADMIN_OR_PROJECT_MEMBER,
    # Newer Glance lets the owning project's readers see locations; here
    # only admins and trusted services (Nova's and Cinder's RBD clones) do:
    # a location names the storage behind the service (an rbd:// URL the
    # cluster and pool, a file:// URL a path on the api host).
    "get_image_location": "rule:service_api",
    # The v2.17 location API, for services that wrote the bytes.
    "add_image_location": ("rule:service_api or (role:member and "
                           "project_id:%(project_id)s and project_id:%(owner)s)"),
    "fetch_image_location": "rule:service_api",
    "add_member": _ADMIN_OR_PROJECT_MEMBER,
    "delete_member": _ADMIN_OR_PROJECT_MEMBER,
    "get_member": (f"{_ADMIN} or (role:reader and (project_id:%(project_id)s "
                   "or project_id:%(member_id)s))"),
    "get_members": (f"{_ADMIN} or (role:reader and (project_id:%(project_id)s "
                    "or project_id:%(member_id)s))"),
    # A member's own answer to a share (v2), or a v1 member change.
    "modify_member": f"{_ADMIN} or (role:member and project_id:%(member_id)s)",
    "stores_info_detail": f"{_ADMIN} or rule:service_api",
}

# ``enforce_new_defaults = False``: every caller may do what the
# hard-coded owner and membership checks leave it, as before roles
# mattered; a few rules stay admin-only.
LEGACY_DEFAULT_RULES: dict[str, str] = {
    **_COMMON_RULES,
    # A download that prefers stores (?prefer=): whoever download_image allows.
    "download_from_store": "",
    "communitize_image": _ADMIN,
    "get_image_location": _ADMIN,
    "add_image_location": "role:admin or role:service",
    "fetch_image_location": "role:admin or role:service",
    "stores_info_detail": "role:admin or role:service",
}


def default_rules(conf: cfg.ConfigOpts) -> dict[str, str]:
    """The built-in rules ``[oslo_policy] enforce_new_defaults`` selects."""
    if conf.oslo_policy.enforce_new_defaults:
        return NEW_DEFAULT_RULES
    return LEGACY_DEFAULT_RULES


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
    # Newer oslo.policy releases default it so too; older ones said False.
    conf.set_default("enforce_new_defaults", True, group="oslo_policy")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The ``[oslo_policy]`` options as we default them, for the sample."""
    listed = copy.deepcopy(policy_opts.list_opts())
    for _group, opts in listed:
        for opt in opts:
            if opt.dest == "policy_file":
                opt.default = POLICY_FILE
            elif opt.dest == "enforce_new_defaults":
                opt.default = True
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
        defaults = default_rules(conf)
        self._oslo.register_defaults([oslo_policy.RuleDefault(name, rule)
                                      for name, rule in defaults.items()])
        if not _conf_parsed(conf):
            # A bare ConfigOpts (unit tests building an app) cannot search
            # for files; oslo would raise NotInitializedError on every check.
            LOG.debug("Configuration not parsed: built-in policy rules only")
            self._oslo.set_rules(oslo_policy.Rules.from_dict(
                defaults, self._oslo.default_rule), use_conf=False)
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
            # Everyone (a "" rule): nothing to evaluate.
            return True
        if rule is None:
            return False
        # A missing value never matches: without this, an image with no
        # owner would be "owned" by every caller without a project
        # (None == None).
        values = {key: value for key, value in (target or {}).items()
                  if value is not None}
        # Evaluated here rather than through oslo's enforce(), which looks
        # for policy file changes on every call; _reload_if_due does that
        # at most once per RELOAD_INTERVAL.
        return bool(rule(values, context.to_policy_values(), self._oslo, action))

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
