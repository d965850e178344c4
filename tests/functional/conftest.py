"""Fixtures that run real glance processes on loopback, on every backend set.

``backend`` is parametrised over the suite's backend sets
(``harness.suite_sets()``: sqlite-file, postgres-swift, postgres-s3,
postgres-rbd), so every test using ``glance`` (or ``backend``) runs once
per set. Tests that
need more than a set gives mark it ``@pytest.mark.needs("postgres-server")``
and the like (see ``harness.missing_for``).

A set or need this machine lacks (its environment variables, client
modules or local server binaries) is not skipped test by test: its tests
are deselected at collection, and one line at the end of the run says
which sets were not run and why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional import harness, keystone_harness

NOT_RUN = pytest.StashKey[dict[str, list[str]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*parts): deselect unless the machine has these "
        "(harness.NEEDS keys such as keystone, postgres-server, swift-server)")
    config.addinivalue_line(
        "markers", "stores(*stores): run only on the backend sets with these stores")


@pytest.fixture(scope="session", params=harness.suite_sets())
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend set ("sqlite-file", "postgres-swift", ...)."""
    return request.param


@pytest.fixture
def glance(tmp_path, backend) -> Iterator[harness.Deployment]:
    """A running registry + api pair (trusted-auth) on each backend set."""
    yield from harness.deployment(tmp_path, backend=backend)


@pytest.fixture(scope="module")
def keystone() -> Iterator[keystone_harness.Keystone]:
    """The Keystone of KEYSTONE_URL (tests marked needs("keystone")); what a
    module creates there is removed after it."""
    ks = keystone_harness.Keystone()
    yield ks
    ks.cleanup()


@pytest.fixture(scope="module")
def keystone_glance(tmp_path_factory, keystone) -> Iterator[harness.Deployment]:
    """A running registry (trusted-auth) + api (keystone flavor) pair that
    checks tokens at the Keystone of ``keystone``; one per module."""
    dep = keystone_harness.deployment(tmp_path_factory.mktemp("keystone"), keystone)
    try:
        yield dep.start()
    finally:
        dep.stop()


def _unmet(item: pytest.Item) -> dict[str, list[str]]:
    """{what: [missing, ...]} for each backend set or need ``item`` lacks."""
    unmet: dict[str, list[str]] = {}
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("backend") if callspec is not None else None
    if name is not None:
        missing = harness.backend_set(name).missing()
        if missing:
            unmet[name] = missing
    for marker in item.iter_markers("needs"):
        for part in marker.args:
            missing = harness.missing_for(part)
            if missing:
                unmet[part] = missing
    return unmet


def _on_its_stores(item: pytest.Item) -> bool:
    """False for a ``stores``-marked test on a set with another store."""
    marker = item.get_closest_marker("stores")
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("backend") if callspec is not None else None
    return marker is None or name is None or harness.backend_set(name).store in marker.args


def pytest_collection_modifyitems(config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    not_run: dict[str, list[str]] = {}
    keep, drop = [], []
    for item in items:
        if not _on_its_stores(item):
            drop.append(item)
            continue
        unmet = _unmet(item)
        not_run.update(unmet)
        (drop if unmet else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[NOT_RUN] = not_run


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    not_run = config.stash.get(NOT_RUN, {})
    if not_run:
        terminalreporter.write_line(
            "backend sets not run (their tests deselected): " + "; ".join(
                "%s (missing %s)" % (name, ", ".join(missing))
                for name, missing in sorted(not_run.items())),
            yellow=True, bold=True)
