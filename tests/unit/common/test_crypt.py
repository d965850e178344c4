import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from glance_clone.common import crypt, exception

KEY = "0123456789abcdef"


def test_round_trip_and_randomised():
    url = "swift+http://user:secret@swift.example.org/v1/glance/abc"
    first, second = crypt.encrypt(KEY, url), crypt.encrypt(KEY, url)
    assert first != second and "secret" not in first
    assert crypt.decrypt(KEY, first) == crypt.decrypt(KEY, second) == url


@pytest.mark.parametrize("length", [16, 24, 32])
def test_every_aes_key_length(length):
    key = "k" * length
    assert crypt.decrypt(key, crypt.encrypt(key, "file:///x/y")) == "file:///x/y"


def test_bad_key_length_is_a_config_error():
    with pytest.raises(exception.ConfigError):
        crypt.encrypt("short", "x")


def test_garbage_is_invalid_not_a_crash():
    with pytest.raises(exception.Invalid):
        crypt.decrypt(KEY, "not base64 at all!")
    with pytest.raises(exception.Invalid):
        crypt.decrypt(KEY, "AAAA")


def test_padding_never_cuts_the_text():
    # The padding is random: enough rounds that a zero byte in it (which
    # would end the text early when read back) is all but certain to show.
    for length in (16, 24, 32):
        key = "k" * length
        for _ in range(700):
            assert crypt.decrypt(key, crypt.encrypt(key, "file:///x/y")) == "file:///x/y"


def test_text_ends_at_the_first_zero_byte():
    """A copy whose padding has zero bytes still reads back whole."""
    iv = bytes(range(16))
    padded = b"file:///x/y" + b"\0" + b"\x07\0\x00\x09"
    encryptor = Cipher(algorithms.AES(KEY.encode()), modes.CBC(iv)).encryptor()
    sealed = iv + encryptor.update(padded) + encryptor.finalize()
    assert crypt.decrypt(KEY, base64.urlsafe_b64encode(sealed).decode()) == "file:///x/y"
