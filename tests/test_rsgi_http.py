"""RSGI over HTTP/1.1 and HTTP/2 (h2c prior knowledge), through a real server process and real clients."""

import json
import os
import re
import signal

import httpx
import pytest
from h2.exceptions import ProtocolError as H2ProtocolError

from .rsgi_support import TIMEOUT, RawH2, RawHTTP1, get, request_bytes, wait_for
from .server_support import ServerPool

EXTRA = 'tests.apps.rsgi_extra:app'
NO_RESPONSE = 'Application returned without sending a response: answering 500'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """One server for the tests that need no special option (each test uses its own ids and data)."""
    with ServerPool(tmp_path_factory.mktemp('rsgi-http')) as pool:
        yield pool.start(EXTRA)


def assert_still_serving(server) -> None:
    for h2 in (False, True):
        with httpx.Client(timeout=TIMEOUT, http1=not h2, http2=h2) as c:
            response = c.get(server.url + '/')
            assert response.status_code == 200
            assert response.text == 'Hello, world!'


def events(server) -> dict:
    return httpx.get(server.url + '/events', timeout=TIMEOUT).json()


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(100_000)
    path = tmp_path / 'data.bin'
    path.write_bytes(data)
    return path, data


# -- scope --------------------------------------------------------------------------------------------------


def test_scope_fields(client, server):
    headers = [('x-multi', 'a'), ('x-multi', 'b'), ('X-Custom', 'Value')]
    response = get(client, '/scope/some/path', params={'a': '1', 'b': 'x y'}, headers=headers)
    assert response.status_code == 200
    scope = response.json()
    assert scope['proto'] == 'http'
    assert scope['rsgi_version'] == '1.6'
    assert scope['http_version'] == client.scope_version
    assert scope['server'] == f'127.0.0.1:{server.port}'
    client_host, _, client_port = scope['client'].rpartition(':')
    assert client_host == '127.0.0.1'
    assert 0 < int(client_port) < 65536
    assert int(client_port) != server.port
    assert scope['scheme'] == 'http'
    assert scope['method'] == 'GET'
    assert scope['path'] == '/scope/some/path'
    assert scope['query_string'] == 'a=1&b=x+y'
    if client.scope_version == '2':
        assert scope['authority'] == f'127.0.0.1:{server.port}'
    else:
        assert scope['authority'] is None
        assert scope['has_host'] is True
    assert scope['accept_all'] == ['a', 'b']
    assert scope['missing'] == 'fallback'
    names = [name for name, _ in scope['headers']]
    assert all(name == name.lower() for name in names)
    assert ['x-custom', 'Value'] in scope['headers']
    assert ['user-agent', f'python-httpx/{httpx.__version__}'] in scope['headers']
    assert scope['header_len'] == len(scope['header_keys'])
    assert 'x-multi' in scope['header_keys']


def test_scope_headers_api(client):
    response = get(client, '/headers-api', headers=[('x-multi', 'a'), ('x-multi', 'b'), ('x-one', '1')])
    info = response.json()
    assert info['get_all_multi'] == ['a', 'b']
    assert info['get_all_missing'] == []
    assert info['get_multi'] in ('a', 'b')
    assert info['get_missing'] is None
    assert info['get_default'] == 'dflt'
    assert info['contains_multi'] is True
    assert info['contains_missing'] is False
    assert info['iter'] == info['keys']
    assert info['len'] == len(info['keys'])
    assert len(set(info['keys'])) == len(info['keys'])
    assert 'x-one' in info['keys']
    assert ['x-one', '1'] in info['items']
    assert '1' in info['values']
    assert {name for name, _ in info['items']} == set(info['keys'])


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
def test_scope_methods(client, method):
    response = client.request(method, '/scope')
    assert response.http_version == client.expected_version
    assert response.json()['method'] == method


def test_scope_custom_method(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('PURGE', '/scope'))
        assert json.loads(conn.read_response().body)['method'] == 'PURGE'


def test_scope_path_percent_decoded(client):
    scope = get(client, '/scope/a%20b/%C3%A9t%C3%A9', params={'q': 'a b'}).json()
    assert scope['path'] == '/scope/a b/été'
    assert scope['query_string'] == 'q=a+b'


