"""The v2 JSON schemas: served at ``/v2/schemas/...`` and used, the very
same objects, to validate request bodies (create, patch, members).

The image schema's format enums come from ``[image_format]``. A deployer
may add typed properties in ``schema-image.json``, found like the other
config files (the config directories, then ``~/.glance``, ``/etc/glance``
...): a JSON object of property schemas, or ``{"properties": {...},
"required": [...]}``. They appear in the image schema with ``"is_base":
false``, are validated like the base attributes and are stored as
additional properties; the file shipped in ``etc/`` declares those newer
Glance ships (kernel_id, ramdisk_id, instance_uuid, architecture,
os_distro, os_version, description and the Cinder encryption key pair).
Validation errors become 400 with jsonschema's message.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

from glance_clone.common import exception

UUID_PATTERN = ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$")
STATUSES = ["queued", "saving", "active", "killed", "deleted", "uploading",
            "importing", "pending_delete", "deactivated"]
VISIBILITIES = ["community", "public", "private", "shared"]
MEMBER_STATUSES = ["pending", "accepted", "rejected"]


# Checksum and hash of the data behind a location being added: checked
# against the image's, and taken by a queued image.
VALIDATION_DATA = {
    "type": "object", "writeOnly": True, "additionalProperties": False,
    "properties": {
        "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
        "os_hash_algo": {"type": "string", "maxLength": 64},
        "os_hash_value": {"type": "string", "maxLength": 128},
    },
    "required": ["os_hash_algo", "os_hash_value"],
}


def _nullable_string(max_length: int, description: str, **extra: Any) -> dict:
    return dict({"type": ["null", "string"], "maxLength": max_length,
                 "description": description}, **extra)


def _read_only(schema: dict) -> dict:
    return dict(schema, readOnly=True)


def image_properties(disk_formats: list[str], container_formats: list[str]) -> dict:
    """The base properties of an image, in schema form."""
    return {
        "id": {"type": "string", "pattern": UUID_PATTERN,
               "description": "An identifier for the image"},
        "name": _nullable_string(255, "Descriptive name for the image"),
        "status": _read_only({"type": "string", "enum": STATUSES,
                              "description": "Status of the image"}),
        "visibility": {"type": "string", "enum": VISIBILITIES,
                       "description": "Scope of image accessibility"},
        "protected": {"type": "boolean",
                      "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean",
                      "description": "If true, image will not appear in default "
                                     "image list response."},
        "checksum": _read_only(_nullable_string(32, "md5 hash of image contents.")),
        "os_hash_algo": _read_only(_nullable_string(
            64, "Algorithm to calculate the os_hash_value")),
        "os_hash_value": _read_only(_nullable_string(
            128, "Hexdigest of the image contents using the algorithm in "
                 "os_hash_algo.")),
        "owner": _nullable_string(255, "Owner of the image"),
        "size": _read_only({"type": ["null", "integer"],
                            "description": "Size of image file in bytes"}),
        "virtual_size": _read_only({"type": ["null", "integer"],
                                    "description": "Virtual size of image in bytes"}),
        "container_format": {"type": ["null", "string"],
                             "enum": [None] + list(container_formats),
                             "description": "Format of the container"},
        "disk_format": {"type": ["null", "string"], "enum": [None] + list(disk_formats),
                        "description": "Format of the disk"},
        "created_at": _read_only({"type": "string",
                                  "description": "Date and time of image registration"}),
        "updated_at": _read_only({"type": "string",
                                  "description": "Date and time of the last image "
                                                 "modification"}),
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                 "description": "List of strings related to the image"},
        "direct_url": _read_only({"type": "string",
                                  "description": "URL to access the image file kept "
                                                 "in external store"}),
        "min_ram": {"type": "integer",
                    "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer",
                     "description": "Amount of disk space (in GB) required to boot "
                                    "image."},
        "stores": _read_only({"type": "string",
                              "description": "Store ids the image data is in, "
                                             "comma separated (named stores only)"}),
        "self": _read_only({"type": "string", "description": "An image self url"}),
        "file": _read_only({"type": "string", "description": "An image file url"}),
        "schema": _read_only({"type": "string",
                              "description": "An image schema url"}),
        "locations": {"type": "array",
                      "items": {"type": "object",
                                "properties": {"url": {"type": "string", "maxLength": 255},
                                               "metadata": {"type": "object"},
                                               "validation_data": VALIDATION_DATA},
                                "required": ["url", "metadata"]},
                      "description": "A set of URLs to access the image file kept "
                                     "in external store"},
    }


def image_schema(disk_formats: list[str], container_formats: list[str]) -> dict:
    return {
        "name": "image",
        "properties": image_properties(disk_formats, container_formats),
        "additionalProperties": {"type": "string"},
        "links": [{"rel": "self", "href": "{self}"},
                  {"rel": "enclosure", "href": "{file}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


def images_schema(image: dict) -> dict:
    return {
        "name": "images",
        "properties": {"images": {"type": "array", "items": image},
                       "schema": {"type": "string"}, "first": {"type": "string"},
                       "next": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"},
                  {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


MEMBER_SCHEMA: dict = {
    "name": "member",
    "properties": {
        "member_id": {"type": "string",
                      "description": "An identifier for the image member (tenantId)"},
        "image_id": {"type": "string", "pattern": UUID_PATTERN,
                     "description": "An identifier for the image"},
        "created_at": {"type": "string",
                       "description": "Date and time of image member creation"},
        "updated_at": {"type": "string",
                       "description": "Date and time of last modification of image member"},
        "status": {"type": "string", "enum": MEMBER_STATUSES,
                   "description": "The status of this image member"},
        "schema": {"type": "string", "readOnly": True},
    },
}
MEMBERS_SCHEMA: dict = {
    "name": "members",
    "properties": {"members": {"type": "array", "items": MEMBER_SCHEMA},
                   "schema": {"type": "string"}},
    "links": [{"rel": "describedby", "href": "{schema}"}],
}


SCHEMA_FILE = "schema-image.json"


def custom_properties(path: str | None) -> tuple[dict[str, dict], list[str]]:
    """The deployer's properties and required names from ``path`` (none
    without a file); raises ConfigError naming the file and the fix."""
    if path is None:
        return {}, []

    def bad(why: str) -> exception.ConfigError:
        return exception.ConfigError("%s: %s; fix it or remove the file" % (path, why))

    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
    except (OSError, ValueError) as err:
        raise bad("not readable JSON (%s)" % err) from None
    if not isinstance(document, dict):
        raise bad("not a JSON object")
    required: Any = []
    if isinstance(document.get("properties"), dict):
        required = document.get("required") or []
        document = document["properties"]
    if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
        raise bad("'required' is not a list of names")
    base = image_properties([], [])
    properties = {}
    for name, schema in document.items():
        if name in base:
            raise bad("'%s' is a base attribute of images" % name)
        if not isinstance(schema, dict):
            raise bad("the schema of '%s' is not an object" % name)
        properties[name] = dict(schema, is_base=False)
    try:
        jsonschema.Draft4Validator.check_schema({"properties": properties})
    except jsonschema.exceptions.SchemaError as err:
        raise bad("not a valid JSON schema (%s)" % err.message) from None
    return properties, list(required)


class Schemas:
    """The schemas of one configuration, built once."""

    def __init__(self, disk_formats: list[str], container_formats: list[str],
                 custom: dict[str, dict] | None = None,
                 required: list[str] | None = None) -> None:
        self.image = image_schema(disk_formats, container_formats)
        self.image["properties"].update(custom or {})
        if required:
            self.image["required"] = list(required)
        self.images = images_schema(self.image)
        self.member = MEMBER_SCHEMA
        self.members = MEMBERS_SCHEMA
        self._image_validator = jsonschema.Draft4Validator(self.image)
        # A patch checks one attribute: the deployer's required names do not
        # apply to it.
        self._partial_validator = jsonschema.Draft4Validator(
            {k: v for k, v in self.image.items() if k != "required"})

    def document(self, name: str) -> dict:
        """A schema as served (a copy: callers may not change ours)."""
        return copy.deepcopy(getattr(self, name))

    def validate_image(self, document: dict, partial: bool = False) -> None:
        """Raises Invalid when ``document`` (whole, or with ``partial`` one
        attribute of a patch) breaks the image schema."""
        validator = self._partial_validator if partial else self._image_validator
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is not None:
            raise exception.Invalid("Provided object does not match schema "
                                    "'image': %s" % error.message)

    def base_properties(self) -> frozenset[str]:
        """Image attributes (the deployer's typed properties are not: they
        are stored as additional properties)."""
        return frozenset(name for name, schema in self.image["properties"].items()
                         if schema.get("is_base", True))

    def read_only_properties(self) -> frozenset[str]:
        return frozenset(name for name, prop in self.image["properties"].items()
                         if prop.get("readOnly"))
