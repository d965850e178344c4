"""Tests for glance_clone.common.policy."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import yaml
from oslo_config import cfg

from glance_clone.common import exception, policy
from glance_clone.common.context import RequestContext

pytestmark = pytest.mark.timeout(10)

ETC = pathlib.Path(__file__).resolve().parents[3] / "etc"

ADMIN = RequestContext(user="u1", tenant="t1", roles=("admin",), is_admin=True)
USER = RequestContext(user="u2", tenant="t2", roles=("member",))


def make_conf(tmp_path: pathlib.Path, rules: dict[str, str] | None = None,
              parse: bool = True) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    policy.register_opts(conf)
    path = tmp_path / "policy.json"
    if rules is not None:
        path.write_text(json.dumps(rules))
    if rules is not None or parse:
        # Absent when rules is None: never pick up a stray file from /etc.
        conf.set_override("policy_file", str(path), group="oslo_policy")
    if parse:
        conf([], project="glance-clone-tests", default_config_files=[])
    return conf


def test_registered_defaults() -> None:
    conf = cfg.ConfigOpts()
    policy.register_opts(conf)
    assert conf.oslo_policy.policy_file == "policy.json"
    assert conf.oslo_policy.policy_default_rule == "default"


def test_list_opts_shows_policy_json() -> None:
    [(group, opts)] = policy.list_opts()
    assert group == "oslo_policy"
    assert {o.dest: o.default for o in opts}["policy_file"] == "policy.json"


def test_register_opts_leaves_other_confs_alone() -> None:
    from oslo_policy import opts as policy_opts
    conf = cfg.ConfigOpts()
    policy.register_opts(conf)
    other = cfg.ConfigOpts()
    policy_opts.set_defaults(other)
    assert other.oslo_policy.policy_file == "policy.yaml"


READER = RequestContext(user="u3", tenant="t2", roles=("reader",))
# The image of project t2 as a policy target.
OWN = {"project_id": "t2", "owner": "t2", "visibility": "private"}
OTHERS = {"project_id": "t9", "owner": "t9", "visibility": "private"}
WRITES = ("add_image", "modify_image", "delete_image", "upload_image", "copy_from",
          "deactivate", "reactivate", "set_image_location", "add_member",
          "delete_member", "communitize_image")


def test_enforce_new_defaults_is_on_by_default() -> None:
    conf = cfg.ConfigOpts()
    policy.register_opts(conf)
    assert conf.oslo_policy.enforce_new_defaults is True
    [(_group, opts)] = policy.list_opts()
    assert {o.dest: o.default for o in opts}["enforce_new_defaults"] is True


@pytest.mark.parametrize("parse", [True, False])
def test_new_defaults_reader_reads_member_writes(tmp_path: pathlib.Path,
                                                 parse: bool) -> None:
    enforcer = policy.Enforcer(make_conf(tmp_path, parse=parse))
    member = RequestContext(user="u2", tenant="t2", roles=("reader", "member"))
    for action in WRITES + ("download_image",):
        assert enforcer.check(member, action, OWN), action
        assert not enforcer.check(READER, action, OWN), action
        assert not enforcer.check(member, action, OTHERS), action
        assert enforcer.check(ADMIN, action, OTHERS), action
    for action in ("get_image", "get_images", "get_members", "get_member"):
        assert enforcer.check(READER, action, OWN), action
        assert not enforcer.check(READER, action, OTHERS), action
    # Others' images: readable when public, community or shared (the
    # registry hides a shared image from non-members), or as a member.
    for visibility in ("public", "community", "shared"):
        assert enforcer.check(READER, "get_image", dict(OTHERS, visibility=visibility))
    assert enforcer.check(READER, "get_members", dict(OTHERS, member_id="t2"))
    # Only the member itself answers a share.
    assert enforcer.check(member, "modify_member", dict(OTHERS, member_id="t2"))
    assert not enforcer.check(member, "modify_member", dict(OWN, member_id="t5"))
    # A create names the caller's project as owner.
    assert not enforcer.check(member, "add_image", dict(OWN, owner="t9"))
    for action in ("publicize_image", "manage_image_cache", "copy_image",
                   "delete_image_location", "tasks_api_access", "context_is_admin"):
        assert not enforcer.check(member, action, OWN), action
    # No value never matches a missing one: a caller without a project
    # does not own an image without an owner.
    assert not enforcer.check(RequestContext(roles=("member",)), "modify_image",
                              {"project_id": None, "owner": None})
    assert enforcer.check(member, "some_unknown_action")
    assert enforcer.check_is_admin(ADMIN)
    assert not enforcer.check_is_admin(USER)


def test_old_defaults_when_new_ones_are_off(tmp_path: pathlib.Path) -> None:
    conf = make_conf(tmp_path)
    conf.set_override("enforce_new_defaults", False, group="oslo_policy")
    enforcer = policy.Enforcer(conf)
    for action in policy.V1_RULES:
        assert enforcer.check(ADMIN, action)
    for action in ("get_images", "get_image", "add_image", "modify_image",
                   "delete_image", "download_image", "upload_image", "copy_from",
                   "get_members", "modify_member",
                   "delete_member", "some_unknown_action"):
        assert enforcer.check(USER, action), action
        assert enforcer.check(RequestContext(), action), action
    for action in ("publicize_image", "communitize_image", "manage_image_cache",
                   "context_is_admin"):
        assert not enforcer.check(USER, action, OWN), action


def test_both_tables_name_the_same_rules() -> None:
    # service_api only serves the new table's location rules.
    assert set(policy.NEW_DEFAULT_RULES) - set(policy.LEGACY_DEFAULT_RULES) <= {
        "service_api", "get_images", "get_image", "download_image",
        "download_from_store", "add_image", "modify_image", "delete_image",
        "upload_image", "copy_from", "deactivate", "reactivate",
        "set_image_location", "add_member", "delete_member", "get_member",
        "get_members", "modify_member"}
    assert set(policy.LEGACY_DEFAULT_RULES) <= set(policy.NEW_DEFAULT_RULES)


@pytest.mark.parametrize("from_file", [False, True])
def test_set_image_location_is_for_the_image_projects_members(
        tmp_path: pathlib.Path, from_file: bool) -> None:
    rules = json.loads((ETC / "policy.json").read_text()) if from_file else None
    enforcer = policy.Enforcer(make_conf(tmp_path, rules))
    own, other = {"project_id": "t2"}, {"project_id": "t9"}
    assert enforcer.check(USER, "set_image_location", own)
    assert not enforcer.check(USER, "set_image_location", other)
    assert not enforcer.check(USER, "set_image_location", {})
    reader = RequestContext(user="u3", tenant="t2", roles=("reader",))
    assert not enforcer.check(reader, "set_image_location", own)
    assert enforcer.check(ADMIN, "set_image_location", other)


def test_is_admin_flag_alone_is_not_the_admin_role(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(tmp_path))
    ctx = RequestContext(is_admin=True)
    assert not enforcer.check(ctx, "publicize_image")


def test_enforce_raises_policy_not_authorized(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(tmp_path))
    enforcer.enforce(ADMIN, "publicize_image")
    with pytest.raises(exception.PolicyNotAuthorized) as info:
        enforcer.enforce(USER, "publicize_image")
    assert isinstance(info.value, exception.Forbidden)
    assert "publicize_image" in str(info.value)


def test_file_denies_download_to_non_admins(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(
        tmp_path, {"default": "", "download_image": "role:admin", "get_image": ""}))
    assert enforcer.check(ADMIN, "download_image")
    assert not enforcer.check(USER, "download_image", OWN)
    with pytest.raises(exception.PolicyNotAuthorized):
        enforcer.enforce(USER, "download_image")
    assert enforcer.check(USER, "get_image")


def test_file_without_rule_falls_back_to_builtins(tmp_path: pathlib.Path) -> None:
    # The file says nothing about publicize_image or default.
    enforcer = policy.Enforcer(make_conf(tmp_path, {"get_images": "role:reader"}))
    assert not enforcer.check(USER, "publicize_image")
    assert enforcer.check(ADMIN, "publicize_image")
    assert enforcer.check(USER, "add_image", OWN)
    assert not enforcer.check(READER, "add_image", OWN)
    assert not enforcer.check(USER, "get_images")
    assert enforcer.check(RequestContext(roles=("reader",)), "get_images")


def test_file_default_rule_governs_unnamed_actions(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(tmp_path, {"default": "!"}))
    assert not enforcer.check(ADMIN, "some_unknown_action")
    assert enforcer.check(ADMIN, "get_images")
    assert enforcer.check(ADMIN, "context_is_admin")


def test_target_and_credentials(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(
        tmp_path, {"get_image": "tenant:%(owner)s",
                   "context_is_admin": "role:admin or user:root"}))
    assert enforcer.check(USER, "get_image", {"owner": "t2"})
    assert not enforcer.check(USER, "get_image", {"owner": "t1"})
    assert enforcer.check_is_admin(RequestContext(user="root"))
    assert not enforcer.check_is_admin(USER)


def test_policy_file_found_in_config_dir(tmp_path: pathlib.Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps({"get_images": "!"}))
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text("[DEFAULT]\n")
    conf = cfg.ConfigOpts()
    policy.register_opts(conf)
    conf(["--config-file", str(conf_file)], project="glance-clone-tests",
         default_config_files=[])
    enforcer = policy.Enforcer(conf)
    assert not enforcer.check(ADMIN, "get_images")


def test_shipped_policy_json(tmp_path: pathlib.Path) -> None:
    # It leaves every rule but two to the built-in defaults.
    rules = json.loads((ETC / "policy.json").read_text())
    assert set(rules) == {"context_is_admin", "default"}
    enforcer = policy.Enforcer(make_conf(tmp_path, rules))
    assert not enforcer.check(USER, "publicize_image")
    assert not enforcer.check(USER, "manage_image_cache")
    assert enforcer.check(USER, "download_image", OWN)
    assert not enforcer.check(READER, "download_image", OWN)
    assert enforcer.check(ADMIN, "publicize_image")


def test_sample_lists_every_rule_with_both_defaults() -> None:
    lines = (ETC / "policy.yaml.sample").read_text().splitlines()
    uncommented = "\n".join(line[1:] for line in lines if line.startswith('#"'))
    assert yaml.safe_load(uncommented) == policy.NEW_DEFAULT_RULES
    old = {}
    for previous, line in zip(lines, lines[1:], strict=False):
        if line.startswith('#"'):
            assert previous.startswith("# old: ")
            name = line[2:line.index('"', 2)]
            old[name] = yaml.safe_load(previous[len("# old: "):])
    assert old == {name: policy.LEGACY_DEFAULT_RULES.get(name, "")
                   for name in policy.NEW_DEFAULT_RULES}


def test_file_change_is_picked_up(tmp_path: pathlib.Path, monkeypatch) -> None:
    # Changes are looked for at most once per RELOAD_INTERVAL; make it now.
    monkeypatch.setattr(policy, "RELOAD_INTERVAL", 0)
    conf = make_conf(tmp_path, {"get_images": ""})
    enforcer = policy.Enforcer(conf)
    assert enforcer.check(USER, "get_images")
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"get_images": "role:admin"}))
    mtime = os.path.getmtime(path) + 10  # do not depend on timestamp resolution
    os.utime(path, (mtime, mtime))
    assert not enforcer.check(USER, "get_images")
    assert enforcer.check(ADMIN, "get_images")


def test_malformed_file_is_a_config_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"get_images": ')
    conf = make_conf(tmp_path)
    conf.set_override("policy_file", str(path), group="oslo_policy")
    with pytest.raises(exception.ConfigError):
        policy.Enforcer(conf)


def test_is_defined(tmp_path: pathlib.Path) -> None:
    enforcer = policy.Enforcer(make_conf(tmp_path, {"glance_creator": "role:c"}))
    assert enforcer.is_defined("glance_creator")
    assert enforcer.is_defined("context_is_admin")
    assert not enforcer.is_defined("no_such_rule")
