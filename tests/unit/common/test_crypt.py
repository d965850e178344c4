import pytest

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
