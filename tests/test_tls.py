"""HTTPS and mTLS through a real server process, with certificates made by trustme at test time."""

import datetime
import os
import re
import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from granian import Granian
from granian.errors import ConfigurationError

from .server_support import ROOT, ServerPool, ServerProcess, free_port, granian_cmd

HOST = '127.0.0.1'
TIMEOUT = 10
PASSWORD = 'correct horse battery staple'
RSGI = 'tests.apps.rsgi_app:app'
ASGI = 'tests.apps.tls_apps:asgi_app'
WSGI = 'tests.apps.tls_apps:wsgi_app'


# -- certificates ----------------------------------------------------------------------------------------------------


@dataclass
class Certs:
    ca: Path  # the CA clients trust and the server checks client certificates against
    cert: Path  # server certificate (EC key) for 127.0.0.1 and localhost
    key: Path  # its key, PKCS#8
    key_sec1: Path  # the same key, SEC1 ('BEGIN EC PRIVATE KEY')
    key_encrypted: Path  # the same key, encrypted PKCS#8 with PASSWORD
    rsa_cert: Path  # server certificate with an RSA key
    rsa_key_pkcs1: Path  # its key, PKCS#1 ('BEGIN RSA PRIVATE KEY')
    rsa_key_pkcs8: Path  # its key, PKCS#8
    other_key: Path  # a key that belongs to no certificate here
    client: Path  # a client key + certificate issued by the CA
    revoked_client: Path  # another one, revoked by `crl`
    foreign_client: Path  # a client certificate from a CA the server does not know
    crl: Path  # CRL signed by the CA, revoking `revoked_client`
    garbage: Path  # text that is no PEM at all
    corrupt_cert: Path  # a PEM certificate block whose base64 is broken


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _key_pem(key, fmt, encryption=None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption())


@pytest.fixture(scope='session')
def certs(tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp('tls-certs')
    ca = trustme.CA()
    server = ca.issue_cert(HOST, 'localhost')
    rsa_server = ca.issue_cert(HOST, 'localhost', key_type=trustme.KeyType.RSA)
    client = ca.issue_cert('client@example.org')
    revoked = ca.issue_cert('revoked@example.org')
    foreign = trustme.CA().issue_cert('foreign@example.org')

    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    rsa_key = serialization.load_pem_private_key(rsa_server.private_key_pem.bytes(), password=None)
    other_key = serialization.load_pem_private_key(foreign.private_key_pem.bytes(), password=None)
    pkcs8 = serialization.PrivateFormat.PKCS8
    traditional = serialization.PrivateFormat.TraditionalOpenSSL

    # The CRL: issued by the CA (its name, its key), revoking one client certificate.
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    revoked_cert = x509.load_pem_x509_certificate(revoked.cert_chain_pems[0].bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked_cert.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=5))
            .build()
        )
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    cert_pem = server.cert_chain_pems[0].bytes()
    corrupt = b'-----BEGIN CERTIFICATE-----\nMIIB!!!not*base64@@@\n-----END CERTIFICATE-----\n'
    return Certs(
        ca=_write(d / 'ca.pem', ca.cert_pem.bytes()),
        cert=_write(d / 'cert.pem', cert_pem),
        key=_write(d / 'key-pkcs8.pem', _key_pem(key, pkcs8)),
        key_sec1=_write(d / 'key-sec1.pem', _key_pem(key, traditional)),
        key_encrypted=_write(
            d / 'key-encrypted.pem',
            _key_pem(key, pkcs8, serialization.BestAvailableEncryption(PASSWORD.encode())),
        ),
        rsa_cert=_write(d / 'rsa-cert.pem', rsa_server.cert_chain_pems[0].bytes()),
        rsa_key_pkcs1=_write(d / 'rsa-key-pkcs1.pem', _key_pem(rsa_key, traditional)),
        rsa_key_pkcs8=_write(d / 'rsa-key-pkcs8.pem', _key_pem(rsa_key, pkcs8)),
        other_key=_write(d / 'other-key.pem', _key_pem(other_key, pkcs8)),
        client=_write(d / 'client.pem', client.private_key_and_cert_chain_pem.bytes()),
        revoked_client=_write(d / 'revoked.pem', revoked.private_key_and_cert_chain_pem.bytes()),
        foreign_client=_write(d / 'foreign.pem', foreign.private_key_and_cert_chain_pem.bytes()),
        crl=_write(d / 'crl.pem', crl.public_bytes(serialization.Encoding.PEM)),
        garbage=_write(d / 'garbage.pem', b'this is not a PEM file\n'),
        corrupt_cert=_write(d / 'corrupt.pem', corrupt),
    )