def test_scope_query_string_raw_and_empty(client):
    scope = get(client, '/scope?x=%20&y=%2F&flag').json()
    assert scope['query_string'] == 'x=%20&y=%2F&flag'
    assert get(client, '/scope').json()['query_string'] == ''


def test_scope_path_invalid_utf8_is_replaced(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/scope%FF/x%C3'))
        response = conn.read_response()
    assert response.status == 200
    assert json.loads(response.body)['path'] == '/scope\ufffd/x\ufffd'


def test_scope_http10(server):
    with RawHTTP1(server.port) as conn:
        conn.send(b'GET /scope HTTP/1.0\r\nHost: test\r\n\r\n')
        response = conn.read_response()
    assert response.status == 200
    assert json.loads(response.body)['http_version'] == '1'


def test_scope_client_port_matches_socket(server):
    with RawHTTP1(server.port) as conn:
        local_port = conn.sock.getsockname()[1]
        conn.send(request_bytes('GET', '/scope'))
        scope = json.loads(conn.read_response().body)
    assert scope['client'] == f'127.0.0.1:{local_port}'


def test_scope_h2_raw_authority(server):
    with RawH2(server.port) as conn:
        stream = conn.request('GET', '/scope?raw=1', headers=[('x-multi', 'z')])
        response = conn.response(stream)
    assert response.status == 200
    scope = json.loads(response.body)
    assert scope['http_version'] == '2'
    assert scope['authority'] == '127.0.0.1'
    assert scope['query_string'] == 'raw=1'
    assert scope['accept_all'] == ['z']


# -- request bodies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize('size', [0, 1, 65_536, 3 * 1024 * 1024 + 7])
def test_body_whole(client, size):
    body = os.urandom(size)
    response = client.post('/echo', content=body)
    assert response.http_version == client.expected_version
    assert response.status_code == 200
    assert response.content == body


def test_body_whole_chunked_upload(client):
    parts = [os.urandom(1000 + i) for i in range(50)]
    response = client.post('/echo', content=iter(parts))
    assert response.http_version == client.expected_version
    assert response.content == b''.join(parts)


def test_body_in_chunks(client):
    body = os.urandom(2 * 1024 * 1024)
    response = client.post('/chunks', content=body)
    assert response.http_version == client.expected_version
    info = response.json()
    assert info['total'] == len(body)
    assert info['chunks'] >= 2


def test_body_in_chunks_chunked_upload(client):
    parts = [b'p' * 4096 for _ in range(64)]
    info = client.post('/chunks', content=iter(parts)).json()
    assert info['total'] == 4096 * 64
    assert info['chunks'] >= 1


def test_body_in_chunks_empty(client):
    assert client.post('/chunks', content=b'').json() == {'chunks': 0, 'total': 0}
    assert get(client, '/chunks').json() == {'chunks': 0, 'total': 0}


def test_body_raw_chunked_transfer_encoding(server):
    with RawHTTP1(server.port) as conn:
        conn.send(
            b'POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n'
            b'5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'
        )
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b'hello world'
        # The chunks arrive one by one on the server side too.
        conn.send(b'POST /chunks HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n')
        conn.send(b'4\r\ndefg\r\n0\r\n\r\n')
        assert json.loads(conn.read_response().body)['total'] == 7


def test_body_bytes_type(client):
    info = client.post('/body-info', content=b'\x00\xffbinary').json()
    assert info == {'len': 8, 'type': 'bytes', 'head': '\x00\xffbinary'}


def test_expect_100_continue(server):
    with RawHTTP1(server.port) as conn:
        conn.send(
            b'POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n',
        )
        interim = conn.read_head()
        assert interim.status == 100
        conn.send(b'hello world')
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b'hello world'


# -- responses -------------------------------------------------------------------------------------------------


def test_response_str_unicode(client):
    response = get(client, '/str')
    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/plain; charset=utf-8'
    assert response.text == 'héllo wörld ✓ 日本'
    assert int(response.headers['content-length']) == len('héllo wörld ✓ 日本'.encode())


def test_response_bytes_unicode(client):
    response = get(client, '/unicode-bytes')
    assert response.content == 'ßø ✓ 日本語 🚀'.encode()


@pytest.mark.parametrize('size', [0, 1, 1024 * 1024 * 2])
def test_response_bytes(client, size):
    response = get(client, f'/bytes?size={size}')
    assert response.status_code == 200
    assert response.content == b'x' * size
    assert int(response.headers['content-length']) == size


def test_response_empty(client):
    response = get(client, '/empty')
    assert response.status_code == 204
    assert response.headers['x-empty'] == 'yes'
    assert response.content == b''
    response = get(client, '/empty?status=404')
    assert response.status_code == 404
    assert response.headers['x-empty'] == 'yes'
    assert response.content == b''


def test_response_many_and_repeated_headers(client):
    response = get(client, '/headers')
    assert response.headers.get_list('x-repeat') == ['one', 'two']
    for i in range(50):
        assert response.headers[f'x-h{i}'] == str(i)
    response = get(client, '/many-headers?n=300')
    assert response.status_code == 200
    for i in range(300):
        assert response.headers[f'x-many-{i}'] == f'value-{i}'
    assert response.headers.get_list('set-cookie') == [f'c{i}=v{i}' for i in range(5)]


def test_response_invalid_header_raises_value_error(client):
    assert get(client, '/bad-header').text == 'rejected'


def test_response_twice_raises_protocol_error(client, server):
    key = f'twice-{os.urandom(4).hex()}'  # this request's own record (the server is shared by the module)
    response = get(client, '/twice', params={'id': key})
    assert response.status_code == 200
    assert response.text == 'first'
    assert wait_for(lambda: events(server).get(key), what='the second response to be tried') == 'ProtocolError'


def test_response_stream(client):
    response = get(client, '/stream?count=10')
    assert response.status_code == 200
    assert response.text == ''.join(f'chunk{i}\n' for i in range(10))
    assert 'content-length' not in response.headers
    if client.expected_version == 'HTTP/1.1':
        assert response.headers['transfer-encoding'] == 'chunked'


def test_response_stream_arrives_incrementally(client):
    with client.stream('GET', '/stream?count=200') as response:
        assert response.status_code == 200
        received = b''.join(response.iter_bytes())
    assert received.decode() == ''.join(f'chunk{i}\n' for i in range(200))


def test_response_stream_unicode(client):
    response = get(client, '/unicode-stream')
    assert response.text == 'héllo wörld ✓ 日本 🚀ünïcode bytes'


def test_response_stream_empty(client):
    response = get(client, '/stream?count=0')
    assert response.status_code == 200
    assert response.content == b''


def test_response_file(client, data_file):
    path, data = data_file
    response = get(client, '/file', params={'path': str(path)})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.content == data


def test_response_file_large(client, tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 3)
    path = tmp_path / 'large.bin'
    path.write_bytes(data)
    response = get(client, '/file', params={'path': str(path)})
    assert response.status_code == 200
    assert response.content == data


def test_response_file_empty(client, tmp_path):
    path = tmp_path / 'empty.bin'
    path.write_bytes(b'')
    response = get(client, '/file', params={'path': str(path)})
    assert response.status_code == 200
    assert response.content == b''


def test_response_file_missing_is_404(client, tmp_path, server):
    response = get(client, '/file', params={'path': str(tmp_path / 'nope.bin')})
    assert response.status_code == 404
    assert_still_serving(server)


@pytest.mark.parametrize(('start', 'end'), [(0, 1), (0, 10), (10, 20), (1000, 50_000), (99_990, 100_000), (0, 100_000)])
def test_response_file_range(client, data_file, start, end):
    path, data = data_file
    response = get(client, '/range', params={'path': str(path), 'start': start, 'end': end})
    assert response.status_code == 206
    assert response.content == data[start:end]
    assert int(response.headers['content-length']) == end - start


@pytest.mark.parametrize(('start', 'end'), [(5, 5), (10, 5), (-1, 5), (100_000, 100_001), (200_000, 200_010)])
def test_response_file_range_invalid(client, data_file, start, end):
    path, _ = data_file
    response = get(client, '/range', params={'path': str(path), 'start': start, 'end': end})
    assert response.status_code == 416
    assert response.text


@pytest.mark.parametrize('path', ['/str', '/bytes?size=5000', '/stream?count=5'])
def test_head_request_h1(server, path):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('HEAD', path))
        response = conn.read_response(head_request=True)
        assert response.status == 200
        if path == '/str':
            assert response.header('content-length') == str(len('héllo wörld ✓ 日本'.encode()))
        # No body bytes follow the head: the next response on the socket parses cleanly.
        conn.send(request_bytes('GET', '/'))
        following = conn.read_response()
        assert following.status == 200
        assert following.body == b'Hello, world!'


