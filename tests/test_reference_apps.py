"""Apps written against granian 2.8.7's documented API start and serve on ours, and on the reference.

The apps (tests/apps/reference_rsgi.py, reference_asgi.py, reference_wsgi.py) use only what granian 2.8.7
documents: the RSGI spec and the types `granian.rsgi` exports, plain ASGI 3 and plain WSGI. They know
nothing of the server that runs them, so the same apps and the same assertions hold for both servers.

Which server runs them:

    GRANIAN_COMPAT_BIN unset    ours, `python -m granian` (as the `start_server` fixture starts it)
    GRANIAN_COMPAT_BIN=PATH     the `granian` executable at PATH, e.g. the reference granian 2.8.7:

        GRANIAN_COMPAT_BIN=/tmp/refvenv/bin/granian .venv/bin/pytest tests/test_reference_apps.py

Every test passes on the reference, which shows the apps and the assertions are right for a real
granian user; on ours, a failure is a compatibility gap. Left out because granian 2.8.7 lacks it, so its
users cannot rely on it: the WSGI `write()` callable (its start_response returns None).
"""

import hashlib
import json
import os
import signal
import subprocess
import uuid
from contextlib import contextmanager

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as ws_connect

from .rsgi_support import HOST, TIMEOUT, RawHTTP1, http_client, request_bytes, wait_for
from .server_support import ServerPool, ServerProcess

COMPAT_BIN = os.environ.get('GRANIAN_COMPAT_BIN')
APPS = {
    'rsgi': 'tests.apps.reference_rsgi:app',
    'asgi': 'tests.apps.reference_asgi:app',
    'wsgi': 'tests.apps.reference_wsgi:app',
}


# -- servers and clients -----------------------------------------------------------------------------------------


def answers(server: ServerProcess) -> bool:
    """The app answers a request (its 404): the port listens before a worker has loaded the app."""
    try:
        return httpx.get(f'{server.url}/not-a-route', timeout=TIMEOUT).status_code == 404
    except httpx.TransportError:
        return False


def launch(pool: ServerPool, interface: str, env=None) -> ServerProcess:
    """The app for `interface` on a free port, served by the selected granian, once it answers."""
    program = [COMPAT_BIN] if COMPAT_BIN else None
    return pool.start(APPS[interface], interface=interface, env=env, program=program, ready=answers)


def stop_gracefully(server: ServerProcess) -> None:
    """SIGTERM, then wait for the server to exit on its own (its shutdown hooks run on the way out)."""
    server.signal(signal.SIGTERM)
    try:
        server.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        server.stop()
        raise AssertionError(f'the server did not exit on SIGTERM\n--- server log ---\n{server.log}') from None


@pytest.fixture(scope='module')
def servers(tmp_path_factory):
    """One server per interface, started on first use and shared by the module's tests."""
    started = {}
    failed = {}

    with ServerPool(tmp_path_factory.mktemp('reference')) as pool:

        def get(interface: str) -> ServerProcess:
            if interface in failed:
                raise RuntimeError(failed[interface])
            if interface not in started:
                try:
                    started[interface] = launch(pool, interface)
                except RuntimeError as exc:
                    failed[interface] = str(exc)
                    raise
            return started[interface]

        yield get


@pytest.fixture
def rsgi(servers):
    return servers('rsgi')


@pytest.fixture
def asgi(servers):
    return servers('asgi')


@pytest.fixture
def wsgi(servers):
    return servers('wsgi')


@pytest.fixture(params=['h1', 'h2'])
def version(request):
    """HTTP/1.1, or HTTP/2 with prior knowledge (h2c)."""
    return request.param


@contextmanager
def http(server: ServerProcess, version: str):
    with http_client(server.url, version) as client:
        yield client


def request(server: ServerProcess, version: str, method: str, path: str, **kwargs) -> httpx.Response:
    """One request over `version`, checking the response came back over that version."""
    with http(server, version) as client:
        response = client.request(method, path, **kwargs)
        assert response.http_version == client.expected_version
        return response


def scope_version(version: str) -> str:
    return '2' if version == 'h2' else '1.1'


def ws(server: ServerProcess, path: str):
    """The sync `websockets` client: no proxy from the environment, no keepalive pings."""
    return ws_connect(
        f'ws://{HOST}:{server.port}{path}',
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
        proxy=None,
    )


