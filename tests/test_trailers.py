"""HTTP trailers: ASGI `http.response.trailers` and RSGI `send_trailers`, read by an HTTP/2
client (h2) and by an HTTP/1.1 client that asks for them (`TE: trailers`)."""

import socket

import pytest

from tests.apps.trailers_apps import CHECKSUM
from tests.rsgi_support import RawH2
from tests.server_support import HOST, ServerPool

APPS = {'rsgi': 'tests.apps.trailers_apps:rsgi_app', 'asgi': 'tests.apps.trailers_apps:asgi_app'}


@pytest.fixture(scope='module', params=sorted(APPS))
def server(request, tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp(f'trailers-{request.param}')) as pool:
        yield pool.start(APPS[request.param], interface=request.param, ready='is serving')


def test_http2_client_gets_the_trailers(server):
    with RawH2(server.port) as conn:
        stream = conn.request('GET', '/', headers=[('te', 'trailers')])
        response = conn.response(stream)
    assert response.status == 200
    assert response.body == b'hello world'
    assert dict(response.trailers) == {'x-checksum': CHECKSUM, 'x-status': '0'}


def _http1(port: int, te: bool) -> bytes:
    head = 'GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n'
    if te:
        head += 'TE: trailers\r\n'
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall((head + '\r\n').encode())
        data = b''
        while piece := sock.recv(65536):
            data += piece
    return data


def _dechunk(data: bytes):
    """The body and the trailer section of a chunked HTTP/1.1 response."""
    head, _, rest = data.partition(b'\r\n\r\n')
    assert b'transfer-encoding: chunked' in head.lower()
    body = b''
    while True:
        size_line, _, rest = rest.partition(b'\r\n')
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    trailer_section = rest[: rest.index(b'\r\n\r\n')] if rest != b'\r\n' else b''
    trailers = {}
    for line in trailer_section.split(b'\r\n'):
        if line:
            name, _, value = line.decode().partition(':')
            trailers[name.strip().lower()] = value.strip()
    return body, trailers


def test_http1_client_that_asks_gets_the_trailers(server):
    body, trailers = _dechunk(_http1(server.port, te=True))
    assert body == b'hello world'
    assert trailers == {'x-checksum': CHECKSUM, 'x-status': '0'}


def test_http1_client_that_does_not_ask_gets_the_body_alone(server):
    body, trailers = _dechunk(_http1(server.port, te=False))
    assert body == b'hello world'
    assert trailers == {}


def test_asgi_scope_advertises_trailers(start_server):
    server = start_server(APPS['asgi'], interface='asgi', ready='is serving')
    import httpx

    assert 'http.response.trailers' in httpx.get(f'{server.url}/scope', timeout=10).text