def test_head_request_httpx_h1(server):
    response = httpx.head(server.url + '/bytes?size=5000', timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == b''


@pytest.mark.parametrize('path', ['/bytes?size=5000', '/str', '/stream?count=5'])
def test_head_request_h2(server, path):
    with RawH2(server.port) as conn:
        stream = conn.request('HEAD', path)
        try:
            response = conn.response(stream)
        except H2ProtocolError as exc:  # the h2 package refuses DATA frames on a HEAD response
            pytest.fail(f'the HEAD response over HTTP/2 carried a body: {exc!r}')
        assert response.status == 200
        assert response.body == b''
        # The connection is still usable afterwards.
        other = conn.request('GET', '/')
        assert conn.response(other).body == b'Hello, world!'


def test_head_request_httpx_h2(server):
    with httpx.Client(timeout=TIMEOUT, http1=False, http2=True) as c:
        response = c.head(server.url + '/str')
        assert response.http_version == 'HTTP/2'
        assert response.status_code == 200
        assert response.content == b''


def test_respond_then_cancel_disconnect_watcher(client, server):
    response = get(client, '/respond-then-watch')
    assert response.text == 'watched'
    assert_still_serving(server)


# -- client disconnect -----------------------------------------------------------------------------------------


def test_client_disconnect_h1(server):
    key = f'h1-{os.urandom(4).hex()}'
    conn = RawHTTP1(server.port)
    conn.send(request_bytes('GET', f'/disconnect?id={key}'))
    wait_for(lambda: events(server).get(key) == 'waiting', what='the app to wait for the disconnect')
    conn.close()
    wait_for(lambda: events(server).get(key) == 'disconnected', what='client_disconnect() to resolve')
    assert_still_serving(server)


def test_client_disconnect_h2_connection_closed(server):
    key = f'h2-{os.urandom(4).hex()}'
    conn = RawH2(server.port)
    conn.request('GET', f'/disconnect?id={key}')
    wait_for(lambda: events(server).get(key) == 'waiting', what='the app to wait for the disconnect')
    conn.close()
    wait_for(lambda: events(server).get(key) == 'disconnected', what='client_disconnect() to resolve')
    assert_still_serving(server)


def test_client_disconnect_h2_stream_reset(server):
    key = f'h2rst-{os.urandom(4).hex()}'
    with RawH2(server.port) as conn:
        stream = conn.request('GET', f'/disconnect?id={key}')
        wait_for(lambda: events(server).get(key) == 'waiting', what='the app to wait for the disconnect')
        conn.reset(stream)
        wait_for(lambda: events(server).get(key) == 'disconnected', what='client_disconnect() to resolve')
        # The connection itself lives on.
        other = conn.request('GET', '/')
        assert conn.response(other).body == b'Hello, world!'


@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_stream_to_gone_client_raises_protocol_closed(server, proto):
    key = f'stream-{proto}-{os.urandom(4).hex()}'
    if proto == 'h1':
        conn = RawHTTP1(server.port)
        conn.send(request_bytes('GET', f'/stream-forever?id={key}'))
        assert conn.read_head().status == 200
        conn.read_exact(4096)
    else:
        conn = RawH2(server.port)
        stream = conn.request('GET', f'/stream-forever?id={key}')
        assert conn.wait_status(stream).status == 200
    conn.close()
    wait_for(lambda: events(server).get(key) == 'closed', what='send_bytes to raise ProtocolClosed')
    assert_still_serving(server)


# -- HTTP/1 connection handling -----------------------------------------------------------------------------------


def test_keep_alive_several_requests_one_socket(server):
    with RawHTTP1(server.port) as conn:
        local = f'127.0.0.1:{conn.sock.getsockname()[1]}'
        for i in range(5):
            conn.send(request_bytes('GET', f'/scope?n={i}'))
            response = conn.read_response()
            assert response.status == 200
            scope = json.loads(response.body)
            assert scope['query_string'] == f'n={i}'
            assert scope['client'] == local
        conn.send(request_bytes('POST', '/echo', body=b'still the same socket'))
        assert conn.read_response().body == b'still the same socket'
        conn.send(request_bytes('GET', '/stream?count=3'))
        assert conn.read_response().body == b'chunk0\nchunk1\nchunk2\n'
        conn.send(request_bytes('GET', '/str'))
        assert conn.read_response().body.decode() == 'héllo wörld ✓ 日本'


def test_pipelined_requests(server):
    with RawHTTP1(server.port) as conn:
        conn.send(
            request_bytes('GET', '/scope?first')
            + request_bytes('POST', '/echo', body=b'second body')
            + request_bytes('GET', '/str')
        )
        first = conn.read_response()
        second = conn.read_response()
        third = conn.read_response()
    assert json.loads(first.body)['query_string'] == 'first'
    assert second.body == b'second body'
    assert third.body.decode() == 'héllo wörld ✓ 日本'


def test_connection_close_honoured(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/', headers=[('connection', 'close')]))
        response = conn.read_response()
        assert response.status == 200
        assert response.header('connection') == 'close'
        assert conn.is_closed_by_server()


def test_no_keep_alive_option(start_server):
    srv = start_server(EXTRA, '--no-http1-keep-alive')
    with RawHTTP1(srv.port) as conn:
        conn.send(request_bytes('GET', '/'))
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b'Hello, world!'
        assert response.header('connection') == 'close'
        assert conn.is_closed_by_server()


# -- errors ----------------------------------------------------------------------------------------------------------


def test_app_exception_gives_500_and_log(client, server):
    mark = server.mark()
    response = get(client, '/error')
    assert response.status_code == 500
    log = server.wait_log('RuntimeError: boom from the app', since=mark)
    assert 'Application callable raised an exception' in log
    assert 'RuntimeError: boom from the app' in log
    assert 'Traceback' in log
    assert_still_serving(server)


def test_app_without_response_gives_500_and_log(client, server):
    mark = server.mark()
    response = get(client, '/noresponse')
    assert response.status_code == 500
    log = server.wait_log(NO_RESPONSE, since=mark)
    assert f'[ERROR] {NO_RESPONSE}' in log
    assert_still_serving(server)


def test_error_log_is_on_granian_logger(start_server, tmp_path):
    config = {
        'version': 1,
        'formatters': {
            'generic': {'()': 'logging.Formatter', 'fmt': 'LOGGER=%(name)s LEVEL=%(levelname)s %(message)s'}
        },
    }
    config_path = tmp_path / 'log.json'
    config_path.write_text(json.dumps(config))
    srv = start_server(EXTRA, '--log-config', str(config_path))
    assert httpx.get(srv.url + '/error', timeout=TIMEOUT).status_code == 500
    assert httpx.get(srv.url + '/noresponse', timeout=TIMEOUT).status_code == 500
    # Records of `_granian` or of a child logger (which propagates to `_granian`'s handlers) both count.
    error_line = re.compile(r'^LOGGER=_granian(\.[\w.]+)? LEVEL=ERROR (.*)$', re.MULTILINE)
    lines = wait_for(lambda: len(error_line.findall(srv.log)) >= 2 and error_line.findall(srv.log), what='2 errors')
    assert lines[0][1] == 'Application callable raised an exception'
    assert 'RuntimeError: boom from the app' in srv.log
    assert lines[1][1] == NO_RESPONSE
    assert_still_serving(srv)


def test_no_log_option_silences_errors(start_server):
    srv = start_server(EXTRA, '--no-log')
    assert httpx.get(srv.url + '/error', timeout=TIMEOUT).status_code == 500
    assert httpx.get(srv.url + '/noresponse', timeout=TIMEOUT).status_code == 500
    assert_still_serving(srv)
    # Once the server has exited, whatever it was going to write is in the log.
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert 'Application callable raised an exception' not in srv.log
    assert 'boom from the app' not in srv.log
    assert NO_RESPONSE not in srv.log


def test_many_errors_worker_keeps_serving(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for _ in range(20):
            assert c.get('/error').status_code == 500
            assert c.get('/noresponse').status_code == 500
    assert_still_serving(server)


@pytest.mark.parametrize(
    'data',
    [
        b'GARBAGE\r\n\r\n',
        b'GET / HTTP/1.1 extra\r\nHost: test\r\n\r\n',
        b'GET / HTTP/1.1\r\nHost: test\r\nBad Header Line\r\n\r\n',
        b'GET / HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n',
        b'GET / HTTP/1.1\r\nHost: test\r\nX-Bad\x01: v\r\n\r\n',
    ],
    ids=['request-line', 'request-line-extra', 'header-line', 'content-length', 'header-name'],
)
def test_malformed_request_gives_400(server, data):
    with RawHTTP1(server.port) as conn:
        conn.send(data)
        response = conn.read_response()
        assert response.status == 400
        assert conn.is_closed_by_server()
    assert_still_serving(server)


def _big_headers_request(total: int, count: int = 10) -> bytes:
    per = total // count
    headers = [(f'x-pad-{i}', 'a' * per) for i in range(count)]
    return request_bytes('GET', '/', headers=headers)


def test_oversized_headers_431(start_server):
    srv = start_server(EXTRA, '--http1-buffer-size', '8192')
    with RawHTTP1(srv.port) as conn:
        conn.send_until_refused(_big_headers_request(20 * 1024))
        response = conn.read_response()
        assert response.status == 431
    # Headers that fit the buffer still pass on the same server.
    with RawHTTP1(srv.port) as conn:
        conn.send(_big_headers_request(4 * 1024))
        assert conn.read_response().status == 200
    assert_still_serving(srv)


def test_default_buffer_accepts_20k_headers(server):
    with RawHTTP1(server.port) as conn:
        conn.send(_big_headers_request(20 * 1024))
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b'Hello, world!'


def test_default_buffer_refuses_huge_headers(server):
    # Well past the default buffer (417792 bytes): whatever the read sizes, the buffer fills before the head ends.
    with RawHTTP1(server.port) as conn:
        conn.send_until_refused(_big_headers_request(1024 * 1024, count=30))
        assert conn.read_response().status == 431
    assert_still_serving(server)


def test_too_many_headers_431(server):
    # hyper refuses more than 100 request headers, whatever the buffer size.
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/', headers=[(f'x-h{i}', 'v') for i in range(150)]))
        assert conn.read_response().status == 431
    assert_still_serving(server)


def test_header_read_timeout(start_server):
    srv = start_server(EXTRA, '--http1-header-read-timeout', '500')
    with RawHTTP1(srv.port) as conn:
        conn.send(b'GET /sco')
        assert conn.is_closed_by_server(), 'the server kept a half request line open past the header timeout'
    assert_still_serving(srv)


def test_http2_settings_options(start_server):
    srv = start_server(
        EXTRA,
        '--http2-max-concurrent-streams',
        '17',
        '--http2-initial-stream-window-size',
        '70000',
        '--http2-max-frame-size',
        '32768',
    )
    with RawH2(srv.port) as conn:
        stream = conn.request('GET', '/bytes?size=100000')
        response = conn.response(stream)
        assert response.body == b'x' * 100_000
        assert conn.remote_settings.get(3) == 17  # SETTINGS_MAX_CONCURRENT_STREAMS
        assert conn.remote_settings.get(4) == 70000  # SETTINGS_INITIAL_WINDOW_SIZE
        assert conn.remote_settings.get(5) == 32768  # SETTINGS_MAX_FRAME_SIZE


def test_h2_many_concurrent_streams(server):
    with RawH2(server.port) as conn:
        streams = [conn.request('GET', f'/scope?s={i}') for i in range(20)]
        for i, stream in enumerate(streams):
            response = conn.response(stream)
            assert response.status == 200
            assert json.loads(response.body)['query_string'] == f's={i}'


def test_h2_post_body(server):
    with RawH2(server.port) as conn:
        stream = conn.request('POST', '/echo', body=b'h2 body')
        assert conn.response(stream).body == b'h2 body'