def test_generated_key_formats(certs):
    """The fixture really produces the formats the tests claim to exercise."""
    assert certs.key.read_text().startswith('-----BEGIN PRIVATE KEY-----')
    assert certs.key_sec1.read_text().startswith('-----BEGIN EC PRIVATE KEY-----')
    assert certs.key_encrypted.read_text().startswith('-----BEGIN ENCRYPTED PRIVATE KEY-----')
    assert certs.rsa_key_pkcs1.read_text().startswith('-----BEGIN RSA PRIVATE KEY-----')
    assert certs.rsa_key_pkcs8.read_text().startswith('-----BEGIN PRIVATE KEY-----')
    assert certs.crl.read_text().startswith('-----BEGIN X509 CRL-----')


def tls(certs: Certs) -> tuple:
    """The server certificate and key, for `start_server(..., tls=...)`."""
    return certs.cert, certs.key


def tls_args(certs: Certs, *extra: str) -> tuple:
    return ('--ssl-certificate', str(certs.cert), '--ssl-keyfile', str(certs.key), *extra)


# -- clients ---------------------------------------------------------------------------------------------------------


def client_context(certs: Certs, client_cert: Optional[Path] = None, max_version=None, alpn=None) -> ssl.SSLContext:
    """A fresh client context trusting the test CA (httpx sets ALPN on it, so never share one)."""
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert))
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def https_url(server: ServerProcess, path: str = '/') -> str:
    return f'https://{HOST}:{server.port}{path}'


def https_get(server, certs, path='/scope', h2=False, client_cert=None, max_version=None, h1=None) -> httpx.Response:
    """h2=False: HTTP/1.1 only. h2=True: HTTP/2 only (httpx then speaks HTTP/2 whatever ALPN picks).
    h2=True, h1=True: both offered, ALPN decides."""
    ctx = client_context(certs, client_cert=client_cert, max_version=max_version)
    http1 = (not h2) if h1 is None else h1
    with httpx.Client(verify=ctx, http1=http1, http2=h2, timeout=TIMEOUT) as c:
        return c.get(https_url(server, path))


def assert_serves(server, certs, client_cert=None, path='/scope') -> None:
    """Both HTTP versions work over TLS, each negotiated through ALPN."""
    for h2, version in ((False, 'HTTP/1.1'), (True, 'HTTP/2')):
        response = https_get(server, certs, path, h2=h2, client_cert=client_cert)
        assert response.status_code == 200
        assert response.http_version == version


