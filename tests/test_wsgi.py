"""WSGI (PEP 3333) over HTTP/1.1 and HTTP/2 (h2c prior knowledge), through a real server process and real clients."""

import hashlib
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .rsgi_support import TIMEOUT, H2Response, RawH2, RawHTTP1, get, request_bytes, wait_for
from .server_support import ROOT, ServerPool, free_port, granian_cmd

APP = 'tests.apps.wsgi_app:app'
ERROR_LINE = 'Application callable raised an exception'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """One server with the default options for the tests that need nothing special (each uses its own keys)."""
    with ServerPool(tmp_path_factory.mktemp('wsgi')) as pool:
        yield pool.start(APP, interface='wsgi')


@pytest.fixture
def api_server(server_pool):
    """Starts the server through the Python API (`Granian(...).serve()`), for options the CLI bounds."""

    def start(**options):
        port = free_port()
        code = (
            'from granian.server import Granian\n'
            f"Granian({APP!r}, interface='wsgi', address='127.0.0.1', port={port}, **{options!r}).serve()\n"
        )
        return server_pool.launch([sys.executable, '-c', code], port=port, name='api')

    return start


def new_key() -> str:
    return uuid.uuid4().hex[:12]


def records(server, key: str) -> list:
    return httpx.get(server.url + '/records', params={'key': key}, timeout=TIMEOUT).json()


def assert_still_serving(server) -> None:
    for h2 in (False, True):
        with httpx.Client(timeout=TIMEOUT, http1=not h2, http2=h2) as c:
            response = c.get(server.url + '/')
            assert response.status_code == 200
            assert response.text == 'Hello, world!'


def error_log(server, mark: int, marker: str) -> str:
    """The log written since `mark`, once it holds `marker`."""
    return wait_for(lambda: marker in server.log[mark:] and server.log[mark:], what=f'{marker!r} in the log')


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    raise AssertionError('no VmHWM')


def accept_queue(port: int) -> int:
    """Connections to 127.0.0.1:`port` the server has not accepted yet: the accept queue of its listener,
    as the kernel reports it (Linux: the receive queue of a socket in LISTEN state)."""
    local = f'0100007F:{port:04X}'
    for line in Path('/proc/net/tcp').read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == '0A':
            return int(fields[4].split(':')[1], 16)
    raise AssertionError(f'no listener on 127.0.0.1:{port}')


def hold_concurrently(url: str, count: int, workdir: Path, expected: int, held_back=None):
    """Sends `count` concurrent /hold requests, each on its own connection; once `expected` of them run in
    the app (and, with `held_back`, once `held_back()` shows the others waiting in the server), opens the
    gate. Returns how many ran before the gate opened and the JSON of every response."""
    arrived = workdir / f'arrived-{new_key()}'
    arrived.mkdir()
    gate = workdir / f'gate-{new_key()}'
    params = {'arrived': str(arrived), 'gate': str(gate)}

    def one():
        response = httpx.get(url + '/hold', params=params, timeout=30)
        assert response.status_code == 200
        return response.json()

    def running() -> int:
        return len(list(arrived.iterdir()))

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one) for _ in range(count)]
        try:
            wait_for(lambda: running() >= expected, timeout=15, what=f'{expected} requests')
            if held_back is not None:
                # Either an extra request (wrongly) runs, or the server shows it holds the extra ones back.
                wait_for(lambda: running() > expected or held_back(), timeout=15, what='the extra requests')
            ran = running()
        finally:
            gate.touch()
        results = [f.result(timeout=30) for f in futures]
    return ran, results


# -- the environ ------------------------------------------------------------------------------------------------


