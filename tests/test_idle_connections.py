"""Connections that send nothing, connections at rest between requests, and the
backpressure budget: silent clients are closed after the header read timeout, keep-alive
connections after the keep-alive timeout, and neither starves a new client.
"""

import resource
import time

import httpx
import pytest

from tests.rsgi_support import RawHTTP1

APP = 'tests.apps.rsgi_app:app'
REQUEST = b'GET /str HTTP/1.1\r\nHost: test\r\n\r\n'


def _conn(port: int, timeout: float = 15) -> RawHTTP1:
    return RawHTTP1(port, timeout=timeout)


def _one_request(conn: RawHTTP1) -> int:
    conn.send(REQUEST)
    return conn.read_response().status


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(start_server):
    server = start_server(APP, '--http1-header-read-timeout', '1000', ready='is serving')
    with _conn(server.port) as silent:
        assert silent.is_closed_by_server()
    # The server is fine afterwards.
    assert httpx.get(f'{server.url}/str', timeout=10).status_code == 200


@pytest.mark.parametrize('http', ['auto', '1', '2'])
def test_silent_connections_are_closed_in_every_http_mode(start_server, http):
    server = start_server(APP, '--http', http, '--http1-header-read-timeout', '1000', ready='is serving')
    with _conn(server.port) as silent:
        assert silent.is_closed_by_server()


def test_a_partial_header_is_closed_after_the_header_timeout(start_server):
    server = start_server(APP, '--http1-header-read-timeout', '1000', ready='is serving')
    with _conn(server.port) as slow:
        slow.send(b'GET /str HTTP/1.1\r\nHost: te')
        assert slow.is_closed_by_server()


def test_keep_alive_connections_rest_for_the_keep_alive_timeout_not_the_header_one(start_server):
    server = start_server(
        APP, '--http1-header-read-timeout', '1000', '--http1-keep-alive-timeout', '4000', ready='is serving'
    )
    with _conn(server.port) as conn:
        _one_request(conn)
        time.sleep(2)  # longer than the header timeout, shorter than the keep-alive one
        assert _one_request(conn) == 200
        assert conn.is_closed_by_server()


def test_a_short_keep_alive_timeout_closes_a_connection_at_rest(start_server):
    server = start_server(APP, '--http1-keep-alive-timeout', '500', ready='is serving')
    with _conn(server.port) as conn:
        _one_request(conn)
        assert conn.is_closed_by_server()


@pytest.fixture
def many_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192)
    if wanted < 4500:
        pytest.skip(f'needs about 4500 file descriptors, the hard limit is {hard}')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_two_thousand_silent_connections_do_not_lock_out_a_client(start_server, many_descriptors):
    # The servers inherit the raised limit; the budget (backpressure) is 1024 connections.
    server = start_server(APP, '--http1-header-read-timeout', '3000', ready='is serving')
    silent = []
    try:
        for _ in range(2000):
            silent.append(_conn(server.port, timeout=10))
        # Every slot of the budget is held by a silent client; the next one is still answered,
        # at the latest once the header timeout closes the silent ones.
        response = httpx.get(f'{server.url}/str', timeout=httpx.Timeout(10, connect=10))
        assert response.status_code == 200
        closed = sum(conn.is_closed_by_server() for conn in silent[:50])
        assert closed == 50
    finally:
        for conn in silent:
            conn.close()


def test_connections_at_rest_make_room_when_the_budget_is_spent(start_server):
    # 4 slots, held by keep-alive connections at rest for up to a minute: a fifth client is
    # answered at once, because resting connections are closed to make room for it.
    server = start_server(APP, '--backpressure', '4', '--http1-keep-alive-timeout', '60000', ready='is serving')
    resting = [_conn(server.port, timeout=5) for _ in range(4)]
    try:
        for conn in resting:
            _one_request(conn)
        response = httpx.get(f'{server.url}/str', timeout=httpx.Timeout(10))
        assert response.status_code == 200
        assert any(conn.is_closed_by_server() for conn in resting)
    finally:
        for conn in resting:
            conn.close()
