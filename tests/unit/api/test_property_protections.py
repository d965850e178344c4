"""Tests for glance_clone.api.property_protections."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest
from oslo_config import cfg

from glance_clone.api import property_protections
from glance_clone.common import exception, policy
from glance_clone.common.context import RequestContext

pytestmark = pytest.mark.timeout(10)

ETC = pathlib.Path(__file__).resolve().parents[3] / "etc"

ADMIN = RequestContext(user="a", tenant="t", roles=("admin",), is_admin=True)
MEMBER = RequestContext(user="m", tenant="t", roles=("member",))
NOBODY = RequestContext(user="n", tenant="t")

ROLES_CONF = """
[^x_owner_]
create = admin, member
read = admin,member
update = admin
delete = admin

[^x_readonly_]
create = admin
read = @
update = !
delete = admin

[^x_hidden_]
create = @
read = admin
update = @
delete = @

[foo]
create = Member
read = member
update = member
delete = member

[^x_]
create = @
read = @
update = @
delete = @
"""

POLICIES_CONF = """
[^x_owner_]
create = glance_creator
read = glance_creator
update = context_is_admin
delete = context_is_admin

[^x_everyone_]
create = @
read = @
update = @
delete = !

[^x_typo_]
create = no_such_rule
read = no_such_rule
update = no_such_rule
delete = no_such_rule
"""


def make_conf(tmp_path: pathlib.Path, rules_text: str | None = None,
              rule_format: str = "roles",
              policy_rules: dict[str, str] | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    property_protections.register_opts(conf)
    policy.register_opts(conf)
    if rules_text is not None:
        path = tmp_path / "property-protections.conf"
        path.write_text(textwrap.dedent(rules_text))
        conf.set_override("property_protection_file", str(path))
    conf.set_override("property_protection_rule_format", rule_format)
    if policy_rules is not None:
        policy_path = tmp_path / "policy.json"
        policy_path.write_text(json.dumps(policy_rules))
        conf.set_override("policy_file", str(policy_path), group="oslo_policy")
    conf([], project="glance-clone-tests", default_config_files=[])
    return conf


def make_rules(tmp_path: pathlib.Path, rules_text: str | None = ROLES_CONF,
               rule_format: str = "roles",
               policy_rules: dict[str, str] | None = None
               ) -> property_protections.PropertyRules:
    conf = make_conf(tmp_path, rules_text, rule_format, policy_rules)
    return property_protections.PropertyRules(conf, policy.Enforcer(conf))


def test_options() -> None:
    conf = cfg.ConfigOpts()
    property_protections.register_opts(conf)
    assert conf.property_protection_file is None
    assert conf.property_protection_rule_format == "roles"


def test_disabled_allows_everything(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path, None)
    assert not rules.enabled
    for operation in property_protections.OPERATIONS:
        assert rules.check(NOBODY, "anything", operation)
    props = {"a": "1", "b": "2"}
    assert rules.filter_readable(NOBODY, props) == props
    rules.check_create(NOBODY, props)
    assert rules.check_update(NOBODY, {"x": "1"}, {"a": "1"}, purge=True) == {"a": "1"}


def test_disabled_needs_no_enforcer(tmp_path: pathlib.Path) -> None:
    rules = property_protections.PropertyRules(make_conf(tmp_path, None))
    assert rules.check(NOBODY, "x", "read")


def test_roles_format(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    assert rules.enabled
    assert rules.check(MEMBER, "x_owner_a", "create")
    assert rules.check(MEMBER, "x_owner_a", "read")
    assert not rules.check(MEMBER, "x_owner_a", "update")
    assert rules.check(ADMIN, "x_owner_a", "update")
    assert not rules.check(NOBODY, "x_owner_a", "read")


def test_roles_compare_lower_case(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    # "create = Member" in the file
    assert rules.check(MEMBER, "foo", "create")
    assert rules.check(RequestContext(roles=("MEMBER",)), "foo", "read")


def test_everyone_and_nobody(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    assert rules.check(NOBODY, "x_readonly_a", "read")
    assert not rules.check(ADMIN, "x_readonly_a", "update")


def test_admin_flag_gives_no_bypass(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    assert not rules.check(RequestContext(is_admin=True), "x_owner_a", "read")


def test_search_not_full_match(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    # [foo] is searched anywhere in the name
    assert rules.check(MEMBER, "my_foo_bar", "read")
    assert not rules.check(NOBODY, "my_foo_bar", "read")


def test_first_match_wins(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    # x_owner_foo matches [^x_owner_], [foo] and [^x_]: the first decides.
    assert not rules.check(MEMBER, "x_owner_foo", "update")
    # x_foo matches [foo] before [^x_]
    assert not rules.check(NOBODY, "x_foo", "read")
    assert rules.check(NOBODY, "x_other", "update")


def test_unmatched_property_denied(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    for operation in property_protections.OPERATIONS:
        assert not rules.check(ADMIN, "unmatched", operation)


def test_unknown_operation(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        make_rules(tmp_path).check(ADMIN, "x_a", "write")


def test_default_section_is_an_expression(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path, """
        [DEFAULT]
        create = admin
        read = admin
        update = admin
        delete = admin
        """)
    assert rules.check(ADMIN, "DEFAULT_x", "read")
    assert not rules.check(ADMIN, "other", "read")


def test_empty_value_allows_nobody(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path, "[.*]\ncreate =\nread = @\nupdate = @\ndelete = @\n")
    assert not rules.check(ADMIN, "a", "create")
    assert rules.check(ADMIN, "a", "read")


def test_policies_format(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path, POLICIES_CONF, "policies",
                       {"glance_creator": "role:admin or role:creator"})
    creator = RequestContext(roles=("creator",))
    assert rules.check(creator, "x_owner_a", "create")
    assert rules.check(creator, "x_owner_a", "read")
    assert not rules.check(creator, "x_owner_a", "update")
    assert rules.check(ADMIN, "x_owner_a", "delete")
    assert not rules.check(MEMBER, "x_owner_a", "read")
    assert rules.check(NOBODY, "x_everyone_a", "update")
    assert not rules.check(ADMIN, "x_everyone_a", "delete")
    assert not rules.check(ADMIN, "unmatched", "read")


def test_policies_undefined_rule_denies(tmp_path: pathlib.Path) -> None:
    # The policy file's default rule allows everything, yet a protection
    # naming a rule that does not exist must not.
    rules = make_rules(tmp_path, POLICIES_CONF, "policies", {"default": ""})
    assert not rules.check(ADMIN, "x_typo_a", "read")


@pytest.mark.parametrize("text, message", [
    ("[^x_]\ncreate = @\nread = @\nupdate = @\n", "does not define 'delete'"),
    ("[x_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n", "regular expression"),
    ("[.*]\ncreate = @, admin\nread = @\nupdate = @\ndelete = @\n", "cannot be combined"),
    ("[.*]\ncreate = admin,!\nread = @\nupdate = @\ndelete = @\n", "cannot be combined"),
    ("[.*]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n", "cannot be combined"),
    ("[.*]\ncreate = admin,,member\nread = @\nupdate = @\ndelete = @\n", "empty role"),
    ("create = @\n", "Unable to read"),
    ("[a]\ncreate = @\n[a]\ncreate = @\n", "Unable to read"),
])
def test_roles_startup_errors(tmp_path: pathlib.Path, text: str, message: str) -> None:
    with pytest.raises(exception.ConfigError, match=message):
        make_rules(tmp_path, text)


def test_policies_comma_is_startup_error(tmp_path: pathlib.Path) -> None:
    text = "[.*]\ncreate = a,b\nread = a\nupdate = a\ndelete = a\n"
    with pytest.raises(exception.ConfigError, match="single policy rule"):
        make_rules(tmp_path, text, "policies")


def test_missing_file_is_startup_error(tmp_path: pathlib.Path) -> None:
    conf = make_conf(tmp_path)
    conf.set_override("property_protection_file", str(tmp_path / "missing.conf"))
    with pytest.raises(exception.ConfigError, match="Couldn't find"):
        property_protections.PropertyRules(conf, policy.Enforcer(conf))


def test_bad_rule_format_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        make_conf(tmp_path, ROLES_CONF, rule_format="acl")


def test_file_found_next_to_config(tmp_path: pathlib.Path) -> None:
    (tmp_path / "protections.conf").write_text(textwrap.dedent(ROLES_CONF))
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text("[DEFAULT]\nproperty_protection_file = protections.conf\n")
    conf = cfg.ConfigOpts()
    property_protections.register_opts(conf)
    conf(["--config-file", str(conf_file)], project="glance-clone-tests",
         default_config_files=[])
    rules = property_protections.PropertyRules(conf, policy.Enforcer(conf))
    assert rules.check(MEMBER, "x_owner_a", "read")


@pytest.mark.parametrize("name, rule_format, policy_rules", [
    ("property-protections-roles.conf.sample", "roles", None),
    ("property-protections-policies.conf.sample", "policies",
     {"billing_writer": "role:admin or role:billing",
      "billing_reader": "role:admin or role:billing or role:operator",
      "image_member": "role:admin or role:member"}),
])
def test_samples_load(tmp_path: pathlib.Path, name: str, rule_format: str,
                      policy_rules: dict[str, str] | None) -> None:
    rules = make_rules(tmp_path, (ETC / name).read_text(), rule_format, policy_rules)
    operator = RequestContext(roles=("operator",))
    assert rules.check(operator, "billing_code", "read")
    assert not rules.check(operator, "billing_code", "create")
    assert not rules.check(ADMIN, "billing_code", "update")
    assert rules.check(MEMBER, "x_owner_a", "update")
    assert not rules.check(MEMBER, "x_secret_a", "read")
    assert rules.check(NOBODY, "os_distro", "delete")


def test_filter_readable(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    props = {"x_owner_a": "1", "x_hidden_b": "2", "x_c": "3", "unmatched": "4"}
    assert rules.filter_readable(MEMBER, props) == {"x_owner_a": "1", "x_c": "3"}
    assert rules.filter_readable(ADMIN, props) == {"x_owner_a": "1", "x_hidden_b": "2",
                                                   "x_c": "3"}


def test_check_create(tmp_path: pathlib.Path) -> None:
    rules = make_rules(tmp_path)
    rules.check_create(MEMBER, {"x_owner_a": "1", "x_c": "2"})
    with pytest.raises(exception.ReservedProperty) as info:
        rules.check_create(MEMBER, {"x_c": "2", "x_readonly_a": "1", "unmatched": "3"})
    assert str(info.value) == "Property 'x_readonly_a' is protected"
    assert isinstance(info.value, exception.Forbidden)


class TestCheckUpdate:
    OLD = {"x_owner_a": "1", "x_hidden_b": "2", "x_c": "3"}

    def test_unchanged_needs_read_only(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        new = {"x_owner_a": "1", "x_hidden_b": "2", "x_c": "3"}
        assert rules.check_update(ADMIN, self.OLD, new, purge=True) == new
        # member may read x_owner_a but not update it: same value is fine
        result = rules.check_update(MEMBER, self.OLD, {"x_owner_a": "1", "x_c": "3"},
                                    purge=True)
        assert result == {"x_owner_a": "1", "x_c": "3", "x_hidden_b": "2"}

    def test_change_needs_update(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        with pytest.raises(exception.ReservedProperty, match="x_owner_a"):
            rules.check_update(MEMBER, self.OLD, {"x_owner_a": "9"}, purge=False)
        assert rules.check_update(ADMIN, self.OLD, {"x_owner_a": "9"},
                                  purge=False) == {"x_owner_a": "9"}

    def test_present_but_unreadable_is_forbidden(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        with pytest.raises(exception.ReservedProperty, match="x_hidden_b"):
            rules.check_update(MEMBER, self.OLD, {"x_hidden_b": "2"}, purge=False)

    def test_new_needs_create(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        with pytest.raises(exception.ReservedProperty, match="x_readonly_z"):
            rules.check_update(MEMBER, self.OLD, {"x_readonly_z": "1"}, purge=False)
        with pytest.raises(exception.ReservedProperty, match="unmatched"):
            rules.check_update(ADMIN, self.OLD, {"unmatched": "1"}, purge=False)
        assert rules.check_update(MEMBER, self.OLD, {"x_owner_new": "1"},
                                  purge=False) == {"x_owner_new": "1"}

    def test_purge_unreadable_is_kept(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        # MEMBER cannot read x_hidden_b: dropping it from the request keeps it,
        # even though MEMBER would be allowed to delete it.
        result = rules.check_update(MEMBER, self.OLD,
                                    {"x_owner_a": "1", "x_c": "3"}, purge=True)
        assert result["x_hidden_b"] == "2"

    def test_purge_needs_delete(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        with pytest.raises(exception.ReservedProperty, match="x_owner_a"):
            rules.check_update(MEMBER, self.OLD, {"x_c": "3"}, purge=True)
        result = rules.check_update(ADMIN, self.OLD, {}, purge=True)
        assert result == {}

    def test_purge_unmatched_old_property_kept(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        old = {"legacy": "v", "x_c": "3"}
        assert rules.check_update(ADMIN, old, {"x_c": "4"}, purge=True) == {
            "x_c": "4", "legacy": "v"}

    def test_no_purge_leaves_others_alone(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        # Without purge the dropped properties are not deletions: no checks.
        assert rules.check_update(NOBODY, self.OLD, {"x_c": "4"},
                                  purge=False) == {"x_c": "4"}

    def test_order_of_checks(self, tmp_path: pathlib.Path) -> None:
        rules = make_rules(tmp_path)
        # update violation reported before create and delete violations
        with pytest.raises(exception.ReservedProperty, match="x_owner_a"):
            rules.check_update(MEMBER, self.OLD,
                               {"x_readonly_new": "1", "x_owner_a": "2"}, purge=True)