def test_environ_complete(client, server):
    headers = [('x-multi', 'a'), ('x-multi', 'b'), ('X-Custom', 'Value')]
    response = get(client, '/environ/some/path', params={'a': '1', 'b': 'x y'}, headers=headers)
    assert response.status_code == 200
    env = response.json()
    assert env['REQUEST_METHOD'] == 'GET'
    assert env['SCRIPT_NAME'] == ''
    assert env['PATH_INFO'] == '/environ/some/path'
    assert env['QUERY_STRING'] == 'a=1&b=x+y'
    assert env.get('CONTENT_TYPE', '') == ''
    assert env.get('CONTENT_LENGTH', '') == ''
    assert env['SERVER_NAME'] == '127.0.0.1'
    assert env['SERVER_PORT'] == str(server.port)
    assert env['SERVER_PROTOCOL'] == client.expected_version
    assert env['REMOTE_ADDR'] == '127.0.0.1'
    assert 0 < int(env['REMOTE_PORT']) < 65536
    assert int(env['REMOTE_PORT']) != server.port
    assert env['HTTP_HOST'] == f'127.0.0.1:{server.port}'
    assert env['HTTP_X_MULTI'] == 'a,b'
    assert env['HTTP_X_CUSTOM'] == 'Value'
    assert env['HTTP_USER_AGENT'] == f'python-httpx/{httpx.__version__}'
    assert env['wsgi.version'] == [1, 0]
    assert env['wsgi.url_scheme'] == 'http'
    assert env['wsgi.input'].startswith('<')
    assert env['input_api'] is True
    assert env['errors_api'] is True
    assert env['wsgi.multithread'] is True
    assert env['wsgi.multiprocess'] is False
    assert env['wsgi.run_once'] is False
    assert env['file_wrapper_callable'] is True
    # Every value a string where PEP 3333 wants one.
    for key, value in env.items():
        if key.isupper():
            assert isinstance(value, str), key
    # The app runs on a blocking thread of the pool, never on the main thread.
    assert env['thread_name'].startswith('granian-blocki')
    assert env['on_main_thread'] is False


def test_environ_request_body_headers(client):
    env = client.post('/environ', content=b'{"a": 1}', headers={'content-type': 'application/json'}).json()
    assert env['REQUEST_METHOD'] == 'POST'
    assert env['CONTENT_TYPE'] == 'application/json'
    assert env['CONTENT_LENGTH'] == '8'
    assert 'HTTP_CONTENT_TYPE' not in env
    assert 'HTTP_CONTENT_LENGTH' not in env


@pytest.mark.parametrize('method', ['PUT', 'DELETE', 'PATCH', 'OPTIONS'])
def test_environ_methods(client, method):
    response = client.request(method, '/environ')
    assert response.http_version == client.expected_version
    assert response.json()['REQUEST_METHOD'] == method


def test_environ_custom_method_and_http10(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('PURGE', '/environ'))
        assert json.loads(conn.read_response().body)['REQUEST_METHOD'] == 'PURGE'
    with RawHTTP1(server.port) as conn:
        conn.send(b'GET /environ HTTP/1.0\r\nHost: test\r\n\r\n')
        env = json.loads(conn.read_response().body)
    assert env['SERVER_PROTOCOL'] == 'HTTP/1.0'
    assert env['HTTP_HOST'] == 'test'


def test_environ_path_info_is_decoded_as_latin1(client):
    # PEP 3333: the decoded bytes, each one a code point (so UTF-8 shows as mojibake).
    env = get(client, '/environ/caf%C3%A9').json()
    assert env['PATH_INFO'] == '/environ/caf\u00c3\u00a9'
    assert env['PATH_INFO'].encode('latin-1').decode('utf-8') == '/environ/café'
    assert get(client, '/environ/a%20b').json()['PATH_INFO'] == '/environ/a b'


def test_environ_query_string_is_raw(client):
    env = get(client, '/environ?x=%20&y=%2F&flag').json()
    assert env['QUERY_STRING'] == 'x=%20&y=%2F&flag'


