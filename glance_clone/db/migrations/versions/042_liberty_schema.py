"""The whole Glance Liberty schema (Glance's migration 42) in one step.

Numbered 42 so ``glance-manage db_version`` answers what Glance answers at
its head. The v1-irrelevant metadef and artifact tables are left out; the
table ``purged_image_ids`` is ours (ids ``db purge`` removed, never reused).

Revision ID: 42
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "42"
down_revision = None
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _soft_delete_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("disk_format", sa.String(20)),
        sa.Column("container_format", sa.String(20)),
        sa.Column("size", BigInt),
        sa.Column("virtual_size", BigInt),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("checksum", sa.String(32)),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_soft_delete_columns(),
    )
    op.create_index("checksum_image_idx", "images", ["checksum"])
    op.create_index("ix_images_is_public", "images", ["is_public"])
    op.create_index("ix_images_deleted", "images", ["deleted"])
    op.create_index("owner_image_idx", "images", ["owner"])

    op.create_table(
        "image_properties",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"),
                  nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text()),
        *_soft_delete_columns(),
        sa.UniqueConstraint("image_id", "name",
                            name="ix_image_properties_image_id_name"),
    )
    op.create_index("ix_image_properties_image_id", "image_properties",
                    ["image_id"])
    op.create_index("ix_image_properties_deleted", "image_properties",
                    ["deleted"])

    op.create_table(
        "image_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"),
                  nullable=False),
        sa.Column("member", sa.String(255), nullable=False),
        sa.Column("can_share", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False,
                  server_default="pending"),
        *_soft_delete_columns(),
        sa.UniqueConstraint("image_id", "member", "deleted_at",
                            name="image_members_image_id_member_deleted_at_key"),
    )
    op.create_index("ix_image_members_deleted", "image_members", ["deleted"])
    op.create_index("ix_image_members_image_id", "image_members", ["image_id"])
    op.create_index("ix_image_members_image_id_member", "image_members",
                    ["image_id", "member"])

    op.create_table(
        "image_locations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"),
                  nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("meta_data", sa.Text()),
        sa.Column("status", sa.String(30), nullable=False,
                  server_default="active"),
        *_soft_delete_columns(),
    )
    op.create_index("ix_image_locations_image_id", "image_locations",
                    ["image_id"])
    op.create_index("ix_image_locations_deleted", "image_locations",
                    ["deleted"])

    op.create_table(
        "image_tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"),
                  nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        *_soft_delete_columns(),
    )
    op.create_index("ix_image_tags_image_id", "image_tags", ["image_id"])
    op.create_index("ix_image_tags_image_id_tag_value", "image_tags",
                    ["image_id", "value"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(30), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        *_soft_delete_columns(),
    )
    op.create_index("ix_tasks_type", "tasks", ["type"])
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_owner", "tasks", ["owner"])
    op.create_index("ix_tasks_deleted", "tasks", ["deleted"])
    op.create_index("ix_tasks_updated_at", "tasks", ["updated_at"])

    op.create_table(
        "task_info",
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"),
                  primary_key=True),
        sa.Column("input", sa.Text()),
        sa.Column("result", sa.Text()),
        sa.Column("message", sa.Text()),
    )

    op.create_table(
        "purged_image_ids",
        sa.Column("id", sa.String(36), primary_key=True),
    )


def downgrade() -> None:
    for table in ("purged_image_ids", "task_info", "tasks", "image_tags",
                  "image_locations", "image_members", "image_properties",
                  "images"):
        op.drop_table(table)
