"""SQLAlchemy models of the registry database (Glance's Liberty schema plus
what the v2 API needs: visibility, os_hidden and the multihash columns).

Table, column, index and constraint names are Glance's, so that an
operator's tooling (and a database migrated by Glance itself) keeps working.
Every table but ``task_info`` carries the soft-delete columns: rows are
flagged ``deleted`` and stamped ``deleted_at``, never removed by the
services. Timestamps are naive UTC.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy import orm

# SQLite only auto-increments an INTEGER PRIMARY KEY, and its integers are
# 64-bit anyway, so BIGINT columns are plain INTEGER there.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime.datetime:
    """Now, as the naive UTC datetime every timestamp column holds."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


class SoftDeleteMixin:
    """The timestamp and soft-delete columns shared by most tables."""

    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime(), nullable=False, default=utcnow)
    updated_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        sa.DateTime(), nullable=True, default=utcnow, onupdate=utcnow)
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        sa.DateTime(), nullable=True)
    deleted: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean(), nullable=False, default=False)


class Image(SoftDeleteMixin, Base):
    __tablename__ = "images"
    __table_args__ = (
        sa.Index("checksum_image_idx", "checksum"),
        sa.Index("ix_images_deleted", "deleted"),
        sa.Index("owner_image_idx", "owner"),
        sa.Index("visibility_image_idx", "visibility"),
        sa.Index("os_hash_value_image_idx", "os_hash_value"),
    )

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    name: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    disk_format: orm.Mapped[str | None] = orm.mapped_column(sa.String(20))
    container_format: orm.Mapped[str | None] = orm.mapped_column(sa.String(20))
    size: orm.Mapped[int | None] = orm.mapped_column(BigInt)
    virtual_size: orm.Mapped[int | None] = orm.mapped_column(BigInt)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(30), nullable=False)
    # public, private, shared or community; v1's is_public is "public".
    visibility: orm.Mapped[str] = orm.mapped_column(
        sa.String(20), nullable=False, default="shared", server_default="shared")
    checksum: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
    min_disk: orm.Mapped[int] = orm.mapped_column(
        sa.Integer(), nullable=False, default=0)
    min_ram: orm.Mapped[int] = orm.mapped_column(
        sa.Integer(), nullable=False, default=0)
    owner: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    protected: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean(), nullable=False, default=False)
    os_hidden: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean(), nullable=False, default=False, server_default=sa.false())
    os_hash_algo: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    os_hash_value: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))


class ImageProperty(SoftDeleteMixin, Base):
    __tablename__ = "image_properties"
    __table_args__ = (
        sa.Index("ix_image_properties_image_id", "image_id"),
        sa.Index("ix_image_properties_deleted", "deleted"),
        # One row per name, so a deleted property is revived, not duplicated.
        sa.UniqueConstraint("image_id", "name",
                            name="ix_image_properties_image_id_name"),
    )

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer(), primary_key=True)
    image_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("images.id"), nullable=False)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    value: orm.Mapped[str | None] = orm.mapped_column(sa.Text())


class ImageMember(SoftDeleteMixin, Base):
    __tablename__ = "image_members"
    __table_args__ = (
        sa.Index("ix_image_members_deleted", "deleted"),
        sa.Index("ix_image_members_image_id", "image_id"),
        sa.Index("ix_image_members_image_id_member", "image_id", "member"),
        sa.UniqueConstraint("image_id", "member", "deleted_at",
                            name="image_members_image_id_member_deleted_at_key"),
    )

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer(), primary_key=True)
    image_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("images.id"), nullable=False)
    member: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    can_share: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean(), nullable=False, default=False)
    status: orm.Mapped[str] = orm.mapped_column(
        sa.String(20), nullable=False, default="pending",
        server_default="pending")


class ImageLocation(SoftDeleteMixin, Base):
    __tablename__ = "image_locations"
    __table_args__ = (
        sa.Index("ix_image_locations_image_id", "image_id"),
        sa.Index("ix_image_locations_deleted", "deleted"),
    )

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer(), primary_key=True)
    image_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("images.id"), nullable=False)
    value: orm.Mapped[str] = orm.mapped_column(sa.Text(), nullable=False)
    # A JSON object, kept as text like Glance does.
    meta_data: orm.Mapped[str | None] = orm.mapped_column(sa.Text(), default="{}")
    status: orm.Mapped[str] = orm.mapped_column(
        sa.String(30), nullable=False, default="active",
        server_default="active")


class ImageTag(SoftDeleteMixin, Base):
    __tablename__ = "image_tags"
    __table_args__ = (
        sa.Index("ix_image_tags_image_id", "image_id"),
        sa.Index("ix_image_tags_image_id_tag_value", "image_id", "value"),
    )

    id: orm.Mapped[int] = orm.mapped_column(sa.Integer(), primary_key=True)
    image_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("images.id"), nullable=False)
    value: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)


class Task(SoftDeleteMixin, Base):
    """A v2 task: asynchronous work (an import) with an owner and a status.

    Its input, result and message are in ``task_info``.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_type", "type"),
        sa.Index("ix_tasks_status", "status"),
        sa.Index("ix_tasks_owner", "owner"),
        sa.Index("ix_tasks_deleted", "deleted"),
        sa.Index("ix_tasks_updated_at", "updated_at"),
        sa.Index("ix_tasks_image_id", "image_id"),
    )

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    type: orm.Mapped[str] = orm.mapped_column(sa.String(30), nullable=False)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(30), nullable=False)
    owner: orm.Mapped[str] = orm.mapped_column(sa.String(255), nullable=False)
    expires_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        sa.DateTime(), nullable=True)
    image_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(36))
    request_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    user_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))


class TaskInfo(Base):
    __tablename__ = "task_info"

    task_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("tasks.id"), primary_key=True)
    input: orm.Mapped[str | None] = orm.mapped_column(sa.Text())
    result: orm.Mapped[str | None] = orm.mapped_column(sa.Text())
    message: orm.Mapped[str | None] = orm.mapped_column(sa.Text())


class PurgedImageId(Base):
    """Ids of images removed by ``db purge``: never handed out again."""

    __tablename__ = "purged_image_ids"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)


# The tables, for Core statements.
images: sa.Table = Image.__table__  # type: ignore[assignment]
image_properties: sa.Table = ImageProperty.__table__  # type: ignore[assignment]
image_members: sa.Table = ImageMember.__table__  # type: ignore[assignment]
image_locations: sa.Table = ImageLocation.__table__  # type: ignore[assignment]
image_tags: sa.Table = ImageTag.__table__  # type: ignore[assignment]
tasks: sa.Table = Task.__table__  # type: ignore[assignment]
task_info: sa.Table = TaskInfo.__table__  # type: ignore[assignment]
purged_image_ids: sa.Table = PurgedImageId.__table__  # type: ignore[assignment]
