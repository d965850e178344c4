"""The registry client's HTTP transport against small real servers on loopback."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.registry.client.v1.client import RegistryClient
from tests.support.stack import make_conf

pytestmark = pytest.mark.timeout(60)
CONTEXT = RequestContext(user="u", tenant="t", auth_token="tok")


class _Registry(http.server.BaseHTTPRequestHandler):
    """Answers every call with the request it saw; keeps connections alive
    unless the server says otherwise."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.seen.append((self.command, self.path, body,  # type: ignore[attr-defined]
                                self.client_address[1]))
        data = json.dumps({"images": [], "image": {"id": "x", "path": self.path}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        # Hang up after answering without announcing it, as a registry
        # whose idle timeout expires or that reloads does.
        self.close_connection = server.hang_up  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request: object) -> None:
        super().shutdown_request(request)  # type: ignore[arg-type]
        self.hung_up.release()  # type: ignore[attr-defined]


def _serve(hang_up: bool = False, tls: ssl.SSLContext | None = None,
           port: int = 0) -> _Server:
    server = _Server(("127.0.0.1", port), _Registry)
    server.hung_up = threading.Semaphore(0)  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    server.hang_up = hang_up  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def registry() -> Iterator[_Server]:
    server = _serve()
    yield server
    server.shutdown()


def _client(tmp_path: Path, port: int, reconnect_time: float = 0.2,
            **options: object) -> RegistryClient:
    conf = make_conf(tmp_path, {"registry_host": "127.0.0.1", "registry_port": port,
                                **options})
    client = RegistryClient(conf)
    client.transport.reconnect_time = reconnect_time
    return client


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_calls_share_one_kept_alive_connection(tmp_path, registry):
    client = _client(tmp_path, registry.server_address[1])
    for _ in range(5):
        assert client.get_images(CONTEXT, limit=3, name="a b") == []
    ports = {port for _m, _p, _b, port in registry.seen}
    assert len(registry.seen) == 5 and len(ports) == 1
    assert registry.seen[0][1] == "/images?limit=3&name=a+b"


def test_a_connection_closed_while_idle_is_replaced_not_resent(tmp_path):
    server = _serve(hang_up=True)
    try:
        client = _client(tmp_path, server.server_address[1])
        first = client.add_image(CONTEXT, {"name": "one"})
        # The registry closed the connection after its answer; the next
        # write must go out once, on a new connection, and succeed.
        assert server.hung_up.acquire(timeout=10)
        second = client.add_image(CONTEXT, {"name": "two"})
        assert first["path"] == second["path"] == "/images"
        posts = [(body, port) for method, _p, body, port in server.seen if method == "POST"]
        assert [json.loads(body)["image"]["name"] for body, _port in posts] == ["one", "two"]
        assert posts[0][1] != posts[1][1]
    finally:
        server.shutdown()


def test_unreachable_registry(tmp_path):
    client = _client(tmp_path, _unused_port())
    with pytest.raises(exception.RegistryUnavailable, match="could not be reached"):
        client.get_image(CONTEXT, "x")


@pytest.mark.parametrize("call", [
    lambda client: client.get_image(CONTEXT, "x"),
    lambda client: client.add_image(CONTEXT, {"name": "a"}),
], ids=["read", "write"])
def test_a_registry_restarting_within_the_reconnect_time_is_waited_for(tmp_path, call):
    """Nothing listens for a moment (the old registry closed its socket,
    the new one is still starting): the call waits, once sent, instead of
    failing. A write too: a refused connection carried nothing."""
    port = _unused_port()
    client = _client(tmp_path, port, reconnect_time=30)
    started: list[_Server] = []
    later = threading.Timer(0.3, lambda: started.append(_serve(port=port)))
    later.start()
    try:
        assert call(client)["path"] in ("/images/x", "/images")
        assert len(started[0].seen) == 1
    finally:
        later.join()
        for server in started:
            server.shutdown()


def test_a_write_whose_answer_is_lost_is_told_apart_from_one_never_sent(tmp_path):
    """Connection refused: the write cannot have happened. Reset after the
    request went out: it may have, and the caller must find out."""
    with pytest.raises(exception.RegistryUnavailable) as refused:
        _client(tmp_path, _unused_port()).add_image(CONTEXT, {"name": "a"})
    assert not isinstance(refused.value, exception.RegistryReplyLost)

    rude = socket.socket()
    rude.bind(("127.0.0.1", 0))
    rude.listen(8)

    def read_then_hang_up() -> None:
        conn, _ = rude.accept()
        conn.recv(65536)
        conn.close()
    threading.Thread(target=read_then_hang_up, daemon=True).start()
    try:
        client = _client(tmp_path, rude.getsockname()[1])
        with pytest.raises(exception.RegistryReplyLost):
            client.add_image(CONTEXT, {"name": "a"})
    finally:
        rude.close()


def test_a_read_reset_by_a_stopping_registry_is_sent_again_until_it_answers(tmp_path):
    """A stopping registry resets the connections it had accepted but not
    served, as many as came in: reads are sent again with growing pauses."""
    listener = socket.create_server(("127.0.0.1", 0))
    body = json.dumps({"image": {"id": "x"}}).encode()

    def reset_five_then_answer() -> None:
        for served in range(6):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                if served < 5:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))   # close with RST
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    server = threading.Thread(target=reset_five_then_answer, daemon=True)
    server.start()
    try:
        client = _client(tmp_path, listener.getsockname()[1], reconnect_time=30)
        assert client.get_image(CONTEXT, "x") == {"id": "x"}
    finally:
        server.join(timeout=10)
        listener.close()


def test_a_registry_that_does_not_answer_times_out(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        client = _client(tmp_path, silent.getsockname()[1], registry_client_timeout=1)
        with pytest.raises(exception.RegistryUnavailable, match="did not answer in time"):
            client.get_image(CONTEXT, "x")
    finally:
        silent.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "registry.crt", tmp_path / "registry.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_registry_is_verified_against_the_ca_file(tmp_path):
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _serve(tls=tls)
    port = server.server_address[1]
    try:
        trusted = _client(tmp_path, port, registry_client_protocol="https",
                          registry_client_ca_file=str(cert))
        assert trusted.get_images(CONTEXT) == []
        untrusted = _client(tmp_path, port, registry_client_protocol="https")
        with pytest.raises(exception.RegistryUnavailable):
            untrusted.get_images(CONTEXT)
        insecure = _client(tmp_path, port, registry_client_protocol="https",
                           registry_client_insecure=True)
        assert insecure.get_images(CONTEXT) == []
    finally:
        server.shutdown()