def test_environ_raw_non_utf8_path(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', '/environ/%FF%E9'))
        env = json.loads(conn.read_response().body)
    assert env['PATH_INFO'] == '/environ/\u00ff\u00e9'


def test_environ_remote_port_matches_socket(server):
    with RawHTTP1(server.port) as conn:
        local_port = conn.sock.getsockname()[1]
        conn.send(request_bytes('GET', '/environ'))
        env = json.loads(conn.read_response().body)
    assert env['REMOTE_PORT'] == str(local_port)
    with RawH2(server.port) as conn:
        local_port = conn.sock.getsockname()[1]
        env = json.loads(conn.response(conn.request('GET', '/environ')).body)
    assert env['REMOTE_PORT'] == str(local_port)


def test_environ_h2_host_from_authority_and_repeated_headers(server):
    with RawH2(server.port) as conn:
        stream = conn.request('GET', '/environ?raw=1', headers=[('x-multi', 'z'), ('x-multi', 'y')])
        response = conn.response(stream)
    assert response.status == 200
    env = json.loads(response.body)
    assert env['SERVER_PROTOCOL'] == 'HTTP/2'
    assert env['HTTP_HOST'] == '127.0.0.1'
    assert env['HTTP_X_MULTI'] == 'z,y'
    assert env['QUERY_STRING'] == 'raw=1'


def test_wsgi_errors_goes_to_the_server_output(client, server):
    key = new_key()
    mark = len(server.log)
    assert get(client, '/environ', params={'errors': key}).status_code == 200
    log = error_log(server, mark, f'and again {key}')
    assert f'wsgi.errors says {key}' in log


def test_script_name_from_url_path_prefix(start_server):
    srv = start_server(APP, '--url-path-prefix', '/mount/', interface='wsgi')
    for h2 in (False, True):
        with httpx.Client(base_url=srv.url, timeout=TIMEOUT, http1=not h2, http2=h2) as c:
            env = c.get('/mount/environ/x', params={'q': '1'}).json()
            assert env['SCRIPT_NAME'] == '/mount'
            assert env['PATH_INFO'] == '/environ/x'
            assert env['QUERY_STRING'] == 'q=1'
            env = c.get('/mount', params={'dump': '1'}).json()
            assert env['SCRIPT_NAME'] == '/mount'
            assert env['PATH_INFO'] == ''
            env = c.get('/mount/caf%C3%A9', params={'dump': '1'}).json()
            assert env['SCRIPT_NAME'] + env['PATH_INFO'] == '/mount/caf\u00c3\u00a9'


def test_multiprocess_with_several_workers(start_server):
    srv = start_server(APP, interface='wsgi', workers=2)
    env = httpx.get(srv.url + '/environ', timeout=TIMEOUT).json()
    assert env['wsgi.multiprocess'] is True
    assert env['wsgi.multithread'] is True


# -- wsgi.input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('size', [0, 1, 65_536, 3 * 1024 * 1024 + 7])
def test_input_read_all(client, size):
    body = os.urandom(size)
    response = client.post('/echo', content=body)
    assert response.http_version == client.expected_version
    assert response.status_code == 200
    assert response.content == body
    assert response.headers['x-content-length'] == str(size)


def test_input_read_all_chunked_upload(client):
    parts = [os.urandom(1000 + i) for i in range(50)]
    response = client.post('/echo', content=iter(parts), headers={'content-type': 'application/x-test'})
    assert response.http_version == client.expected_version
    assert response.content == b''.join(parts)
    assert response.headers['x-content-type'] == 'application/x-test'


def test_input_read_n(client):
    body = os.urandom(1024 * 1024 + 5)
    info = client.post('/input/read-n', params={'n': '1000'}, content=body).json()
    assert info['total'] == len(body)
    assert info['sha256'] == hashlib.sha256(body).hexdigest()
    assert info['biggest'] == 1000
    assert info['reads'] == -(-len(body) // 1000)


@pytest.mark.parametrize('sized', [False, True], ids=['chunked', 'content-length'])
def test_input_read_readline_readlines(client, sized):
    # Split across upload chunks so lines straddle the pieces the server receives. With a
    # content-length the body is read before the app runs, kept as the pieces it came in.
    parts = [b'ab', b'cdef\nli', b'ne two is long\nth', b'ird\nfourth\nlast-no-newline']
    headers = {'content-length': str(sum(map(len, parts)))} if sized else {}
    info = client.post('/input/mixed', content=iter(parts), headers=headers).json()
    assert info == {
        'read3': 'abc',
        'readline': 'def\n',
        'readline_limited': 'line',
        'readline_rest': ' two is long\n',
        'read0': '',
        'readlines': ['third\n', 'fourth\n', 'last-no-newline'],
        'after_eof': '',
        'readline_after_eof': '',
    }


def test_input_iteration(client):
    parts = [b'one\ntw', b'o\n', b'\nthree']
    assert client.post('/input/iter', content=iter(parts)).json() == ['one\n', 'two\n', '\n', 'three']
    assert client.post('/input/iter', content=b'').json() == []


def test_input_readlines_hint(client):
    info = client.post('/input/readlines-hint', params={'hint': '8'}, content=b'aaaa\nbbbb\ncccc\n').json()
    assert info == {'lines': ['aaaa\n', 'bbbb\n'], 'rest': 'cccc\n'}


def test_input_streams_large_upload_with_bounded_memory(start_server):
    srv = start_server(APP, interface='wsgi')
    pid = int(httpx.get(srv.url + '/pid', timeout=TIMEOUT).text)
    assert pid != srv.proc.pid  # the worker is a child process
    before = vm_hwm_kib(pid)
    piece = os.urandom(1024 * 1024)
    total = 200 * len(piece)
    digest = hashlib.sha256()
    for _ in range(200):
        digest.update(piece)

    def body():
        for _ in range(200):
            yield piece

    response = httpx.post(
        srv.url + '/input/read-n',
        params={'n': '65536'},
        content=body(),
        headers={'content-length': str(total)},
        timeout=60,
    )
    assert response.status_code == 200
    info = response.json()
    assert info['pid'] == pid
    assert info['total'] == total
    assert info['sha256'] == digest.hexdigest()
    assert info['biggest'] == 65536
    # (Per-thread RSS counters reach /proc lazily: take the larger of the two readings.)
    after = max(vm_hwm_kib(pid), info['vm_hwm_kib'])
    # 200 MiB went through; the worker's peak memory stayed far below it.
    assert after < 120 * 1024, f'VmHWM {after} KiB (was {before} KiB before the upload)'
    assert after - before < 64 * 1024, f'VmHWM grew from {before} KiB to {after} KiB'


# -- start_response and write() ---------------------------------------------------------------------------------


def test_start_response_twice_without_exc_info_raises(client):
    response = get(client, '/sr/twice')
    assert response.status_code == 200
    assert response.text.startswith('raised ')
    assert response.text != 'did not raise'


def test_start_response_exc_info_before_headers_sent_replaces_them(client):
    response = get(client, '/sr/exc-before-sent')
    assert response.status_code == 503
    assert response.headers['x-second'] == '2'
    assert 'x-first' not in response.headers
    assert response.text == 'replaced body'


def test_start_response_exc_info_after_headers_sent_reraises(client, server):
    key = new_key()
    response = get(client, '/sr/exc-after-sent', params={'key': key})
    assert response.status_code == 200
    assert response.text == 'partial;rest'
    assert records(server, key) == ['reraised-same']


def test_start_response_status_and_repeated_headers(server):
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', "/sr/status?status=418%20I'm%20a%20teapot"))
        response = conn.read_response()
        assert response.status == 418
        assert response.body == b'custom'
        conn.send(request_bytes('GET', '/sr/headers'))
        response = conn.read_response()
        assert response.header_all('x-multi') == ['a', 'b']


def test_start_response_invalid_status_gives_500(client, server):
    mark = len(server.log)
    assert get(client, '/sr/status', params={'status': 'OK'}).status_code == 500
    log = error_log(server, mark, ERROR_LINE)
    assert 'ValueError' in log


def test_write_callable_then_iterable(client, server):
    key = new_key()
    response = get(client, '/write', params={'key': key})
    assert response.status_code == 200
    assert response.text == 'one,two,three,four'
    assert records(server, key) == ['closed']
    assert get(client, '/write-only').text == '0;1;2;3;4;'


# -- response iteration -----------------------------------------------------------------------------------------


def test_response_list_and_single_chunk_get_a_length(client, server):
    response = get(client, '/list')
    assert response.text == 'abc'
    assert response.headers['content-length'] == '3'
    key = new_key()
    response = get(client, '/closing-single', params={'key': key})
    # An iterable without a length streams: its first chunk is never held back.
    assert response.text == 'single'
    assert records(server, key) == ['closed']


def test_response_generator_is_streamed(client):
    response = get(client, '/gen', params={'n': '50'})
    assert response.text == ''.join(f'{i};' for i in range(50))
    assert 'content-length' not in response.headers
    if client.expected_version == 'HTTP/1.1':
        assert response.headers['transfer-encoding'] == 'chunked'


def test_response_empty(client):
    response = get(client, '/empty')
    assert response.status_code == 204
    assert response.content == b''


def stream_gated(client, server, after: int) -> bytes:
    """Reads /stream-gated: the generator blocks after `after` chunks until /set, which the test calls only
    once it received the first bytes. Returns the whole body."""
    key = new_key()
    with client.stream('GET', '/stream-gated', params={'key': key, 'after': str(after)}) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        assert first
        assert httpx.get(server.url + '/set', params={'key': key}, timeout=TIMEOUT).text == 'set'
        body = first + b''.join(chunks)
    assert wait_for(lambda: records(server, key) == ['closed'], what='close()')
    return body


def test_response_generator_of_10000_chunks_streams_without_buffering(client, server):
    # The generator waits (after its first 2 chunks) for an event set once the client got bytes.
    body = stream_gated(client, server, after=2)
    assert b'TIMEOUT|' not in body
    assert body == b'x' * 32 + b'SET|' + b'x' * 16 * 9998


def test_response_first_chunk_sent_before_the_second_is_produced(client, server):
    body = stream_gated(client, server, after=1)
    assert body.startswith(b'x' * 16 + b'SET|')
    assert len(body) == 16 * 10000 + 4


def test_close_called_after_a_normal_response(client, server):
    key = new_key()
    assert get(client, '/closing', params={'key': key}).text == 'closed properly'
    assert records(server, key) == ['closed']


def test_close_called_on_client_disconnect(client, server):
    key = new_key()
    with client.stream('GET', '/stream-endless', params={'key': key}) as response:
        assert response.status_code == 200
        assert next(response.iter_raw())
    # Leaving the block closes the response mid-body: the connection (h1) or the stream (h2) goes away.
    client.close()
    assert wait_for(lambda: records(server, key), what='close()') == ['closed']
    assert_still_serving(server)


@pytest.mark.parametrize('route', ['/error/first-chunk', '/error/mid-stream', '/error/bad-chunk'])
def test_close_called_on_errors(server, route):
    key = new_key()
    with httpx.Client(timeout=TIMEOUT) as c:
        try:
            c.get(server.url + route, params={'key': key})
        except httpx.RemoteProtocolError:
            pass
    assert wait_for(lambda: records(server, key), what='close()') == ['closed']


# -- application errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('route', 'message'),
    [
        ('/error/before-start', 'RuntimeError: failed before start_response'),
        ('/error/after-start', 'RuntimeError: failed after start_response'),
        ('/error/first-chunk', 'RuntimeError: iteration failed'),
    ],
)
def test_exception_before_any_byte_gives_500_and_one_log_line(client, server, route, message):
    key = new_key()
    mark = len(server.log)
    response = get(client, route, params={'key': key})
    assert response.status_code == 500
    log = error_log(server, mark, f'{message} {key}')
    assert log.count(ERROR_LINE) == 1
    assert 'Traceback (most recent call last)' in log
    assert_still_serving(server)


@pytest.mark.parametrize('route', ['/error/no-start', '/error/bad-chunk'])
def test_protocol_misuse_gives_500_and_log(client, server, route):
    mark = len(server.log)
    assert get(client, route, params={'key': new_key()}).status_code == 500
    log = error_log(server, mark, ERROR_LINE)
    assert log.count(ERROR_LINE) == 1


@pytest.mark.parametrize('route', ['/error/mid-stream', '/error/after-write'])
def test_exception_after_headers_sent_closes_the_connection_h1(server, route):
    key = new_key()
    mark = len(server.log)
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('GET', f'{route}?key={key}'))
        # Everything until the server closes: at most the head and part of the chunked body, never
        # the terminating 0-chunk. (The head itself may be lost: hyper drops what it had not flushed.)
        received = conn.read_to_eof()
    if received:
        head, _, body = received.partition(b'\r\n\r\n')
        assert head.startswith(b'HTTP/1.1 200 ')
        assert b'transfer-encoding: chunked' in head.lower()
        assert not body.endswith(b'0\r\n\r\n')
    log = error_log(server, mark, key)
    assert log.count(ERROR_LINE) == 1
    assert 'Traceback (most recent call last)' in log
    with httpx.Client(timeout=TIMEOUT) as c, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        c.get(server.url + route, params={'key': new_key()})
    assert_still_serving(server)


