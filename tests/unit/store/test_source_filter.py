"""Tests for the external source filter. No test here sends network traffic;
host names other than localhost resolve through a monkeypatched resolver."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.redaction import redact_url
from glance_clone.store import source_filter
from tests.unit.store.conftest import make_conf

pytestmark = pytest.mark.timeout(10)

PUBLIC = "93.184.216.34"

FAKE_DNS = {
    "images.example.com": [PUBLIC],
    "rebind.example.com": [PUBLIC, "10.1.2.3"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "metadata.example.com": ["169.254.169.254"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer for the example names; hand everything else to the real resolver,
    which for IP spellings and localhost does no network lookup."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host in FAKE_DNS:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM,
                     6, "", (a, port)) for a in FAKE_DNS[host]]
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def filtering(**opts: object) -> cfg.ConfigOpts:
    return make_conf(import_filtering_opts=opts)


def refused(conf: cfg.ConfigOpts, url: str) -> bool:
    try:
        source_filter.check_source(conf, url)
    except exception.ExternalSourceRefused as err:
        assert str(err) == f"External sources are not supported: '{redact_url(url)}'"
        assert isinstance(err, exception.Invalid)  # a 400 at the API
        return True
    return False


@pytest.mark.parametrize("url", [
    "http://images.example.com/cirros.img",
    "https://images.example.com:443/cirros.img",
    f"http://{PUBLIC}/x",
    "http://v6.example.com/x",
    "http://user:pw@images.example.com/x",
])
def test_public_sources_pass(url: str) -> None:
    assert not refused(filtering(), url)


@pytest.mark.parametrize("url", ["", "   "])
def test_empty_source_is_invalid(url: str) -> None:
    with pytest.raises(exception.Invalid, match="External source should not be empty"):
        source_filter.check_source(filtering(), url)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "filesystem:///var/lib/glance/images/x",
    "swift+config://ref1/container/obj",
    "ftp://images.example.com/x",
    "gopher://images.example.com/x",
    "images.example.com/x",
    "//images.example.com/x",
])
def test_schemes_refused_by_default(url: str) -> None:
    assert refused(filtering(), url)


def test_always_refused_even_if_allowed() -> None:
    conf = filtering(allowed_schemes=["file", "filesystem", "swift+config", "http"])
    for url in ("file:///etc/passwd", "filesystem:///x", "swift+config://r/c/o"):
        assert refused(conf, url)


def test_disallowed_scheme() -> None:
    conf = filtering(disallowed_schemes=["http"])
    assert refused(conf, "http://images.example.com/x")
    assert not refused(conf, "https://images.example.com/x")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/",
    "http://127.0.0.1:9292/v1/images",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://10.0.0.1/",
    "http://10.20.30.40:8080/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.example.com/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a00:1]/",
    "http://rebind.example.com/",
])
def test_internal_addresses_refused(url: str) -> None:
    assert refused(filtering(), url)


@pytest.mark.parametrize("url", [
    "http://unresolvable.invalid/x",
    "http://images.example.com:99999/x",
    "http://images.example.com:port/x",
    "http:///x",
    "http://images.example.com\\@10.0.0.1/x",
    "http://images.example.com /x",
    "http://images.example.com/\nx",
])
def test_malformed_or_unresolvable_refused(url: str) -> None:
    assert refused(filtering(), url)


def test_allowed_hosts_admits_internal_host_as_written() -> None:
    conf = filtering(allowed_hosts=["127.0.0.1", "Mirror.Local"], allowed_ports=[])
    assert not refused(conf, "http://127.0.0.1:8000/x")
    assert not refused(conf, "http://mirror.local./x")  # no lookup for listed hosts
    # Other spellings of the same address are not what the operator listed.
    assert refused(conf, "http://2130706433/x")
    assert refused(conf, "http://localhost/x")
    # A non-empty list refuses everything else, public or not.
    assert refused(conf, "http://images.example.com/x")


def test_allowed_ipv6_host() -> None:
    assert not refused(filtering(allowed_hosts=["::1"], allowed_ports=[]),
                       "http://[::1]:8080/x")


def test_disallowed_hosts() -> None:
    conf = filtering(disallowed_hosts=["images.example.com", PUBLIC])
    assert refused(conf, "http://images.example.com/x")
    assert refused(conf, "http://IMAGES.example.com./x")
    assert refused(conf, f"http://{PUBLIC}/x")
    # Listed by address: any name resolving to it is refused too.
    assert refused(filtering(disallowed_hosts=[PUBLIC]), "http://images.example.com/x")
    assert not refused(conf, "http://v6.example.com/x")


def test_only_standard_ports_by_default() -> None:
    conf = filtering()
    assert conf.import_filtering_opts.allowed_ports == [80, 443]
    for url in ("http://images.example.com/x", "http://images.example.com:80/x",
                "https://images.example.com/x", "https://images.example.com:443/x",
                "http://images.example.com:443/x"):
        assert not refused(conf, url), url
    for url in ("http://images.example.com:8080/x", "https://images.example.com:8443/x",
                "http://images.example.com:22/x"):
        assert refused(conf, url), url


def test_empty_allowed_ports_allows_any_port() -> None:
    conf = filtering(allowed_ports=[])
    assert not refused(conf, "http://images.example.com:8080/x")
    assert not refused(conf, "https://images.example.com:8443/x")
    assert refused(filtering(allowed_ports=[], disallowed_ports=[8080]),
                   "http://images.example.com:8080/x")


def test_allowed_ports() -> None:
    conf = filtering(allowed_ports=[80, 8080])
    assert not refused(conf, "http://images.example.com/x")  # default port 80
    assert not refused(conf, "http://images.example.com:8080/x")
    assert refused(conf, "https://images.example.com/x")  # default port 443
    assert refused(conf, "http://images.example.com:22/x")


def test_disallowed_ports() -> None:
    conf = filtering(disallowed_ports=[22, 443])
    assert refused(conf, "http://images.example.com:22/x")
    assert refused(conf, "https://images.example.com/x")
    assert not refused(conf, "http://images.example.com/x")


def test_ports_option_parsed_from_config_text() -> None:
    conf = filtering()
    conf.set_override("allowed_ports", "80,8080", "import_filtering_opts")
    assert conf.import_filtering_opts.allowed_ports == [80, 8080]


@pytest.mark.parametrize(("address", "internal"), [
    ("127.0.0.1", True), ("::1", True), ("::ffff:10.0.0.1", True),
    ("169.254.1.1", True), ("fe80::1%1", True), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),
    ("8.8.8.8", False), ("2001:4860:4860::8888", False),
])
def test_is_internal_address(address: str, internal: bool) -> None:
    assert source_filter.is_internal_address(address) is internal


def test_check_address_for_a_connected_peer() -> None:
    conf = filtering(allowed_hosts=["127.0.0.1"])
    source_filter.check_address(conf, "127.0.0.1", "127.0.0.1", "http://127.0.0.1/")
    with pytest.raises(exception.ExternalSourceRefused):
        source_filter.check_address(conf, "images.example.com", "127.0.0.1",
                                    "http://images.example.com/")
    source_filter.check_address(filtering(), "images.example.com", PUBLIC, "http://x/")


def test_resolve_returns_every_address() -> None:
    assert source_filter.resolve("rebind.example.com", 80) == [
        ipaddress.ip_address(PUBLIC), ipaddress.ip_address("10.1.2.3")]
