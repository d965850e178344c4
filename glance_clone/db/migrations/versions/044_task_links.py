"""What tasks need beyond Glance's Liberty table: the links newer Glance
added.

- ``image_id``: the image a task works on (an import's new image), so that
  a task and its image can be found from each other, and a task cut short
  can take its half-made image down with it.
- ``request_id`` and ``user_id``: the request that created the task and
  who sent it, for the logs of work that runs after the request is over.

Revision ID: 44
Revises: 43
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "44"
down_revision = "43"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("image_id", sa.String(36)))
    op.add_column("tasks", sa.Column("request_id", sa.String(64)))
    op.add_column("tasks", sa.Column("user_id", sa.String(64)))
    op.create_index("ix_tasks_image_id", "tasks", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_image_id", "tasks")
    for column in ("user_id", "request_id", "image_id"):
        op.drop_column("tasks", column)