def test_exception_after_headers_sent_resets_the_stream_h2(server):
    key = new_key()
    mark = len(server.log)
    with RawH2(server.port) as conn:
        stream = conn.request('GET', f'/error/mid-stream?key={key}')
        response = conn.response(stream)
        # The stream is reset (its HEADERS frame may or may not have gone out first), never ended.
        assert response.reset is True
        assert response.ended is False
        assert response.status in (0, 200)
        # The connection itself goes on.
        ok = conn.response(conn.request('GET', '/'))
        assert ok.status == 200
        assert ok.body == b'Hello, world!'
    log = error_log(server, mark, key)
    assert log.count(ERROR_LINE) == 1
    with httpx.Client(timeout=TIMEOUT, http1=False, http2=True) as c, pytest.raises(httpx.RemoteProtocolError):
        c.get(server.url + '/error/mid-stream', params={'key': new_key()})


def test_exception_in_close_is_logged(client, server):
    key = new_key()
    mark = len(server.log)
    response = get(client, '/error/close-raises', params={'key': key})
    assert response.status_code == 200
    assert response.text == 'body'
    log = error_log(server, mark, f'close failed {key}')
    assert log.count(ERROR_LINE) == 1


# -- wsgi.file_wrapper ------------------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / 'data.bin'
    path.write_bytes(data)
    return path, data


