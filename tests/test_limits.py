"""Request body limits: `--max-body-size` (413) and `--body-read-timeout` (408), for every
interface, through raw sockets and httpx. A refused request never hands its app a whole
(or truncated) body, and the worker keeps serving.
"""

import socket

import httpx
import pytest

from tests.rsgi_support import RawHTTP1, RawResponse
from tests.server_support import HOST, ServerPool, wait_for

APPS = {
    'rsgi': 'tests.apps.limits_apps:rsgi_app',
    'asgi': 'tests.apps.limits_apps:asgi_app',
    'wsgi': 'tests.apps.limits_apps:wsgi_app',
}
LIMIT = 1000


@pytest.fixture(scope='module', params=sorted(APPS))
def server(request, tmp_path_factory):
    interface = request.param
    with ServerPool(tmp_path_factory.mktemp(f'limits-{interface}')) as pool:
        yield pool.start(
            APPS[interface],
            '--max-body-size',
            str(LIMIT),
            '--body-read-timeout',
            '1',
            interface=interface,
            ready='is serving',
        )


def _exchange(port: int, data: bytes) -> RawResponse:
    """Sends `data` on a new connection and reads the answer (a server that answers before
    reading it all may reset the connection under the rest of the data)."""
    with RawHTTP1(port, timeout=15) as conn:
        conn.send_until_refused(data)
        return conn.read_response()


def _post(length: int, body: bytes) -> bytes:
    head = f'POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n\r\n'.encode()
    return head + body


def _chunked(pieces) -> bytes:
    out = b'POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n'
    for piece in pieces:
        out += f'{len(piece):x}\r\n'.encode() + piece + b'\r\n'
    return out + b'0\r\n\r\n'


def test_a_body_at_the_limit_is_served(server):
    response = _exchange(server.port, _post(LIMIT, b'x' * LIMIT))
    assert response.status == 200
    assert response.body == str(LIMIT).encode()


def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs(server):
    mark = server.mark()
    response = _exchange(server.port, _post(LIMIT + 1, b'x' * (LIMIT + 1)))
    assert response.status == 413
    assert response.header('connection') == 'close'
    # The next request, on a new connection, is served: the app ran for it and only for it.
    assert _exchange(server.port, _post(3, b'abc')).status == 200
    log = server.wait_log('read complete 3', since=mark)
    assert log.count('app called') == 1


def test_a_chunked_body_over_the_limit_is_refused_and_never_read_whole(server):
    mark = server.mark()
    response = _exchange(server.port, _chunked([b'y' * 600, b'y' * 600]))
    assert response.status == 413
    assert _exchange(server.port, _post(2, b'ok')).status == 200
    log = server.wait_log('read complete 2', since=mark)
    assert 'read complete 1200' not in log
    assert 'read complete 600' not in log


def test_an_http2_stream_over_the_limit_is_refused(server):
    def pieces():
        yield b'z' * 700
        yield b'z' * 700

    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        response = client.post(f'{server.url}/upload', content=pieces())
        assert response.status_code == 413
        assert response.http_version == 'HTTP/2'
        again = client.post(f'{server.url}/upload', content=b'fine')
        assert again.status_code == 200
        assert again.text == '4'


def test_a_stalled_upload_is_answered_408_and_the_worker_keeps_serving(server):
    mark = server.mark()
    response = _exchange(server.port, _post(100, b'x' * 10))  # then the client stalls
    assert response.status == 408
    assert _exchange(server.port, _post(5, b'hello')).status == 200
    log = server.wait_log('read complete 5', since=mark)
    assert 'read complete 10' not in log


def test_without_limits_a_large_body_is_served(start_server):
    server = start_server(APPS['rsgi'], ready='is serving')
    body = b'q' * (3 * 1024 * 1024)
    response = httpx.post(f'{server.url}/upload', content=body, timeout=30)
    assert response.status_code == 200
    assert response.text == str(len(body))


@pytest.mark.parametrize('value', ['0', '-5', 'lots'])
def test_a_bad_max_body_size_is_a_usage_error(value):
    import subprocess

    from tests.server_support import granian_cmd, server_env

    result = subprocess.run(
        granian_cmd('--max-body-size', value, APPS['rsgi']),
        check=False,
        env=server_env(clean=True),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert '--max-body-size' in result.stderr.decode()


def test_the_server_answers_while_another_upload_is_stalled(server):
    # A slow client holds nothing else up: the worker answers others meanwhile.
    with socket.create_connection((HOST, server.port), timeout=15) as slow:
        slow.sendall(_post(100, b'x'))
        wait_for(lambda: _exchange(server.port, _post(1, b'a')).status == 200, what='an answer beside the stall')
