"""glance-manage: create, migrate and purge the registry database.

Usage::

    glance-manage [--config-file F] db <action> [<args>]
    glance-manage [--config-file F] db_<action> [<args>]     (legacy form)

Actions
    ``db version`` / ``db_version``
        Print the schema version: 44 at head, "None" for an empty database.
    ``db sync [--version V] [--current_version C]`` / ``db_sync [V] [C]``
        Stamp the database at C if given, then create or migrate the schema
        to V (head by default). A database Glance migrated to 42 is adopted.
    ``db upgrade [--version V]`` / ``db_upgrade [V]``
        Migrate up to V (head by default).
    ``db downgrade --version V`` / ``db_downgrade V``
        Migrate down to V; 0 drops every table.
    ``db version_control [--version V]`` / ``db_version_control [V]``
        Record version V (head by default) for an existing schema.
    ``db purge [--age_in_days N] [--max_rows M]``
        Remove rows soft-deleted more than N days ago (default 30), and
        expired tasks (finished more than ``[task] task_time_to_live`` hours
        ago), at most M per table (default 100, -1 for no limit). Purged
        image ids can never be used again.

The database is ``[database] connection`` of glance-registry.conf,
glance-api.conf and glance-manage.conf (in that order, later files win) or
of the ``--config-file`` given. The directory of a SQLite database file is
created when missing. Errors print "ERROR: <message>" on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.db import api as db_api
from glance_clone.db import migration, session

PROG = "glance-manage"
CATEGORIES = ("db",)


def _engine(conf: cfg.ConfigOpts) -> Any:
    url = session.database_url(conf)
    session.ensure_sqlite_directory(url)
    return session.create_engine(conf)


def _with_engine(conf: cfg.ConfigOpts, action: Callable[[Any], None]) -> None:
    engine = _engine(conf)
    try:
        action(engine)
    finally:
        engine.dispose()


def do_version(conf: cfg.ConfigOpts) -> None:
    def show(engine: Any) -> None:
        print(migration.db_version(engine))
    _with_engine(conf, show)


def do_sync(conf: cfg.ConfigOpts) -> None:
    command = conf.command
    _with_engine(conf, lambda engine: migration.db_sync(
        engine, command.version, command.current_version))


def do_upgrade(conf: cfg.ConfigOpts) -> None:
    _with_engine(conf, lambda engine: migration.db_upgrade(
        engine, conf.command.version))


def do_downgrade(conf: cfg.ConfigOpts) -> None:
    if conf.command.version is None:
        raise exception.Invalid("downgrade needs a version (--version V)")
    _with_engine(conf, lambda engine: migration.db_downgrade(
        engine, conf.command.version))


def do_version_control(conf: cfg.ConfigOpts) -> None:
    _with_engine(conf, lambda engine: migration.version_control(
        engine, conf.command.version))


def do_purge(conf: cfg.ConfigOpts) -> None:
    age_in_days = _int_arg("age_in_days", conf.command.age_in_days)
    max_rows = _int_arg("max_rows", conf.command.max_rows)
    if age_in_days <= 0:
        raise exception.Invalid("Must supply a positive, non-zero value for age.")
    if max_rows != -1 and max_rows < 1:
        raise exception.Invalid("Minimal rows limit is 1 (-1 for no limit).")

    def purge(engine: Any) -> None:
        counts = db_api.Database(engine).purge_deleted_rows(age_in_days,
                                                             max_rows)
        for table, count in counts.items():
            print(f"Purged {count} row(s) from {table}")
    _with_engine(conf, purge)


def _int_arg(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise exception.Invalid(f"Invalid int value for {name}: {value!r}")


ACTIONS: dict[str, Callable[[cfg.ConfigOpts], None]] = {
    "version": do_version, "sync": do_sync, "upgrade": do_upgrade,
    "downgrade": do_downgrade, "version_control": do_version_control,
    "purge": do_purge,
}


def _add_commands(subparsers: Any) -> None:
    """Both command styles: ``db <action> --opts`` and ``db_<action> args``."""
    db = subparsers.add_parser("db", help="Database schema and rows")
    actions = db.add_subparsers(dest="action", metavar="<action>")
    actions.required = True

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.set_defaults(version=None, current_version=None)
        return parser

    action("version", "Print the schema version")
    parser = action("sync", "Create or migrate the schema")
    parser.add_argument("--version")
    parser.add_argument("--current_version")
    action("upgrade", "Migrate up").add_argument("--version")
    action("downgrade", "Migrate down").add_argument("--version")
    action("version_control", "Stamp a version").add_argument("--version")
    parser = action("purge", "Remove old soft-deleted rows")
    parser.add_argument("--age_in_days", default=30)
    parser.add_argument("--max_rows", default=100)

    def legacy(name: str, positionals: Sequence[str], optional: bool = True
               ) -> None:
        parser = subparsers.add_parser("db_" + name,
                                       help=f"Same as 'db {name}'")
        parser.set_defaults(action=name, version=None, current_version=None)
        for positional in positionals:
            parser.add_argument(positional, nargs="?" if optional else None)

    legacy("version", [])
    legacy("sync", ["version", "current_version"])
    legacy("upgrade", ["version"])
    legacy("downgrade", ["version"], optional=False)
    legacy("version_control", ["version"])


def _default_config_files() -> list[str]:
    files: list[str] = []
    for prog in ("glance-registry", "glance-api", PROG):
        for path in cfg.find_config_files(project="glance", prog=prog):
            if path not in files:
                files.append(path)
    return files


def _usage() -> None:
    print(f"{PROG} category action [<args>]")
    print("Available categories:")
    for category in CATEGORIES:
        print(f"\t{category}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run glance-manage; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        _usage()
        return 2
    conf = cfg.ConfigOpts()
    config.register_database_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        "command", title="Commands", handler=_add_commands,
        help="Available categories and legacy commands"))
    try:
        config.parse_args(conf, args, PROG,
                          default_config_files=_default_config_files())
        ACTIONS[conf.command.action](conf)
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            return err.code or 0
        print(err.code, file=sys.stderr)
        return 1
    except (exception.GlanceError, cfg.Error, RuntimeError,
            sa.exc.SQLAlchemyError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
