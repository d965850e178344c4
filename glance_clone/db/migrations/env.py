"""Alembic environment: runs on the connection ``db.migration`` hands over.

There is no alembic.ini: ``glance_clone.db.migration`` builds the Config in
code and puts an open Connection in ``config.attributes["connection"]``.
Offline (``--sql``) runs use the ``sqlalchemy.url`` main option instead.
"""

from __future__ import annotations

from alembic import context

from glance_clone.db import models

config = context.config
target_metadata = models.Base.metadata


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    # Our SQLite engines issue BEGIN themselves, so DDL there is
    # transactional too: a failed upgrade leaves nothing half done.
    context.configure(connection=connection, target_metadata=target_metadata,
                      transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