def test_file_wrapper_real_file_is_served_natively(client, server, data_file):
    path, data = data_file
    key = new_key()
    response = get(client, '/file', params={'path': str(path), 'key': key})
    assert response.status_code == 200
    assert response.headers['content-length'] == str(len(data))
    assert response.content == data
    # Served from the descriptor: the app's read() was never called; the wrapper was closed.
    assert wait_for(lambda: records(server, key), what='close()') == ['closed']


def test_file_wrapper_real_file_from_its_position(client, server, data_file):
    path, data = data_file
    key = new_key()
    response = get(client, '/file', params={'path': str(path), 'key': key, 'offset': '1000'})
    assert response.headers['content-length'] == str(len(data) - 1000)
    assert response.content == data[1000:]
    assert wait_for(lambda: records(server, key), what='close()') == ['closed']


def test_file_wrapper_bytesio_falls_back_to_iteration(client, server):
    key = new_key()
    response = get(client, '/file-bytesio', params={'key': key, 'blksize': '1000', 'repeat': '100'})
    assert response.status_code == 200
    assert response.content == bytes(range(256)) * 100
    assert 'content-length' not in response.headers
    assert records(server, key) == ['closed']


# -- the blocking thread pool and backpressure ------------------------------------------------------------------


def test_blocking_threads_run_requests_concurrently_by_default(start_server, tmp_path):
    srv = start_server(APP, interface='wsgi')
    running, results = hold_concurrently(srv.url, 2, tmp_path, expected=2)
    assert running == 2
    assert len({r['ident'] for r in results}) == 2


