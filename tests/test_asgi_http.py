"""ASGI 3 over HTTP/1.1 and HTTP/2 (h2c prior knowledge): scope, receive, send, errors, disconnects."""

import hashlib
import json
import os

import httpx
import pytest
from h2.errors import ErrorCodes

from .asgi_support import ASGI_APP, assert_still_serving, http_client
from .rsgi_support import TIMEOUT, RawH2, RawHTTP1, get, request_bytes, wait_for
from .server_support import ServerPool

SCOPE_KEYS = {
    'type',
    'asgi',
    'http_version',
    'method',
    'scheme',
    'path',
    'raw_path',
    'query_string',
    'root_path',
    'headers',
    'client',
    'server',
    'state',
    'extensions',
}


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """One server for the tests that need no special option (each test uses its own ids and data)."""
    with ServerPool(tmp_path_factory.mktemp('asgi-http')) as pool:
        yield pool.start(ASGI_APP, interface='asgi')


def events(server, key: str) -> dict:
    return httpx.get(server.url + '/events', params={'id': key}, timeout=TIMEOUT).json()


def new_key(prefix: str) -> str:
    return f'{prefix}-{os.urandom(4).hex()}'


NO_RESPONSE = 'Application returned without sending a response: answering 500'
APP_RAISED = 'Application callable raised an exception'


def logged_for_ended_requests(server, mark: int) -> str:
    """The log since `mark`, up to the error of a request that fails now. The requests of the test ended
    before it (the test waited for that), so whatever the server logs for them comes before that error."""
    assert httpx.get(server.url + '/raise', timeout=TIMEOUT).status_code == 500
    log = server.wait_log('RuntimeError: boom from the asgi app', since=mark)
    before = log[: log.rindex(APP_RAISED)]
    return before[: before.rfind('\n') + 1]


# -- scope --------------------------------------------------------------------------------------------------


def test_scope_fields(client, server):
    headers = [('x-multi', 'a'), ('x-multi', 'b'), ('X-Custom', 'Value')]
    response = get(client, '/scope/some/path', params={'a': '1', 'b': 'x y'}, headers=headers)
    assert response.status_code == 200
    scope = response.json()
    assert set(scope['keys']) == SCOPE_KEYS
    assert scope['type'] == 'http'
    assert scope['asgi'] == {'version': '3.0', 'spec_version': '2.3'}
    assert scope['http_version'] == client.scope_version
    assert scope['method'] == 'GET'
    assert scope['scheme'] == 'http'
    assert scope['path'] == '/scope/some/path'
    assert scope['path_type'] == 'str'
    assert scope['raw_path'] == {'bytes': '/scope/some/path'}
    assert scope['query_string'] == {'bytes': 'a=1&b=x+y'}
    assert scope['root_path'] == ''
    assert scope['headers_is_list'] is True
    assert scope['headers_pairs_ok'] is True
    names = [name for name, _ in scope['headers']]
    assert all(name == name.lower() for name in names)
    assert ['x-custom', 'Value'] in scope['headers']
    # Repeated headers are all kept, in order.
    assert [value for name, value in scope['headers'] if name == 'x-multi'] == ['a', 'b']
    assert ['user-agent', f'python-httpx/{httpx.__version__}'] in scope['headers']
    assert scope['client'][0] == '127.0.0.1'
    assert scope['client_types'] == ['str', 'int']
    assert 0 < scope['client'][1] < 65536
    assert scope['client'][1] != server.port
    assert scope['server'] == ['127.0.0.1', server.port]
    assert scope['server_types'] == ['str', 'int']
    assert scope['state'] == {'resource': {'name': 'database', 'connected': True}, 'counter': 0}
    assert 'http.response.pathsend' in scope['extensions']
    assert scope['extensions']['http.response.pathsend'] == {}


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
def test_scope_methods(client, method):
    response = client.request(method, '/scope')
    assert response.http_version == client.expected_version
    assert response.json()['method'] == method


def test_scope_custom_method(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('PURGE', '/scope'))
        assert json.loads(conn.read_response().body)['method'] == 'PURGE'


