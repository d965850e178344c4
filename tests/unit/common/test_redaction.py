"""URLs in messages and logs: scheme and host only."""

from __future__ import annotations

import pytest

from glance_clone.common import exception
from glance_clone.common.redaction import NO_SCHEME, redact_url

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("url, shown", [
    ("http://user:s3cret@Host.Example:8080/path/x?sig=t0ken#frag", "http://host.example"),
    ("HTTPS://host/x", "https://host"),
    ("http://host?sig=t0ken", "http://host"),
    ("http://host#frag", "http://host"),
    ("http://user:s3cret@[::1]:80/x", "http://[::1]"),
    ("swift+https://user:s3cret@auth.example/v1/c/o", "swift+https://auth.example"),
    ("s3://access:s3cret@s3.example/bucket/key", "s3://s3.example"),
    ("file:///etc/passwd", "file://"),
    ("http://evil\\@good/x", "http://evil"),
    ("http://a:b@c@d/x", "http://d"),
    ("http://ho st/x", "http://?"),
    ("http://host\r\nX-Injected: 1/x", "http://?"),
    ("user:s3cret@host/x", NO_SCHEME),
    ("", NO_SCHEME),
    ("1http://host/x", NO_SCHEME),
])
def test_redact_url_keeps_scheme_and_host_only(url, shown):
    assert redact_url(url) == shown


def test_a_refused_source_is_named_by_scheme_and_host():
    err = exception.ExternalSourceRefused(url="http://user:s3cret@10.0.0.1:81/x?sig=t0ken")
    assert str(err) == "External sources are not supported: 'http://10.0.0.1'"
    redirect = exception.RedirectRefused(url="https://user:s3cret@example.org/x?a=b")
    assert str(redirect) == ("External sources are not supported: 'https://example.org' "
                             "redirects to a refused source")