def test_blocking_pool_grows_to_its_maximum_and_shrinks_when_idle(api_server, tmp_path):
    # The CLI bounds the idle timeout to 10..600 s; the Python API takes a short one.
    srv = api_server(blocking_threads=4, blocking_threads_idle_timeout=1)
    running, results = hold_concurrently(srv.url, 6, tmp_path, expected=4)
    assert running == 4
    # Four threads ran all six requests, four of them at once: a fifth thread, whenever it had run one
    # of them, would show as a fifth ident (and, while the first four held, as a fifth active request).
    assert len({r['ident'] for r in results}) == 4
    assert max(r['active'] for r in results) == 4
    assert all(r['thread_name'].startswith('granian-blocki') for r in results)
    threads = httpx.get(srv.url + '/threads', timeout=TIMEOUT).json()
    assert 1 <= threads['blocking'] <= 4
    # Idle beyond the timeout, the threads above the first exit.
    threads = wait_for(
        lambda: (t := httpx.get(srv.url + '/threads', timeout=TIMEOUT).json())['blocking'] == 1 and t,
        timeout=15,
        interval=1.5,
        what='the pool to shrink',
    )
    assert threads['blocking'] == 1


def h2_burst_of_holds(port: int, count: int, workdir: Path, expected: int) -> tuple:
    """Sends `count` /hold requests as streams of one HTTP/2 connection, in a single write."""
    arrived = workdir / f'arrived-{new_key()}'
    arrived.mkdir()
    gate = workdir / f'gate-{new_key()}'
    path = f'/hold?arrived={arrived}&gate={gate}'
    with RawH2(port) as conn:
        streams = []
        for _ in range(count):
            stream = conn.conn.get_next_available_stream_id()
            headers = [(':method', 'GET'), (':path', path), (':scheme', 'http'), (':authority', '127.0.0.1')]
            conn.conn.send_headers(stream, headers, end_stream=True)
            conn.responses[stream] = H2Response()
            streams.append(stream)
        conn._flush()
        try:
            wait_for(lambda: len(list(arrived.iterdir())) >= expected, what=f'{expected} requests running at once')
            running = len(list(arrived.iterdir()))
        finally:
            gate.touch()
        results = [json.loads(conn.response(stream).body) for stream in streams]
    return running, results


