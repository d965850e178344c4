"""Encryption of location URLs at rest (``metadata_encryption_key``).

With the option set, glance-api, the scrubber and the cache tools encrypt
every location URL before it reaches the registry and decrypt what they read,
so the database holds only opaque strings (store credentials in Swift and S3
URLs included). The format is the one Glance 11 wrote, so existing databases
keep working: url-safe base64 of a 16-byte IV followed by AES-CBC of the
text, a zero byte, and random padding up to the block size.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from glance_clone.common import exception

BLOCK = 16
KEY_LENGTHS = (16, 24, 32)


def check_key(key: str) -> bytes:
    """The key as bytes; raises ConfigError unless it has 16, 24 or 32 bytes."""
    raw = key.encode("utf-8")
    if len(raw) not in KEY_LENGTHS:
        raise exception.ConfigError(
            "metadata_encryption_key must be 16, 24 or 32 characters long.")
    return raw


def encrypt(key: str, plaintext: str) -> str:
    text = plaintext.encode("utf-8")
    pad_length = BLOCK - len(text) % BLOCK
    # The zero byte ends the text, so the padding after it must hold none
    # (as Glance wrote it, so Glance can read what we write).
    padding = bytes(secrets.randbelow(255) + 1 for _ in range(pad_length - 1))
    padded = text + b"\0" + padding
    iv = os.urandom(BLOCK)
    encryptor = Cipher(algorithms.AES(check_key(key)), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    return base64.urlsafe_b64encode(iv + sealed).decode("ascii")


def decrypt(key: str, ciphertext: str) -> str:
    """The plain text; raises Invalid when it was not made with this key."""
    try:
        raw = base64.urlsafe_b64decode(ciphertext.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise exception.Invalid("A stored location could not be decrypted.")
    if len(raw) < 2 * BLOCK or len(raw) % BLOCK:
        raise exception.Invalid("A stored location could not be decrypted.")
    decryptor = Cipher(algorithms.AES(check_key(key)), modes.CBC(raw[:BLOCK])).decryptor()
    padded = decryptor.update(raw[BLOCK:]) + decryptor.finalize()
    # A URL holds no zero byte: the first one ends it, whatever the padding
    # (copies written before the padding excluded zero bytes may have some).
    end = padded.find(b"\0")
    if end < 0:
        raise exception.Invalid("A stored location could not be decrypted.")
    try:
        return padded[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise exception.Invalid("A stored location could not be decrypted.")
