"""Property protections: who may create, read, update, delete which property.

Enabled by ``property_protection_file``, an INI file read once at startup.
Each section name is a Python regular expression; a property is governed by
the first section, in file order, whose expression ``re.search``-es its name
(so ``^x_`` anchors and ``foo`` matches ``x_foo_y``). Every section must set
``create``, ``read``, ``update`` and ``delete``. A property matching no
section is denied everything, so end the file with a ``[.*]`` catch-all.

``property_protection_rule_format`` says what a value means:

- ``roles``: a comma list of roles, compared lower-case; the caller needs
  one of them. ``@`` alone allows everyone, ``!`` alone nobody.
- ``policies``: the name of one policy rule, checked with the caller's
  context. A rule the policy file does not define denies, rather than
  falling back to the ``default`` rule as oslo.policy would (a typo must not
  open a protected property). ``@`` and ``!`` work here too.

An empty value allows nobody. Admins get no bypass: an admin needs the
roles (or policy) like anybody else. There is no ``[DEFAULT]`` section:
every section is an expression.

Any mistake in the file is a ConfigError, and glance-api does not start.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Mapping

from oslo_config import cfg

from glance_clone.common import exception, policy
from glance_clone.common.context import RequestContext
from glance_clone.domain import reserved

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt("property_protection_file",
               help="INI file of property protection rules; unset disables "
                    "property protections."),
    cfg.StrOpt("property_protection_rule_format", default="roles",
               choices=["roles", "policies"],
               help="Whether rule values are role lists or policy rule names."),
]

OPERATIONS = ("create", "read", "update", "delete")
EVERYONE = "@"
NOBODY = "!"

# configparser folds every section into the one named default_section; ours
# is a name no one writes, so a [DEFAULT] section is an expression like others.
_NO_DEFAULT_SECTION = "\0no-default-section"


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(OPTS)


@dataclasses.dataclass(frozen=True)
class _Section:
    expression: str
    pattern: re.Pattern[str]
    # operation -> roles (roles format) or a one-element policy name tuple;
    # ("@",) everyone, ("!",) or () nobody.
    rules: dict[str, tuple[str, ...]]


class PropertyRules:
    """The protection rules of ``property_protection_file``.

    Raises ConfigError from the constructor for a missing or unparsable
    file, a bad expression, a missing operation or a malformed value.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 policy_enforcer: policy.Enforcer | None = None) -> None:
        register_opts(conf)
        self._enforcer = policy_enforcer
        self._format: str = conf.property_protection_rule_format
        self._sections: list[_Section] = []
        name = conf.property_protection_file
        self.enabled = bool(name)
        if not name:
            return
        if self._format == "policies" and policy_enforcer is None:
            raise exception.ConfigError(
                "property_protection_rule_format=policies needs a policy enforcer.")
        path = _locate(conf, name)
        if path is None:
            raise exception.ConfigError(
                f"Couldn't find property protection file {name}.")
        self._sections = [self._parse_section(expression, options)
                          for expression, options in _read_ini(path)]
        LOG.info("Loaded %d property protection sections from %s",
                 len(self._sections), path)

    def _parse_section(self, expression: str,
                       options: Mapping[str, str]) -> _Section:
        try:
            pattern = re.compile(expression)
        except re.error as err:
            raise exception.ConfigError(
                f"Invalid regular expression [{expression}] in property "
                f"protection file: {err}") from err
        rules = {}
        for operation in OPERATIONS:
            if operation not in options:
                raise exception.ConfigError(
                    f"Property protection section [{expression}] does not "
                    f"define '{operation}'.")
            rules[operation] = self._parse_value(expression, operation,
                                                 options[operation])
        unknown = sorted(set(options) - set(OPERATIONS))
        if unknown:
            LOG.warning("Property protection section [%s]: ignoring %s",
                        expression, ", ".join(unknown))
        return _Section(expression, pattern, rules)

    def _parse_value(self, expression: str, operation: str,
                     value: str) -> tuple[str, ...]:
        where = f"[{expression}] {operation} = {value}"
        value = value.strip()
        if not value:
            LOG.warning("Property protection %s is empty: nobody is allowed", where)
            return ()
        if self._format == "policies":
            if "," in value:
                raise exception.ConfigError(
                    f"Property protection {where}: with the policies format a "
                    "value is a single policy rule name.")
            if value not in (EVERYONE, NOBODY):
                assert self._enforcer is not None
                if not self._enforcer.is_defined(value):
                    LOG.warning("Property protection %s names an undefined "
                                "policy rule: denied until it is defined", where)
            return (value,)
        roles = tuple(role.strip().lower() for role in value.split(","))
        if any(not role for role in roles):
            raise exception.ConfigError(
                f"Property protection {where} has an empty role.")
        special = {EVERYONE, NOBODY}.intersection(roles)
        if special and len(roles) > 1:
            raise exception.ConfigError(
                f"Property protection {where}: '@' and '!' cannot be combined "
                "with other roles.")
        return roles

    def _section_for(self, property_name: str) -> _Section | None:
        return next((s for s in self._sections
                     if s.pattern.search(property_name)), None)

    def check(self, context: RequestContext, property_name: str,
              operation: str) -> bool:
        """Whether the caller may do ``operation`` on the property.

        Raises ValueError for an operation other than create/read/update/delete.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"Unknown property operation {operation!r}")
        if not self.enabled:
            return True
        section = self._section_for(property_name)
        if section is None:
            return False
        allowed = section.rules[operation]
        if not allowed or allowed == (NOBODY,):
            return False
        if allowed == (EVERYONE,):
            return True
        if self._format == "policies":
            assert self._enforcer is not None
            rule = allowed[0]
            return (self._enforcer.is_defined(rule)
                    and self._enforcer.check(context, rule))
        roles = {role.lower() for role in context.roles}
        return not roles.isdisjoint(allowed)

    def filter_readable(self, context: RequestContext,
                        properties: Mapping[str, str]) -> dict[str, str]:
        """The properties the caller may read."""
        return {name: value for name, value in properties.items()
                if self.check(context, name, "read")}

    def check_filterable(self, context: RequestContext, names: Iterable[str]) -> None:
        """Raise Invalid (400) for a list filter on a property the caller
        may not read: which images come back would tell its value."""
        for name in names:
            if not self.check(context, name, "read"):
                raise exception.Invalid(
                    "Filtering on property '%s' is not allowed" % name)

    def _require(self, context: RequestContext, names: Iterable[str],
                 operation: str) -> None:
        for name in names:
            if not self.check(context, name, operation):
                raise exception.ReservedProperty(property=name)

    def check_create(self, context: RequestContext,
                     properties: Mapping[str, str]) -> None:
        """Raise ReservedProperty for the first property the caller may not create."""
        reserved.check_new(properties)
        self._require(context, properties, "create")

    def check_update(self, context: RequestContext, old: Mapping[str, str],
                     new: Mapping[str, str], purge: bool) -> dict[str, str]:
        """The properties to send to the registry (with the same ``purge``).

        Kept properties need read, plus update when the value changes; new
        ones need create; with ``purge``, dropped ones need read (else they
        are silently kept) and delete. Raises ReservedProperty.
        """
        # A purge never drops the os_glance_* properties: a v1 update need
        # not repeat what only glance-api writes.
        new = reserved.kept(old, new)
        if not self.enabled:
            return dict(new)
        for name, value in new.items():
            if name not in old:
                continue
            if not self.check(context, name, "read") or (
                    value != old[name] and not self.check(context, name, "update")):
                raise exception.ReservedProperty(property=name)
        self._require(context, [n for n in new if n not in old], "create")
        result = dict(new)
        if purge:
            for name, value in old.items():
                if name in new:
                    continue
                if not self.check(context, name, "read"):
                    # The caller cannot know it exists, so omitting it is no
                    # request to delete it.
                    result[name] = value
                elif not self.check(context, name, "delete"):
                    raise exception.ReservedProperty(property=name)
        return result


def _locate(conf: cfg.ConfigOpts, name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.path.exists(name) else None
    try:
        found: str | None = conf.find_file(name)
    except cfg.NotInitializedError:
        found = name if os.path.exists(name) else None
    return found


def _read_ini(path: str) -> list[tuple[str, dict[str, str]]]:
    parser = configparser.RawConfigParser(default_section=_NO_DEFAULT_SECTION)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise exception.ConfigError(
            f"Unable to read property protection file {path}: {err}") from err
    return [(section, dict(parser.items(section))) for section in parser.sections()]