def test_blocking_pool_grows_under_a_burst_from_a_fresh_start(api_server, tmp_path):
    srv = api_server(blocking_threads=4)
    running, results = h2_burst_of_holds(srv.port, 3, tmp_path, expected=3)
    assert running == 3
    assert len({r['ident'] for r in results}) == 3


def test_blocking_pool_grows_under_a_burst_with_an_idle_thread(api_server, tmp_path):
    srv = api_server(blocking_threads=4)
    # One request: the pool now has one idle thread.
    assert httpx.get(srv.url + '/', timeout=TIMEOUT).status_code == 200
    running, results = h2_burst_of_holds(srv.port, 3, tmp_path, expected=3)
    assert running == 3
    assert len({r['ident'] for r in results}) == 3


def test_blocking_threads_idle_timeout_cli_range():
    for value in ('4', '601'):
        result = subprocess.run(
            granian_cmd('--interface', 'wsgi', '--blocking-threads-idle-timeout', value, APP),
            check=False,
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        assert b'blocking-threads-idle-timeout' in result.stderr


def test_backpressure_queues_extra_connections(start_server, tmp_path):
    srv = start_server(APP, '--backpressure', '2', '--blocking-threads', '4', interface='wsgi')
    running, results = hold_concurrently(
        srv.url, 3, tmp_path, expected=2, held_back=lambda: accept_queue(srv.port) >= 1
    )
    # The third connection waited, not accepted while two requests held their slots; once a slot freed
    # it was served: nothing was dropped.
    assert running == 2
    assert len(results) == 3
    assert max(r['active'] for r in results) == 2
    assert_still_serving(srv)