def test_scope_path_percent_decoded_raw_path_kept(client):
    scope = get(client, '/scope/a%20b/%C3%A9t%C3%A9', params={'q': 'a b'}).json()
    assert scope['path'] == '/scope/a b/été'
    assert scope['raw_path'] == {'bytes': '/scope/a%20b/%C3%A9t%C3%A9'}
    assert scope['query_string'] == {'bytes': 'q=a+b'}


def test_scope_query_string_raw_and_empty(client):
    scope = get(client, '/scope?x=%20&y=%2F&flag').json()
    assert scope['query_string'] == {'bytes': 'x=%20&y=%2F&flag'}
    assert scope['raw_path'] == {'bytes': '/scope'}
    assert get(client, '/scope').json()['query_string'] == {'bytes': ''}


def test_scope_path_invalid_utf8_is_replaced(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/scope%FF/x%C3'))
        response = conn.read_response()
    assert response.status == 200
    scope = json.loads(response.body)
    assert scope['path'] == '/scope\ufffd/x\ufffd'
    assert scope['raw_path'] == {'bytes': '/scope%FF/x%C3'}


def test_scope_http10(server):
    with RawHTTP1(server.port) as conn:
        conn.send(b'GET /scope HTTP/1.0\r\nHost: test\r\n\r\n')
        response = conn.read_response()
    assert response.status == 200
    assert json.loads(response.body)['http_version'] == '1.0'


def test_scope_client_port_matches_socket(server):
    with RawHTTP1(server.port) as conn:
        local_port = conn.sock.getsockname()[1]
        conn.send(request_bytes('GET', '/scope'))
        scope = json.loads(conn.read_response().body)
    assert scope['client'] == ['127.0.0.1', local_port]


def test_scope_h2_raw_frames(server):
    with RawH2(server.port) as conn:
        stream = conn.request('GET', '/scope?raw=1', headers=[('x-multi', 'z'), ('x-multi', 'y')])
        response = conn.response(stream)
    assert response.status == 200
    scope = json.loads(response.body)
    assert scope['http_version'] == '2'
    assert scope['query_string'] == {'bytes': 'raw=1'}
    assert [value for name, value in scope['headers'] if name == 'x-multi'] == ['z', 'y']
    assert all(name == name.lower() and not name.startswith(':') for name, _ in scope['headers'])


def test_state_is_a_per_request_copy(client):
    first = get(client, '/state/mutate', params={'tag': 'one'}).json()
    assert first['counter'] == 1
    assert first['added_by_request'] == 'one'
    second = get(client, '/state/mutate', params={'tag': 'two'}).json()
    assert second['counter'] == 1, 'a change to the state in one request leaked into the next'
    assert second['added_by_request'] == 'two'
    state = get(client, '/scope').json()['state']
    assert state == {'resource': {'name': 'database', 'connected': True}, 'counter': 0}


# -- receive() ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize('size', [0, 1, 65_536, 3 * 1024 * 1024 + 7])
def test_body_whole(client, size):
    data = os.urandom(size)
    response = client.post('/echo', content=data)
    assert response.http_version == client.expected_version
    assert response.status_code == 200
    assert response.content == data


def test_body_more_body_flags(client):
    data = os.urandom(2 * 1024 * 1024)
    response = client.post('/chunks', content=data)
    info = response.json()
    assert info['total'] == len(data)
    assert info['flags_ok'] is True


def test_body_chunked_upload(client):
    def parts():
        for i in range(20):
            yield bytes([i]) * 10_000

    info = client.post('/chunks', content=parts()).json()
    assert info['total'] == 200_000
    assert info['flags_ok'] is True


def test_large_upload_is_streamed_in_chunks(client):
    piece = os.urandom(1024 * 1024)

    def parts():
        for _ in range(50):
            yield piece

    response = client.post('/count-chunks', content=parts())
    assert response.http_version == client.expected_version
    info = response.json()
    assert info['total'] == 50 * 1024 * 1024
    assert info['chunks'] > 1


def test_body_raw_chunked_transfer_encoding(server):
    with RawHTTP1(server.port) as conn:
        conn.send(
            b'POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n'
            b'5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'
        )
        response = conn.read_response()
    assert response.status == 200
    assert response.body == b'hello world'


def test_disconnect_mid_upload_h1(server):
    key = new_key('mid-upload-h1')
    conn = RawHTTP1(server.port)
    conn.send(
        f'POST /upload-until-disconnect?id={key} HTTP/1.1\r\nhost: test\r\ncontent-length: 1000000\r\n\r\n'.encode()
        + b'z' * 1000
    )
    wait_for(lambda: events(server, key).get('received'), what='the first body bytes to reach the app')
    conn.close()
    record = wait_for(lambda: events(server, key).get('done') and events(server, key), what='the app to stop')
    assert record['types'][-1] == 'http.disconnect', record
    assert set(record['types'][:-1]) == {'http.request'}, record
    assert_still_serving(server.url)


def test_disconnect_mid_upload_h2(server):
    key = new_key('mid-upload-h2')
    with RawH2(server.port) as conn:
        stream = conn.conn.get_next_available_stream_id()
        conn.conn.send_headers(
            stream,
            [
                (':method', 'POST'),
                (':path', f'/upload-until-disconnect?id={key}'),
                (':scheme', 'http'),
                (':authority', '127.0.0.1'),
                ('content-length', '1000000'),
            ],
        )
        conn.conn.send_data(stream, b'z' * 1000)
        conn.responses[stream] = None
        conn._flush()
        wait_for(lambda: events(server, key).get('received'), what='the first body bytes to reach the app')
        # CANCEL, as a browser sends (hyper reads a NO_ERROR reset as the end of the body: RFC 9113 8.1).
        conn.conn.reset_stream(stream, error_code=ErrorCodes.CANCEL)
        conn._flush()
        record = wait_for(lambda: events(server, key).get('done') and events(server, key), what='the app to stop')
    assert record['types'][-1] == 'http.disconnect', record
    assert set(record['types'][:-1]) == {'http.request'}, record
    assert_still_serving(server.url)


def test_disconnect_after_response_complete(client, server):
    key = new_key('after-response')
    response = client.post('/wait-disconnect', params={'id': key}, content=b'some body')
    assert response.text == 'answered'
    record = wait_for(lambda: events(server, key).get('received'), what='receive() to resolve')
    assert record == 'http.disconnect'


def test_disconnect_when_client_leaves_h1(server):
    key = new_key('hold-h1')
    conn = RawHTTP1(server.port)
    conn.send(request_bytes('POST', f'/hold?id={key}', body=b'payload'))
    wait_for(lambda: events(server, key).get('waiting'), what='the app to wait on receive()')
    conn.close()
    assert wait_for(lambda: events(server, key).get('received'), what='receive()') == 'http.disconnect'
    assert_still_serving(server.url)


def test_disconnect_when_client_leaves_h2_connection(server):
    key = new_key('hold-h2')
    conn = RawH2(server.port)
    conn.request('GET', f'/hold?id={key}')
    wait_for(lambda: events(server, key).get('waiting'), what='the app to wait on receive()')
    conn.close()
    assert wait_for(lambda: events(server, key).get('received'), what='receive()') == 'http.disconnect'
    assert_still_serving(server.url)


def test_disconnect_when_client_resets_h2_stream(server):
    key = new_key('hold-h2rst')
    with RawH2(server.port) as conn:
        stream = conn.request('GET', f'/hold?id={key}')
        wait_for(lambda: events(server, key).get('waiting'), what='the app to wait on receive()')
        conn.reset(stream)
        assert wait_for(lambda: events(server, key).get('received'), what='receive()') == 'http.disconnect'
        other = conn.request('GET', '/')
        assert conn.response(other).body == b'Hello, world!'


def test_client_leaving_without_response_logs_no_error(server):
    mark = server.mark()
    key = new_key('hold-quiet')
    conn = RawHTTP1(server.port)
    conn.send(request_bytes('GET', f'/hold?id={key}'))
    wait_for(lambda: events(server, key).get('waiting'), what='the app to wait on receive()')
    conn.close()
    assert wait_for(lambda: events(server, key).get('received'), what='receive()') == 'http.disconnect'
    assert_still_serving(server.url)
    log = logged_for_ended_requests(server, mark)
    assert 'Traceback' not in log
    assert NO_RESPONSE not in log
    assert '[ERROR]' not in log


# -- send() ------------------------------------------------------------------------------------------------


def test_response_repeated_headers(client):
    response = get(client, '/headers')
    assert response.text == 'headers'
    assert response.headers.get_list('x-repeat') == ['one', 'two']


@pytest.mark.parametrize('code', [201, 202, 404, 418, 503])
def test_response_status(client, code):
    assert get(client, '/status', params={'code': code}).status_code == code


@pytest.mark.parametrize(('count', 'size'), [(200, 1000), (320, 65_536)])
def test_streaming_response(client, count, size):
    response = get(client, '/stream', params={'count': count, 'size': size})
    expected = b''.join(bytes([97 + i % 26]) * size for i in range(count)) + b'END'
    assert response.status_code == 200
    assert response.content == expected


def test_streaming_response_last_chunk_without_more_body(client):
    assert get(client, '/stream-no-final-body').content == b'part1;part2'


def test_streaming_response_arrives_incrementally(client, server):
    key = new_key('incremental')
    with client.stream('GET', '/incremental', params={'id': key}) as response:
        assert response.http_version == client.expected_version
        assert response.status_code == 200
        chunks = response.iter_raw()
        received = b''
        while b'first;' not in received:
            received += next(chunks)
        # The rest is held back by the app until released: what came so far came on its own.
        assert received == b'first;'
        httpx.get(server.url + '/release', params={'id': key}, timeout=TIMEOUT)
        received += b''.join(chunks)
    assert received == b'first;second;third'


def test_pathsend(client, tmp_path):
    data = os.urandom(100_000)
    path = tmp_path / 'data.bin'
    path.write_bytes(data)
    response = get(client, '/pathsend', params={'path': str(path)})
    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/octet-stream'
    assert response.content == data


def test_pathsend_large_file(client, tmp_path):
    data = os.urandom(8 * 1024 * 1024 + 3)
    path = tmp_path / 'large.bin'
    path.write_bytes(data)
    response = get(client, '/pathsend', params={'path': str(path)})
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_pathsend_empty_file(client, tmp_path):
    path = tmp_path / 'empty.bin'
    path.write_bytes(b'')
    response = get(client, '/pathsend', params={'path': str(path)})
    assert response.status_code == 200
    assert response.content == b''


# kind -> (what the error must mention), checked case-insensitively. Out-of-order and unknown
# messages carry granian 2.8.7's texts (apps may match on them).
BAD_SENDS = {
    'body-before-start': ['asgi flow error: response not started'],
    'start-twice': ['asgi flow error: response already started'],
    'unknown-type': ['unsupported asgi message'],
    'non-dict': ['dict'],
    'missing-type': ['type'],
    'header-name-str': ['header', 'bytes'],
    'header-value-int': ['header', 'bytes'],
    'header-not-pair': ['header'],
    'body-str': ['body', 'bytes'],
    'status-str': [],
    'pathsend-before-start': ['start'],
}


@pytest.mark.parametrize('kind', list(BAD_SENDS))
def test_invalid_send_raises_in_app(client, kind):
    """The app catches the error `send` raised and answers with it."""
    response = get(client, '/bad', params={'kind': kind})
    assert response.status_code == 200, response.text
    error = response.json()['error']
    assert error is not None, f'send() accepted the invalid {kind!r} message'
    assert error['type'] in ('RuntimeError', 'TypeError', 'ValueError'), error
    assert error['message']
    for word in BAD_SENDS[kind]:
        assert word in error['message'].lower(), error


@pytest.mark.parametrize('kind', list(BAD_SENDS))
def test_invalid_send_uncaught_gives_500(client, server, kind):
    mark = server.mark()
    response = get(client, '/bad', params={'kind': kind, 'raise': '1'})
    assert response.status_code == 500
    server.wait_log(APP_RAISED, since=mark)


def test_send_after_response_complete_raises(client, server):
    key = new_key('after-complete')
    assert get(client, '/after-complete', params={'id': key}).text == 'complete'
    record = wait_for(lambda: events(server, key), what='the app to record the error')
    assert record['type'] in ('RuntimeError', 'OSError'), record


# -- errors ------------------------------------------------------------------------------------------------


def test_app_exception_gives_500_and_traceback(client, server):
    mark = server.mark()
    response = get(client, '/raise')
    assert response.status_code == 500
    assert response.text == 'Internal server error'  # granian 2.8.7's words
    log = server.wait_log('RuntimeError: boom from the asgi app', since=mark)
    assert APP_RAISED in log
    assert 'Traceback' in log
    assert 'RuntimeError: boom from the asgi app' in log
    assert_still_serving(server.url)


def test_app_exception_after_start_gives_500(client, server):
    mark = server.mark()
    response = get(client, '/raise-after-start')
    assert response.status_code == 500
    assert response.text == 'Internal server error'
    log = server.wait_log('RuntimeError: boom after start', since=mark)
    assert APP_RAISED in log


def test_app_without_response_gives_500_and_error_line(client, server):
    mark = server.mark()
    response = get(client, '/noresponse')
    assert response.status_code == 500
    assert response.text == 'Internal server error'
    log = server.wait_log(NO_RESPONSE, since=mark)
    assert f'[ERROR] {NO_RESPONSE}' in log
    assert 'Traceback' not in log
    assert_still_serving(server.url)


@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_app_exception_mid_stream_aborts_response(server, proto):
    with http_client(server.url, proto) as c, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        c.get('/raise-midstream')
    assert_still_serving(server.url)


@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_app_returning_mid_stream_aborts_response_and_logs(server, proto):
    mark = server.mark()
    with http_client(server.url, proto) as c:
        try:
            c.get('/return-midstream')
        except (httpx.RemoteProtocolError, httpx.ReadError):
            aborted = True
        else:
            aborted = False
    assert_still_serving(server.url)
    assert '[ERROR] Application returned before completing its response body' in server.wait_log(
        'returned before completing', since=mark
    )
    assert aborted, 'the truncated response was ended as if complete'


def test_many_errors_worker_keeps_serving(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for _ in range(20):
            assert c.get('/raise').status_code == 500
            assert c.get('/noresponse').status_code == 500
    assert_still_serving(server.url)


@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_client_disconnect_mid_stream(server, proto):
    mark = server.mark()
    key = new_key(f'midstream-{proto}')
    if proto == 'h1':
        conn = RawHTTP1(server.port)
        conn.send(request_bytes('GET', f'/stream-until-disconnect?id={key}'))
        assert conn.read_head().status == 200
        conn.read_exact(4096)
    else:
        conn = RawH2(server.port)
        stream = conn.request('GET', f'/stream-until-disconnect?id={key}')
        assert conn.wait_status(stream).status == 200
    conn.close()
    record = wait_for(lambda: events(server, key).get('done') and events(server, key), what='the app to stop')
    assert record.get('received') == 'http.disconnect', record
    assert record['sent'] < 2000, 'the app never learnt that the client had gone'
    assert 'error' not in record, record
    assert_still_serving(server.url)
    assert 'Traceback' not in logged_for_ended_requests(server, mark)


def test_client_resets_h2_stream_mid_stream(server):
    mark = server.mark()
    key = new_key('midstream-rst')
    with RawH2(server.port) as conn:
        stream = conn.request('GET', f'/stream-until-disconnect?id={key}')
        assert conn.wait_status(stream).status == 200
        conn.reset(stream)
        record = wait_for(lambda: events(server, key).get('done') and events(server, key), what='the app to stop')
        assert record.get('received') == 'http.disconnect', record
        other = conn.request('GET', '/')
        assert conn.response(other).body == b'Hello, world!'
    assert 'Traceback' not in logged_for_ended_requests(server, mark)


@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_send_to_gone_client_is_quiet(server, proto):
    """Spec 2.3: sending to a client that has gone must not spam the log nor crash the worker."""
    mark = server.mark()
    key = new_key(f'ignoring-{proto}')
    if proto == 'h1':
        conn = RawHTTP1(server.port)
        conn.send(request_bytes('GET', f'/stream-ignoring-disconnect?id={key}'))
        assert conn.read_head().status == 200
        conn.read_exact(1024)
    else:
        conn = RawH2(server.port)
        stream = conn.request('GET', f'/stream-ignoring-disconnect?id={key}')
        assert conn.wait_status(stream).status == 200
    conn.close()
    record = wait_for(lambda: events(server, key).get('done') and events(server, key), what='the app to finish')
    # A 2.3 server makes such sends no-ops; an OSError (spec 2.4) would be acceptable too.
    if 'error' in record:
        assert record['error'].split(':')[0] in ('OSError', 'ConnectionError', 'BrokenPipeError'), record
    assert_still_serving(server.url)
    log = logged_for_ended_requests(server, mark)
    assert 'Traceback' not in log
    assert '[ERROR]' not in log


# -- HTTP/1 connection handling ----------------------------------------------------------------------------


def test_keep_alive_several_requests_one_socket(server):
    with RawHTTP1(server.port) as conn:
        for i in range(3):
            conn.send(request_bytes('GET', f'/scope?n={i}'))
            assert json.loads(conn.read_response().body)['query_string'] == {'bytes': f'n={i}'}
        conn.send(request_bytes('POST', '/echo', body=b'same socket'))
        assert conn.read_response().body == b'same socket'
        conn.send(request_bytes('GET', '/stream?count=3&size=2'))
        assert conn.read_response().body == b'aabbccEND'
        conn.send(request_bytes('GET', '/'))
        assert conn.read_response().body == b'Hello, world!'


def test_head_request_h1(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('HEAD', '/stream?count=3&size=2'))
        response = conn.read_response(head_request=True)
        assert response.status == 200
        conn.send(request_bytes('GET', '/'))
        assert conn.read_response().body == b'Hello, world!'


# -- --url-path-prefix ---------------------------------------------------------------------------------------


def test_url_path_prefix(start_server):
    srv = start_server(ASGI_APP, '--url-path-prefix', '/api', interface='asgi')
    for proto in ('h1', 'h2'):
        with http_client(srv.url, proto) as c:
            inside = get(c, '/api/scope/x')
            assert inside.status_code == 200
            scope = inside.json()
            assert scope['root_path'] == '/api'
            assert scope['path'] == '/api/scope/x'
            assert scope['raw_path'] == {'bytes': '/api/scope/x'}
            outside = get(c, '/scope/y')
            assert outside.status_code == 200
            assert outside.json()['path'] == '/scope/y'
            assert outside.json()['root_path'] == '/api'


# -- the app's own content-length ---------------------------------------------------------------------------------


@pytest.mark.parametrize('version', ['h1', 'h2'])
def test_content_length_the_body_contradicts_is_a_500_and_a_log_line(server, version):
    mark = server.mark()
    with http_client(server.url, version) as client:
        response = client.get('/declared-length', params={'length': '10', 'size': '3'})
        assert response.status_code == 500
        assert response.content == b''
        # The connection is still in step: the next request on it is answered.
        assert client.get('/declared-length', params={'length': '3', 'size': '3'}).content == b'xxx'
    server.wait_log("the app's response says content-length 10 but its body is 3 bytes", since=mark)


def test_content_length_on_204_is_not_sent(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/declared-length?code=204&length=0'))
        head = conn.read_until(b'\r\n\r\n').lower()
    assert head.startswith(b'http/1.1 204')
    assert b'content-length' not in head


@pytest.mark.parametrize('version', ['h1', 'h2'])
def test_length_of_a_body_not_sent_stands_on_304_and_head(server, version):
    with http_client(server.url, version) as client:
        assert client.get('/declared-length', params={'code': 304, 'length': '5'}).status_code == 304
        head = client.head('/declared-length', params={'length': '5', 'size': '5'})
        assert head.status_code == 200
        assert head.headers['content-length'] == '5'
        # Still in step after both.
        assert client.get('/declared-length', params={'length': '2', 'size': '2'}).content == b'xx'