def recorded(server: ServerProcess, key: str):
    """What the app recorded under `key`, waiting until it has recorded something."""

    def fetch():
        return httpx.get(f'{server.url}/recorded', params={'id': key}, timeout=TIMEOUT).json()

    return wait_for(fetch, timeout=TIMEOUT, what=f'the app to record {key}')


def chunked(data: bytes, size: int):
    """A request body in pieces (HTTP/1.1 sends it chunked, HTTP/2 in several DATA frames)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / 'payload.bin'
    path.write_bytes(data)
    return path, data


# -- RSGI: HTTP --------------------------------------------------------------------------------------------------


def test_rsgi_scope(rsgi, version):
    response = request(rsgi, version, 'GET', '/scope?a=1&b=two', headers=[('x-one', '1'), ('X-Two', 'Two')])
    assert response.status_code == 200
    scope = response.json()
    assert scope['proto'] == 'http'
    assert scope['rsgi_version'] == '1.6'
    assert scope['http_version'] == scope_version(version)
    assert scope['method'] == 'GET'
    assert scope['scheme'] == 'http'
    assert scope['path'] == '/scope'
    assert scope['query_string'] == 'a=1&b=two'
    assert scope['server'] == f'127.0.0.1:{rsgi.port}'
    client_host, _, client_port = scope['client'].rpartition(':')
    assert client_host == '127.0.0.1'
    assert 0 < int(client_port) < 65536
    if version == 'h2':
        assert scope['authority'] == f'127.0.0.1:{rsgi.port}'
    else:
        assert scope['authority'] is None
    assert ['x-one', '1'] in scope['items']
    assert ['x-two', 'Two'] in scope['items']
    assert all(name == name.lower() for name in scope['keys'])
    assert {'x-one', 'x-two', 'user-agent'} <= set(scope['keys'])
    assert {'1', 'Two'} <= set(scope['values'])
    assert scope['x_one'] == '1'
    assert scope['x_missing'] is None
    assert scope['x_missing_default'] == 'fallback'
    assert scope['has_x_one'] is True
    assert scope['has_x_missing'] is False
    assert scope['user_agent'] == f'python-httpx/{httpx.__version__}'


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH'])
def test_rsgi_scope_method(rsgi, method):
    scope = request(rsgi, 'h1', method, '/scope').json()
    assert scope['method'] == method


def test_rsgi_response_empty(rsgi, version):
    response = request(rsgi, version, 'GET', '/response/empty')
    assert response.status_code == 204
    assert response.headers['x-kind'] == 'empty'
    assert response.content == b''


def test_rsgi_response_str(rsgi, version):
    response = request(rsgi, version, 'GET', '/response/str')
    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/plain; charset=utf-8'
    assert response.text == 'héllo wörld ✓ 日本語'
    assert int(response.headers['content-length']) == len('héllo wörld ✓ 日本語'.encode())


def test_rsgi_response_bytes(rsgi, version):
    response = request(rsgi, version, 'GET', '/response/bytes', params={'size': 65536})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.content == bytes(range(256)) * 256


def test_rsgi_response_keyword_arguments(rsgi, version):
    response = request(rsgi, version, 'GET', '/response/kwargs')
    assert response.status_code == 201
    assert response.headers['x-kind'] == 'kwargs'
    assert response.headers['content-type'] == 'text/plain'
    assert response.text == 'made'


@pytest.mark.parametrize(
    ('kind', 'body'),
    [('empty', b''), ('str', b'default str'), ('bytes', b'default bytes'), ('stream', b'default stream')],
)
def test_rsgi_response_default_status_and_headers(rsgi, version, kind, body):
    response = request(rsgi, version, 'GET', f'/response/default-{kind}')
    assert response.status_code == 200
    assert response.content == body


def test_rsgi_response_file(rsgi, version, data_file):
    path, data = data_file
    response = request(rsgi, version, 'GET', '/file', params={'path': str(path)})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.content == data


def test_rsgi_response_file_missing_is_404(rsgi, version, tmp_path):
    response = request(rsgi, version, 'GET', '/file', params={'path': str(tmp_path / 'missing.bin')})
    assert response.status_code == 404
    assert response.text == 'Not found'


@pytest.mark.parametrize(('start', 'end'), [(0, 1), (10, 25), (1000, 299_999), (0, 300_000)])
def test_rsgi_response_file_range(rsgi, version, data_file, start, end):
    path, data = data_file
    params = {'path': str(path), 'start': start, 'end': end}
    response = request(rsgi, version, 'GET', '/file-range', params=params)
    assert response.status_code == 206
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.content == data[start:end]


def test_rsgi_response_stream(rsgi, version):
    response = request(rsgi, version, 'GET', '/stream', params={'n': 4})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/plain; charset=utf-8'
    assert response.text == ''.join(f'bytes-{i};str-{i}-✓;' for i in range(4))
    if version == 'h1':
        assert response.headers['transfer-encoding'] == 'chunked'


@pytest.mark.parametrize('size', [0, 11, 250_000])
def test_rsgi_body_with_call(rsgi, version, size):
    body = os.urandom(size)
    response = request(rsgi, version, 'POST', '/body/call', content=body)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers['x-sha256'] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize('size', [0, 250_000])
def test_rsgi_body_with_async_for(rsgi, version, size):
    body = os.urandom(size)
    response = request(rsgi, version, 'POST', '/body/iter', content=body)
    info = response.json()
    assert info['size'] == size
    assert info['sha256'] == hashlib.sha256(body).hexdigest()


def test_rsgi_body_with_async_for_sent_in_pieces(rsgi, version):
    body = os.urandom(300_000)
    response = request(rsgi, version, 'POST', '/body/iter', content=chunked(body, 16_384))
    info = response.json()
    assert info['size'] == len(body)
    assert info['sha256'] == hashlib.sha256(body).hexdigest()
    assert info['chunks'] >= 1


def test_rsgi_second_body_read_raises_protocol_error(rsgi, version):
    response = request(rsgi, version, 'POST', '/body/twice', content=b'payload')
    assert response.status_code == 200
    assert response.json() == {'first': 'payload', 'second': {'error': 'ProtocolError', 'is_runtime_error': True}}


def test_rsgi_stream_to_a_gone_client_raises_protocol_closed(rsgi):
    key = uuid.uuid4().hex
    with RawHTTP1(rsgi.port) as conn:
        conn.send(request_bytes('GET', f'/stream-until-gone?id={key}'))
        head = conn.read_head()
        assert head.status == 200
        conn.read_until(b'zzzz')
    assert recorded(rsgi, key) == {'ended_by': 'ProtocolClosed', 'is_runtime_error': True, 'sent_some': True}


def test_rsgi_init_hook_ran_with_the_serving_loop(rsgi, version):
    info = request(rsgi, version, 'GET', '/lifecycle').json()
    assert info['init_calls'] == 1
    assert info['is_event_loop'] is True
    assert info['running_on_init_loop'] is True
    assert info['requests'] >= 1


def test_rsgi_del_hook_runs_on_shutdown(server_pool, tmp_path):
    out = tmp_path / 'rsgi-del.json'
    server = launch(server_pool, 'rsgi', env={'REFERENCE_RSGI_DEL_FILE': str(out)})
    try:
        info = httpx.get(f'{server.url}/lifecycle', timeout=TIMEOUT).json()
        assert info['init_calls'] == 1
        assert not out.exists()
    finally:
        stop_gracefully(server)
    assert out.exists(), f'__rsgi_del__ did not run\n--- server log ---\n{server.log}'
    seen = json.loads(out.read_text())
    expected = {'init_calls': 1, 'requests': info['requests'], 'same_loop_as_init': True, 'is_event_loop': True}
    assert seen == expected


# -- RSGI: websockets --------------------------------------------------------------------------------------------


def assert_echoes(conn, *messages) -> None:
    for message in messages:
        conn.send(message)
        assert conn.recv() == message


def test_rsgi_ws_echo(rsgi):
    with ws(rsgi, '/ws/echo') as conn:
        assert_echoes(conn, 'héllo ✓', b'\x00\x01\xfe\xff', os.urandom(200_000), '')


def test_rsgi_ws_scope(rsgi):
    with ws(rsgi, '/ws/scope?room=7') as conn:
        scope = json.loads(conn.recv())
    assert scope['proto'] == 'ws'
    assert scope['http_version'] == '1.1'
    assert scope['method'] == 'GET'
    assert scope['scheme'] == 'http'
    assert scope['path'] == '/ws/scope'
    assert scope['query_string'] == 'room=7'
    assert scope['server'] == f'127.0.0.1:{rsgi.port}'
    assert scope['client'].rpartition(':')[0] == '127.0.0.1'
    assert scope['keys'] and all(name == name.lower() for name in scope['keys'])
    assert scope['has_x_missing'] is False
    assert dict(scope['items'])['upgrade'].lower() == 'websocket'


def test_rsgi_ws_close_before_accept_rejects_with_that_status(rsgi):
    with pytest.raises(InvalidStatus) as excinfo, ws(rsgi, '/ws/reject'):
        pass
    assert excinfo.value.response.status_code == 403


def test_rsgi_ws_server_close(rsgi):
    with ws(rsgi, '/ws/server-close') as conn:
        assert conn.recv() == 'bye'
        with pytest.raises(ConnectionClosedOK):
            conn.recv()


def test_rsgi_ws_transport_after_client_close_raises_protocol_closed(rsgi):
    key = uuid.uuid4().hex
    with ws(rsgi, f'/ws/after-close?id={key}'):
        pass
    assert recorded(rsgi, key) == {'first_kind_is_close': True, 'send': 'ProtocolClosed', 'receive': 'ProtocolClosed'}


# -- ASGI --------------------------------------------------------------------------------------------------------


def test_asgi_scope(asgi, version):
    response = request(asgi, version, 'GET', '/scope?a=1&b=two', headers=[('x-one', '1')])
    assert response.status_code == 200
    scope = response.json()
    assert scope['type'] == 'http'
    assert scope['asgi']['version'] == '3.0'
    assert scope['http_version'] == scope_version(version)
    assert scope['method'] == 'GET'
    assert scope['scheme'] == 'http'
    assert scope['path'] == '/scope'
    assert scope['raw_path'] == '/scope'
    assert scope['query_string'] == 'a=1&b=two'
    assert scope['root_path'] == ''
    assert ['x-one', '1'] in scope['headers']
    assert ['user-agent', f'python-httpx/{httpx.__version__}'] in scope['headers']
    # On HTTP/2 the host comes as `:authority`: it is in the headers all the same, once.
    assert [value for name, value in scope['headers'] if name == 'host'] == [f'127.0.0.1:{asgi.port}']
    assert scope['client'][0] == '127.0.0.1'
    # The ASGI spec says the port is an int; granian 2.8.7 gives a str: either passes here.
    assert [scope['server'][0], str(scope['server'][1])] == ['127.0.0.1', str(asgi.port)]
    assert scope['state_greeting'] == 'hello from startup'
    assert scope['state_counter'] == 1


def test_asgi_body_received_in_messages(asgi, version):
    body = os.urandom(300_000)
    response = request(asgi, version, 'POST', '/body', content=chunked(body, 16_384))
    assert response.status_code == 200
    assert response.text == f'size={len(body)};sha256={hashlib.sha256(body).hexdigest()};end'


def test_asgi_empty_body(asgi, version):
    response = request(asgi, version, 'POST', '/body')
    assert response.text == f'size=0;sha256={hashlib.sha256(b"").hexdigest()};end'


def test_asgi_streamed_response(asgi, version):
    response = request(asgi, version, 'GET', '/stream', params={'n': 6})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/plain'
    assert response.text == ''.join(f'part-{i};' for i in range(6))
    if version == 'h1':
        assert response.headers['transfer-encoding'] == 'chunked'


def test_asgi_state_is_a_copy_per_request(asgi):
    assert request(asgi, 'h1', 'GET', '/state-mutate').json() == {'mutated': True}
    scope = request(asgi, 'h1', 'GET', '/scope').json()
    assert scope['state_greeting'] == 'hello from startup'
    assert scope['state_counter'] == 1


def test_asgi_ws_echo(asgi):
    with ws(asgi, '/ws/echo') as conn:
        assert_echoes(conn, 'héllo ✓', b'\x00\x01\xfe\xff', os.urandom(200_000))


def test_asgi_ws_close_code_and_reason(asgi):
    with ws(asgi, '/ws/close') as conn:
        assert conn.recv() == 'bye'
        with pytest.raises(ConnectionClosed) as excinfo:
            conn.recv()
    assert excinfo.value.rcvd is not None
    assert (excinfo.value.rcvd.code, excinfo.value.rcvd.reason) == (4000, 'done')


def test_asgi_ws_close_before_accept_rejects(asgi):
    with pytest.raises(InvalidStatus) as excinfo, ws(asgi, '/ws/reject'):
        pass
    assert excinfo.value.response.status_code == 403


def test_asgi_lifespan_startup_and_shutdown(server_pool, tmp_path):
    out = tmp_path / 'asgi-shutdown.json'
    server = launch(server_pool, 'asgi', env={'REFERENCE_ASGI_SHUTDOWN_FILE': str(out)})
    try:
        scope = httpx.get(f'{server.url}/scope', timeout=TIMEOUT).json()
        assert scope['state_greeting'] == 'hello from startup'
        assert scope['lifespan']['startups'] == 1
        assert scope['lifespan']['shutdowns'] == 0
        assert not out.exists()
    finally:
        stop_gracefully(server)
    assert out.exists(), f'the lifespan shutdown did not run\n--- server log ---\n{server.log}'
    assert json.loads(out.read_text()) == {'startups': 1, 'shutdowns': 1, 'requests': scope['lifespan']['requests']}


# -- WSGI --------------------------------------------------------------------------------------------------------


def test_wsgi_environ(wsgi, version):
    response = request(wsgi, version, 'GET', '/environ?a=1&b=two', headers=[('x-one', '1')])
    assert response.status_code == 200
    environ = response.json()
    assert environ['REQUEST_METHOD'] == 'GET'
    assert environ['SCRIPT_NAME'] == ''
    assert environ['PATH_INFO'] == '/environ'
    assert environ['QUERY_STRING'] == 'a=1&b=two'
    assert environ['SERVER_PROTOCOL'] == f'HTTP/{scope_version(version)}'
    assert environ['SERVER_PORT'] == str(wsgi.port)
    assert environ['REMOTE_ADDR'] == '127.0.0.1'
    assert environ['HTTP_X_ONE'] == '1'
    assert environ['wsgi.url_scheme'] == 'http'
    assert environ['wsgi.version'] == [1, 0]
    assert environ['has_input'] is True
    assert environ['has_errors'] is True
    assert environ['all_str'] is True


def test_wsgi_environ_post(wsgi, version):
    response = request(wsgi, version, 'POST', '/environ', content=b'abc', headers=[('content-type', 'text/x-test')])
    environ = response.json()
    assert environ['REQUEST_METHOD'] == 'POST'
    assert environ['CONTENT_TYPE'] == 'text/x-test'
    assert environ['CONTENT_LENGTH'] == '3'


@pytest.mark.parametrize('piece', [1, 4096, 1_000_000])
def test_wsgi_input_read(wsgi, version, piece):
    body = os.urandom(20_000 if piece == 1 else 250_000)
    response = request(wsgi, version, 'POST', '/input', params={'piece': piece}, content=body)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers['x-sha256'] == hashlib.sha256(body).hexdigest()


def test_wsgi_iterable_response(wsgi, version):
    response = request(wsgi, version, 'GET', '/iterable')
    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/plain'
    assert response.content == b'first;second;third'


def test_wsgi_iterable_close_is_called(wsgi, version):
    key = uuid.uuid4().hex
    response = request(wsgi, version, 'GET', '/generator', params={'id': key})
    assert response.status_code == 200
    assert response.content == b'gen-1;gen-2;gen-3'
    assert recorded(wsgi, key) == ['closed']


def test_wsgi_generator_response(wsgi, version):
    key = uuid.uuid4().hex
    response = request(wsgi, version, 'GET', '/plain-generator', params={'id': key, 'n': 50})
    assert response.status_code == 200
    assert response.content == b''.join(f'part-{i};'.encode() for i in range(50))
    assert recorded(wsgi, key) == ['sent 50']


def test_wsgi_not_found(wsgi, version):
    response = request(wsgi, version, 'GET', '/nowhere')
    assert response.status_code == 404
    assert response.content == b'not found'


# -- the server's name ------------------------------------------------------------------------------------------


@pytest.mark.parametrize('interface', ['rsgi', 'asgi', 'wsgi'])
def test_responses_name_the_server_unless_the_app_did(servers, interface, version):
    server = servers(interface)
    with http(server, version) as client:
        assert client.get('/nowhere').headers.get_list('server') == ['granian']
        assert client.get('/own-server').headers.get_list('server') == ['reference-app']


def test_websocket_handshake_names_no_server(rsgi):
    with ws(rsgi, '/ws/echo') as conn:
        assert conn.response.status_code == 101
        assert conn.response.headers.get_all('server') == []
