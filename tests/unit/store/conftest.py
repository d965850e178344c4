"""Fixtures for the store tests: a fresh ConfigOpts and data directory each."""

from __future__ import annotations

import pathlib

import pytest
from oslo_config import cfg

from glance_clone.store import backend

# Test modules import helpers from the backends plugin before pytest loads it
# as one: have its asserts rewritten all the same.
pytest.register_assert_rewrite("tests.unit.store.backends")


def make_conf(**overrides: dict[str, object]) -> cfg.ConfigOpts:
    """A ConfigOpts with every store option registered, parsed from nothing.

    ``overrides`` maps a group name to {option: value}.
    """
    conf = cfg.ConfigOpts()
    backend.register_opts(conf)
    conf([], default_config_files=[], default_config_dirs=[])
    for group, values in overrides.items():
        for name, value in values.items():
            conf.set_override(name, value, group)
    return conf


@pytest.fixture
def datadir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "images"


@pytest.fixture
def conf(datadir: pathlib.Path) -> cfg.ConfigOpts:
    return make_conf(glance_store={"filesystem_store_datadir": str(datadir)})
