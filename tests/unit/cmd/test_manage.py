"""glance-manage: both command styles against a SQLite file in tmp_path."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from glance_clone.cmd import manage
from glance_clone.common.context import RequestContext
from glance_clone.db import api, models, session


@pytest.fixture
def conf_file(tmp_path):
    db_file = tmp_path / "state" / "nested" / "registry.sqlite"
    path = tmp_path / "glance-manage.conf"
    path.write_text(f"[database]\nconnection = sqlite:///{db_file}\n")
    return str(path), db_file


def run(capsys, conf, *args):
    code = manage.main(["--config-file", conf, *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def version(capsys, conf):
    code, out, _ = run(capsys, conf, "db", "version")
    assert code == 0
    return out


def test_no_arguments_prints_categories(capsys):
    assert manage.main([]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "glance-manage category action [<args>]"
    assert lines[1] == "Available categories:"
    assert [line.strip() for line in lines[2:]] == ["db"]


def test_new_style_commands(capsys, conf_file):
    conf, db_file = conf_file
    assert version(capsys, conf) == "None"
    assert run(capsys, conf, "db", "sync")[0] == 0
    assert db_file.exists()
    assert version(capsys, conf) == "44"
    assert run(capsys, conf, "db", "downgrade", "--version", "0")[0] == 0
    assert version(capsys, conf) == "None"
    assert run(capsys, conf, "db", "upgrade")[0] == 0
    assert version(capsys, conf) == "44"
    assert run(capsys, conf, "db", "sync", "--version", "44")[0] == 0


def test_legacy_commands(capsys, conf_file):
    conf, _ = conf_file
    assert run(capsys, conf, "db_sync")[0] == 0
    assert run(capsys, conf, "db_version")[1] == "44"
    assert run(capsys, conf, "db_downgrade", "42")[0] == 0
    assert run(capsys, conf, "db_version")[1] == "42"
    assert run(capsys, conf, "db_downgrade", "0")[0] == 0
    assert run(capsys, conf, "db_version")[1] == "None"
    assert run(capsys, conf, "db_upgrade", "42")[0] == 0
    assert run(capsys, conf, "db_version")[1] == "42"
    assert run(capsys, conf, "db_sync", "44")[0] == 0
    assert run(capsys, conf, "db_version")[1] == "44"


def test_version_control(capsys, conf_file):
    conf, db_file = conf_file
    assert run(capsys, conf, "db", "version_control")[0] == 0
    assert version(capsys, conf) == "44"
    engine = session.create_engine(f"sqlite:///{db_file}")
    try:
        assert "images" not in sa.inspect(engine).get_table_names()
        assert run(capsys, conf, "db_version_control", "0")[0] == 0
        assert version(capsys, conf) == "None"
        # sync with a current version: stamp, then migrate (nothing to do).
        models.Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    assert run(capsys, conf, "db", "sync", "--current_version", "44")[0] == 0
    assert version(capsys, conf) == "44"


def test_errors(capsys, conf_file, tmp_path):
    conf, _ = conf_file
    code, _, err = run(capsys, conf, "db", "upgrade", "--version", "7")
    assert code == 1 and err.startswith("ERROR: ")
    code, _, err = run(capsys, conf, "db", "downgrade")
    assert code == 1 and err.startswith("ERROR: ")
    # argparse refusals keep argparse's status.
    assert run(capsys, conf, "db_downgrade")[0] == 2
    assert run(capsys, conf, "db", "bogus")[0] == 2
    assert run(capsys, conf, "bogus")[0] == 2


def test_missing_connection(capsys, tmp_path):
    empty = tmp_path / "empty.conf"
    empty.write_text("[DEFAULT]\n")
    code, out, err = run(capsys, str(empty), "db", "sync")
    assert code == 1
    assert err.startswith("ERROR: ") and "connection" in err


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, str(tmp_path / "absent.conf"), "db", "version")
    assert code == 1 and err.startswith("ERROR: ")


def test_purge(capsys, conf_file):
    conf, db_file = conf_file
    assert run(capsys, conf, "db", "sync")[0] == 0
    engine = session.create_engine(f"sqlite:///{db_file}")
    try:
        db = api.Database(engine)
        context = RequestContext(tenant="t1")
        image = db.image_create(context, {"properties": {"a": "1"}})
        db.image_destroy(context, image["id"])
        old = models.utcnow() - datetime.timedelta(days=45)
        with engine.begin() as connection:
            for table in (models.images, models.image_properties):
                connection.execute(sa.update(table).values(deleted_at=old))
        code, _, err = run(capsys, conf, "db", "purge", "--age_in_days", "0")
        assert code == 1 and err.startswith("ERROR: ")
        code, _, err = run(capsys, conf, "db", "purge", "--max_rows", "x")
        assert code == 1 and err.startswith("ERROR: ")
        code, out, _ = run(capsys, conf, "db", "purge", "--age_in_days", "60")
        assert code == 0 and "Purged 0 row(s) from images" in out
        code, out, _ = run(capsys, conf, "db", "purge")
        assert code == 0 and "Purged 1 row(s) from images" in out
        with engine.connect() as connection:
            assert connection.execute(
                sa.select(models.purged_image_ids.c.id)).scalars().all() == [
                    image["id"]]
    finally:
        engine.dispose()


def test_default_config_files_are_concatenated(monkeypatch):
    found = {
        "glance-registry": ["/etc/glance/glance.conf", "/etc/glance/glance-registry.conf"],
        "glance-api": ["/etc/glance/glance.conf", "/etc/glance/glance-api.conf"],
        "glance-manage": ["/etc/glance/glance-manage.conf"],
    }
    monkeypatch.setattr(manage.cfg, "find_config_files",
                        lambda project, prog: found[prog])
    assert manage._default_config_files() == [
        "/etc/glance/glance.conf", "/etc/glance/glance-registry.conf",
        "/etc/glance/glance-api.conf", "/etc/glance/glance-manage.conf"]