def tls_connect(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


def read_to_eof(sock) -> bytes:
    data = b''
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not chunk:
            break
        data += chunk
    return data


def http1_over(sock) -> bytes:
    sock.sendall(b'GET /scope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    return read_to_eof(sock)


# -- servers ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def server(tmp_path_factory, certs):
    """RSGI over HTTPS with the default settings (HTTP auto, TLS 1.3 minimum, no client certificates)."""
    with ServerPool(tmp_path_factory.mktemp('tls-server')) as pool:
        yield pool.start(RSGI, tls=tls(certs))


# -- HTTPS basics ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('h2', [False, True], ids=['h1', 'h2'])
def test_https_rsgi(server, certs, h2):
    response = https_get(server, certs, h2=h2)
    assert response.status_code == 200
    assert response.http_version == ('HTTP/2' if h2 else 'HTTP/1.1')
    scope = response.json()
    assert scope['scheme'] == 'https'
    assert scope['http_version'] == ('2' if h2 else '1.1')


def test_startup_log_says_https(server):
    assert f'https://127.0.0.1:{server.port}' in server.log


def test_tls13_negotiated_by_default(server, certs):
    with tls_connect(server.port, client_context(certs)) as sock:
        assert sock.version() == 'TLSv1.3'
        assert http1_over(sock).startswith(b'HTTP/1.1 200')


def test_server_prefers_aes128_over_the_clients_aes256(server, certs):
    # OpenSSL clients list TLS_AES_256_GCM_SHA384 first; the server's order picks AES-128.
    ctx = client_context(certs)
    assert ctx.get_ciphers()[0]['name'] == 'TLS_AES_256_GCM_SHA384'
    with tls_connect(server.port, ctx) as sock:
        assert sock.cipher()[0] == 'TLS_AES_128_GCM_SHA256'
        assert http1_over(sock).startswith(b'HTTP/1.1 200')


def test_tls12_refused_when_minimum_is_tls13(server, certs):
    with pytest.raises(ssl.SSLError):
        tls_connect(server.port, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(httpx.ConnectError):
        https_get(server, certs, max_version=ssl.TLSVersion.TLSv1_2)
    assert_serves(server, certs)


def test_untrusted_server_certificate_refused_by_client(server):
    """Sanity check of the client side: without the test CA the certificate is not trusted."""
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(server.port, ctx)


def test_plain_http_to_tls_port_gets_no_http_response(server, certs):
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        data = read_to_eof(sock)
    # At most a TLS alert record, then the connection is closed.
    assert b'HTTP/' not in data
    assert data == b'' or data[0] == 0x15, data
    assert_serves(server, certs)
    # A failed handshake is no error for the server log (it is logged at debug).
    assert 'ERROR' not in server.log
    assert 'Traceback' not in server.log


def test_stalled_handshakes_do_not_block_others(server, certs):
    """Clients that connect and stall (nothing sent, or half a ClientHello) leave the others served."""
    with (
        socket.create_connection((HOST, server.port), timeout=TIMEOUT),
        socket.create_connection((HOST, server.port), timeout=TIMEOUT) as partial,
    ):
        partial.sendall(b'\x16\x03\x01\x00\xff\x01\x00')  # a record header promising 255 bytes, then 2
        assert_serves(server, certs)


def test_a_burst_of_waiting_clients_is_served(server, certs):
    """A TLS listener accepts one client per pass of its runtime: 48 clients queued at once all get answered."""
    raw = [socket.create_connection((HOST, server.port), timeout=TIMEOUT) for _ in range(48)]
    ctx = client_context(certs)

    def request(sock: socket.socket) -> bytes:
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls_sock:
            return http1_over(tls_sock)

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(request, raw))
    finally:
        for sock in raw:
            sock.close()
    assert all(answer.startswith(b'HTTP/1.1 200') for answer in answers)


def test_connection_close_ends_with_close_notify(server, certs):
    """After a `Connection: close` response the server closes TLS cleanly (no truncation)."""
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall(b'GET /scope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
        data = b''
        while chunk := sock.recv(65536):  # an unclean EOF would raise ssl.SSLEOFError
            data += chunk
    assert data.startswith(b'HTTP/1.1 200')


def test_client_certificate_ignored_without_ssl_ca(server, certs):
    """Without --ssl-ca the server asks for no certificate: a client that has one is served."""
    assert_serves(server, certs, client_cert=certs.client)


def test_tls12_accepted_when_minimum_is_tls12(start_server, certs):
    srv = start_server(RSGI, '--ssl-protocol-min', 'tls1.2', tls=tls(certs))
    with tls_connect(srv.port, client_context(certs, max_version=ssl.TLSVersion.TLSv1_2)) as sock:
        assert sock.version() == 'TLSv1.2'
        assert http1_over(sock).startswith(b'HTTP/1.1 200')
    for h2, version in ((False, 'HTTP/1.1'), (True, 'HTTP/2')):
        response = https_get(srv, certs, h2=h2, max_version=ssl.TLSVersion.TLSv1_2)
        assert response.status_code == 200
        assert response.http_version == version
        assert response.json()['scheme'] == 'https'
    # TLS 1.3 still works with a TLS 1.2 minimum.
    with tls_connect(srv.port, client_context(certs)) as sock:
        assert sock.version() == 'TLSv1.3'


# -- key formats -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('cert', 'key', 'password'),
    [
        ('cert', 'key_sec1', None),
        ('rsa_cert', 'rsa_key_pkcs1', None),
        ('rsa_cert', 'rsa_key_pkcs8', None),
        ('cert', 'key_encrypted', PASSWORD),
    ],
    ids=['sec1-ec', 'pkcs1-rsa', 'pkcs8-rsa', 'encrypted-pkcs8'],
)
def test_key_formats(start_server, certs, cert, key, password):
    # PKCS#8 with an EC key is what the module-wide `server` uses.
    args = [] if password is None else ['--ssl-keyfile-password', password]
    srv = start_server(RSGI, *args, tls=(getattr(certs, cert), getattr(certs, key)))
    assert_serves(srv, certs)
    assert https_get(srv, certs).json()['scheme'] == 'https'


# -- mTLS ------------------------------------------------------------------------------------------------------------------


def assert_refused(srv, certs, client_cert=None) -> None:
    """The handshake fails or the connection is dropped: no HTTP response (TLS 1.3 reports a client
    certificate refusal after the client's side of the handshake, at the first read)."""
    for h2 in (False, True):
        with pytest.raises(httpx.TransportError):
            https_get(srv, certs, h2=h2, client_cert=client_cert)


def test_mtls_optional(start_server, certs):
    """--ssl-ca without --ssl-client-verify: certificates are checked when given, not required."""
    srv = start_server(RSGI, '--ssl-ca', str(certs.ca), tls=tls(certs))
    assert_serves(srv, certs)
    assert_serves(srv, certs, client_cert=certs.client)


def test_mtls_optional_still_checks_given_certificates(start_server, certs):
    srv = start_server(RSGI, '--ssl-ca', str(certs.ca), tls=tls(certs))
    assert_refused(srv, certs, client_cert=certs.foreign_client)
    assert_serves(srv, certs)


def test_mtls_required(start_server, certs):
    srv = start_server(RSGI, '--ssl-ca', str(certs.ca), '--ssl-client-verify', tls=tls(certs))
    assert_refused(srv, certs)
    assert_refused(srv, certs, client_cert=certs.foreign_client)
    assert_serves(srv, certs, client_cert=certs.client)
    # Also for a raw TLS 1.3 client: the refusal arrives at the first read at the latest.
    try:
        with tls_connect(srv.port, client_context(certs)) as sock:
            data = http1_over(sock)
    except (ssl.SSLError, ConnectionError):
        data = b''
    assert b'HTTP/' not in data
    assert_serves(srv, certs, client_cert=certs.client)
    assert 'Traceback' not in srv.log


def test_mtls_crl(start_server, certs):
    srv = start_server(
        RSGI, '--ssl-ca', str(certs.ca), '--ssl-crl', str(certs.crl), '--ssl-client-verify', tls=tls(certs)
    )
    assert_refused(srv, certs, client_cert=certs.revoked_client)
    assert_serves(srv, certs, client_cert=certs.client)
    assert_refused(srv, certs)


def test_mtls_crl_optional_verification(start_server, certs):
    """With a CRL but no --ssl-client-verify: anonymous clients are served, revoked certificates still refused."""
    srv = start_server(RSGI, '--ssl-ca', str(certs.ca), '--ssl-crl', str(certs.crl), tls=tls(certs))
    assert_serves(srv, certs)
    assert_serves(srv, certs, client_cert=certs.client)
    assert_refused(srv, certs, client_cert=certs.revoked_client)


def test_certificate_chains_with_intermediate(start_server, tmp_path):
    """The server sends the whole chain from --ssl-certificate; client chains verify up to --ssl-ca."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    server_cert = intermediate.issue_cert(HOST)
    client_cert = intermediate.issue_cert('client@example.org')
    chain = _write(tmp_path / 'chain.pem', b''.join(pem.bytes() for pem in server_cert.cert_chain_pems))
    key = _write(tmp_path / 'key.pem', server_cert.private_key_pem.bytes())
    root_pem = _write(tmp_path / 'root.pem', root.cert_pem.bytes())
    client_pem = _write(tmp_path / 'client.pem', client_cert.private_key_and_cert_chain_pem.bytes())
    assert len(server_cert.cert_chain_pems) == 2
    srv = start_server(RSGI, '--ssl-ca', str(root_pem), '--ssl-client-verify', tls=(chain, key))
    for h2 in (False, True):
        ctx = ssl.create_default_context(cafile=str(root_pem))  # the root only: the server must send the rest
        ctx.load_cert_chain(str(client_pem))
        with httpx.Client(verify=ctx, http1=not h2, http2=h2, timeout=TIMEOUT) as c:
            response = c.get(https_url(srv, '/scope'))
        assert response.status_code == 200
        assert response.json()['scheme'] == 'https'


def test_mtls_crl_repeatable(start_server, certs, tmp_path):
    """--ssl-crl can be given several times; every list counts."""
    other = trustme.CA()
    other_key = serialization.load_pem_private_key(other.private_key_pem.bytes(), password=None)
    other_cert = x509.load_pem_x509_certificate(other.cert_pem.bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    empty_crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(other_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=1))
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(other_key, hashes.SHA256())
    )
    second = _write(tmp_path / 'other-crl.pem', empty_crl.public_bytes(serialization.Encoding.PEM))
    srv = start_server(
        RSGI,
        *('--ssl-ca', str(certs.ca), '--ssl-crl', str(second), '--ssl-crl', str(certs.crl), '--ssl-client-verify'),
        tls=tls(certs),
    )
    assert_refused(srv, certs, client_cert=certs.revoked_client)
    assert_serves(srv, certs, client_cert=certs.client)


# -- other interfaces --------------------------------------------------------------------------------------------------


def test_asgi_scope_scheme_https(start_server, certs):
    srv = start_server(ASGI, tls=tls(certs), interface='asgi')
    for h2, version in ((False, '1.1'), (True, '2')):
        response = https_get(srv, certs, path='/', h2=h2)
        assert response.status_code == 200
        assert response.json() == {'scheme': 'https', 'http_version': version}


def test_wsgi_url_scheme_https(start_server, certs):
    srv = start_server(WSGI, tls=tls(certs), interface='wsgi')
    for h2, protocol in ((False, 'HTTP/1.1'), (True, 'HTTP/2')):
        response = https_get(srv, certs, path='/', h2=h2)
        assert response.status_code == 200
        assert response.http_version == protocol
        assert response.json()['scheme'] == 'https'


# -- ALPN ---------------------------------------------------------------------------------------------------------------------


def test_alpn_http1_only(start_server, certs):
    srv = start_server(RSGI, '--http', '1', tls=tls(certs))
    # An h2-only client: either it falls back to HTTP/1.1 or the negotiation fails cleanly.
    try:
        sock = tls_connect(srv.port, client_context(certs, alpn=['h2']))
    except ssl.SSLError:
        pass
    else:
        with sock:
            assert sock.selected_alpn_protocol() in (None, 'http/1.1')
            assert http1_over(sock).startswith(b'HTTP/1.1 200')
    # httpx offering HTTP/1.1 alone, or both versions, gets HTTP/1.1.
    for h2 in (False, True):
        response = https_get(srv, certs, h2=h2, h1=True)
        assert response.status_code == 200
        assert response.http_version == 'HTTP/1.1'
        assert response.json()['scheme'] == 'https'
    with tls_connect(srv.port, client_context(certs, alpn=['h2', 'http/1.1'])) as sock:
        assert sock.selected_alpn_protocol() == 'http/1.1'


def test_alpn_http2_only(start_server, certs):
    srv = start_server(RSGI, '--http', '2', tls=tls(certs))
    # httpx offers both versions and ALPN picks HTTP/2.
    response = https_get(srv, certs, h2=True, h1=True)
    assert response.status_code == 200
    assert response.http_version == 'HTTP/2'
    assert response.json()['scheme'] == 'https'
    with tls_connect(srv.port, client_context(certs, alpn=['h2', 'http/1.1'])) as sock:
        assert sock.selected_alpn_protocol() == 'h2'


def test_alpn_auto_prefers_h2(server, certs):
    response = https_get(server, certs, h2=True, h1=True)
    assert response.http_version == 'HTTP/2'
    with tls_connect(server.port, client_context(certs, alpn=['http/1.1', 'h2'])) as sock:
        assert sock.selected_alpn_protocol() == 'h2'
    with tls_connect(server.port, client_context(certs, alpn=['http/1.1'])) as sock:
        assert sock.selected_alpn_protocol() == 'http/1.1'


# -- start-up errors -----------------------------------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith('GRANIAN_')}
    env['PYTHONUNBUFFERED'] = '1'
    return subprocess.run(
        granian_cmd('--port', str(free_port()), *args, RSGI),
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_usage_error(result: subprocess.CompletedProcess, options: tuple, problem: str) -> str:
    """Exit code 2 and exactly one error line, naming the option (any of its spellings) and the problem."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert 'Traceback' not in output, output
    assert 'Listening at' not in output, output
    errors = [line for line in output.splitlines() if 'Error' in line]
    assert len(errors) == 1, output
    line = errors[0]
    assert any(option in line for option in options), line
    assert re.search(problem, line, re.IGNORECASE), line
    return line


def _startup_cases():
    # (id, args builder, option spellings, problem regex)
    return [
        (
            'wrong-password',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.key_encrypted, '--ssl-keyfile-password', 'nope'),
            ('--ssl-keyfile-password',),
            r'wrong password',
        ),
        (
            'missing-password',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.key_encrypted),
            ('--ssl-keyfile',),
            r'encrypted.*password',
        ),
        (
            'key-does-not-match-cert',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.other_key),
            ('--ssl-keyfile',),
            r'does not (fit|match)|mismatch',
        ),
        (
            'rsa-key-for-ec-cert',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.rsa_key_pkcs1),
            ('--ssl-keyfile',),
            r'does not (fit|match)|mismatch',
        ),
        (
            'missing-cert-file',
            lambda c: ('--ssl-certificate', c.ca.parent / 'nope.pem', '--ssl-keyfile', c.key),
            ('--ssl-certificate',),
            r'does not exist',
        ),
        (
            'missing-key-file',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.ca.parent / 'nope.pem'),
            ('--ssl-keyfile',),
            r'does not exist',
        ),
        (
            'missing-ca-file',
            lambda c: (*tls_args(c), '--ssl-ca', c.ca.parent / 'nope.pem'),
            ('--ssl-ca',),
            r'does not exist',
        ),
        (
            'missing-crl-file',
            lambda c: (*tls_args(c), '--ssl-ca', c.ca, '--ssl-crl', c.ca.parent / 'nope.pem'),
            ('--ssl-crl',),
            r'does not exist',
        ),
        (
            'cert-is-a-directory',
            lambda c: ('--ssl-certificate', c.ca.parent, '--ssl-keyfile', c.key),
            ('--ssl-certificate',),
            r'directory',
        ),
        (
            'cert-not-pem',
            lambda c: ('--ssl-certificate', c.garbage, '--ssl-keyfile', c.key),
            ('--ssl-certificate',),
            r'no certificate|not valid PEM|invalid',
        ),
        (
            'cert-corrupt-pem',
            lambda c: ('--ssl-certificate', c.corrupt_cert, '--ssl-keyfile', c.key),
            ('--ssl-certificate',),
            r'no certificate|not valid PEM|invalid',
        ),
        (
            'cert-file-holds-a-key',
            lambda c: ('--ssl-certificate', c.key, '--ssl-keyfile', c.key),
            ('--ssl-certificate',),
            r'no certificate',
        ),
        (
            'key-not-pem',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.garbage),
            ('--ssl-keyfile',),
            r'no private key|not valid PEM|invalid',
        ),
        (
            'key-file-holds-a-cert',
            lambda c: ('--ssl-certificate', c.cert, '--ssl-keyfile', c.cert),
            ('--ssl-keyfile',),
            r'no private key',
        ),
        (
            'ca-not-pem',
            lambda c: (*tls_args(c), '--ssl-ca', c.garbage),
            ('--ssl-ca',),
            r'no certificate|not valid PEM|invalid',
        ),
        (
            'crl-not-pem',
            lambda c: (*tls_args(c), '--ssl-ca', c.ca, '--ssl-crl', c.garbage),
            ('--ssl-crl',),
            r'no CRL|not valid PEM|invalid',
        ),
        (
            'cert-without-key',
            lambda c: ('--ssl-certificate', c.cert),
            ('--ssl-keyfile', 'ssl_key'),
            r'needs both|requires|missing',
        ),
        (
            'key-without-cert',
            lambda c: ('--ssl-keyfile', c.key),
            ('--ssl-certificate', 'ssl_cert'),
            r'needs both|requires|missing',
        ),
        (
            'client-verify-without-ca',
            lambda c: (*tls_args(c), '--ssl-client-verify'),
            ('--ssl-client-verify', 'ssl_client_verify'),
            r'needs|requires',
        ),
        (
            'crl-without-ca',
            lambda c: (*tls_args(c), '--ssl-crl', c.crl),
            ('--ssl-crl', 'ssl_crl'),
            r'needs|requires',
        ),
        (
            'ca-without-cert',
            lambda c: ('--ssl-ca', c.ca),
            ('--ssl-ca', 'ssl_ca'),
            r'needs|requires',
        ),
    ]


@pytest.mark.parametrize(
    ('make_args', 'options', 'problem'),
    [case[1:] for case in _startup_cases()],
    ids=[case[0] for case in _startup_cases()],
)
def test_startup_errors(certs, make_args, options, problem):
    result = run_cli(*(str(arg) for arg in make_args(certs)))
    assert_usage_error(result, options, problem)


def test_embedded_api_refuses_wrong_password(certs):
    """Granian(...) itself checks the TLS files, before serving anything."""
    with pytest.raises(ConfigurationError, match='--ssl-keyfile-password: wrong password'):
        Granian(RSGI, ssl_cert=certs.cert, ssl_key=certs.key_encrypted, ssl_key_password='nope')
    with pytest.raises(ConfigurationError, match='--ssl-keyfile'):
        Granian(RSGI, ssl_cert=certs.cert, ssl_key=certs.other_key)
    server = Granian(RSGI, ssl_cert=certs.cert, ssl_key=certs.key_encrypted, ssl_key_password=PASSWORD)
    assert server.scheme == 'https'
