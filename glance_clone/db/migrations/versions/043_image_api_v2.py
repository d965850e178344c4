"""What the v2 Image API needs in the images table.

- ``visibility`` (public, private, shared, community) replaces the v1
  ``is_public`` flag. Existing rows map as: public stays public, every
  other image becomes ``shared``, because under v1 any private image could
  be read by its members, which is what ``shared`` means. v2 ``private``
  images (owner only, no members) exist only once a v2 client makes them.
- ``os_hidden``: the image is left out of default v2 lists.
- ``os_hash_algo`` / ``os_hash_value``: the multihash of the data, empty
  until an upload computes it.

Memberships need no change: ``image_members`` already has the v2
``status`` (default pending) beside v1's ``can_share``.

The columns are added and dropped in place (ALTER TABLE ... DROP COLUMN
needs SQLite 3.35), not by copying the table: the child tables' foreign
keys to ``images`` are enforced on our SQLite connections.

Revision ID: 43
Revises: 42
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "43"
down_revision = "42"
branch_labels = None
depends_on = None

IMAGES = sa.table("images", sa.column("is_public", sa.Boolean()),
                  sa.column("visibility", sa.String(20)))


def upgrade() -> None:
    op.add_column("images", sa.Column("visibility", sa.String(20), nullable=False,
                                      server_default="shared"))
    op.add_column("images", sa.Column("os_hidden", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.add_column("images", sa.Column("os_hash_algo", sa.String(64)))
    op.add_column("images", sa.Column("os_hash_value", sa.String(128)))
    op.execute(IMAGES.update().where(IMAGES.c.is_public == sa.true())
               .values(visibility="public"))
    op.drop_index("ix_images_is_public", "images")
    op.drop_column("images", "is_public")
    op.create_index("visibility_image_idx", "images", ["visibility"])
    op.create_index("os_hash_value_image_idx", "images", ["os_hash_value"])


def downgrade() -> None:
    op.add_column("images", sa.Column("is_public", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.execute(IMAGES.update().where(IMAGES.c.visibility == "public")
               .values(is_public=True))
    op.drop_index("os_hash_value_image_idx", "images")
    op.drop_index("visibility_image_idx", "images")
    for column in ("os_hash_value", "os_hash_algo", "os_hidden", "visibility"):
        op.drop_column("images", column)
    op.create_index("ix_images_is_public", "images", ["is_public"])
