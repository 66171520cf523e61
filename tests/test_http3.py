"""HTTP/3 (`--http3`) through real servers and aioquic's HTTP/3 client, for RSGI, ASGI and WSGI: the same
apps as over HTTP/1.1 and HTTP/2, with Alt-Svc announcing it, graceful shutdown, logs and metrics naming it."""

import asyncio
import re
import signal
import ssl
import subprocess

import httpx
import pytest
import trustme

from .h3_support import H3Client, run
from .server_support import HOST, ROOT, ServerPool, free_port, granian_cmd, server_env, wait_for

APPS = {
    'rsgi': 'tests.apps.http3_apps:rsgi_app',
    'asgi': 'tests.apps.http3_apps:asgi_app',
    'wsgi': 'tests.apps.http3_apps:wsgi_app',
}
VERSIONS = {'rsgi': '3 https', 'asgi': '3 https', 'wsgi': 'HTTP/3 https'}
CHUNKS, CHUNK = 32, 1024


@pytest.fixture(scope='module')
def tls(tmp_path_factory):
    """(certificate, key, CA) paths for a server at 127.0.0.1."""
    d = tmp_path_factory.mktemp('h3-certs')
    ca = trustme.CA()
    issued = ca.issue_cert(HOST, 'localhost')
    issued.cert_chain_pems[0].write_to_path(d / 'cert.pem')
    issued.private_key_pem.write_to_path(d / 'key.pem')
    ca.cert_pem.write_to_path(d / 'ca.pem')
    return d / 'cert.pem', d / 'key.pem', str(d / 'ca.pem')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('h3-files')
    data = bytes(range(256)) * 1024  # 256 KiB
    (d / 'data.bin').write_bytes(data)
    return d, data


@pytest.fixture(scope='module')
def servers(tmp_path_factory, tls, files):
    cert, key, _ = tls
    static_dir, _ = files
    with ServerPool(tmp_path_factory.mktemp('h3-logs')) as pool:
        yield {
            interface: pool.start(
                APPS[interface],
                '--http3',
                '--access-log',
                '--static-path-mount',
                str(static_dir),
                interface=interface,
                tls=(cert, key),
            )
            for interface in APPS
        }


@pytest.fixture(params=list(APPS))
def interface(request):
    return request.param


def h3(srv, tls, coro_fn):
    async def go():
        async with H3Client(srv.port, tls[2]) as client:
            return await coro_fn(client)

    return run(go())


def test_get(servers, tls, interface):
    answer = h3(servers[interface], tls, lambda c: c.request('GET', '/'))
    assert answer.status == 200
    assert answer.body == b'hello'
    assert answer.header('content-length') == '5'


def test_the_app_is_told_http3(servers, tls, interface):
    answer = h3(servers[interface], tls, lambda c: c.request('GET', '/version'))
    assert answer.body.decode() == VERSIONS[interface]


def test_post_large_body_streamed_in_pieces(servers, tls, interface):
    pieces = [bytes([i]) * 65536 for i in range(64)]  # 4 MiB in 64 KiB DATA frames
    answer = h3(servers[interface], tls, lambda c: c.request('POST', '/echo', body=pieces))
    assert answer.status == 200
    assert answer.header('x-received') == str(4 * 1024 * 1024)
    assert answer.body == b''.join(pieces)


def test_post_body_sent_slowly(servers, tls, interface):
    pieces = [b'a' * 1000, b'b' * 1000, b'c' * 1000]
    answer = h3(servers[interface], tls, lambda c: c.request('POST', '/echo', body=pieces, pause=0.1))
    assert answer.body == b''.join(pieces)


def test_streamed_response(servers, tls, interface):
    answer = h3(servers[interface], tls, lambda c: c.request('GET', '/stream'))
    assert answer.status == 200
    assert answer.body == b''.join(str(i % 10).encode() * CHUNK for i in range(CHUNKS))


def test_file_response(servers, tls, files, interface):
    static_dir, data = files
    answer = h3(servers[interface], tls, lambda c: c.request('GET', f'/file?path={static_dir / "data.bin"}'))
    assert answer.status == 200
    assert answer.body == data


def test_rsgi_file_range(servers, tls, files):
    static_dir, data = files
    path = f'/file?path={static_dir / "data.bin"}&start=1000&end=5000'
    answer = h3(servers['rsgi'], tls, lambda c: c.request('GET', path))
    assert answer.status == 206
    assert answer.body == data[1000:5000]


def test_static_file_range(servers, tls, files, interface):
    _, data = files
    answer = h3(
        servers[interface], tls, lambda c: c.request('GET', '/static/data.bin', headers=[('range', 'bytes=100-1099')])
    )
    assert answer.status == 206
    assert answer.header('content-range') == f'bytes 100-1099/{len(data)}'
    assert answer.body == data[100:1100]


def test_head_has_length_and_no_body(servers, tls, interface):
    answer = h3(servers[interface], tls, lambda c: c.request('HEAD', '/'))
    assert answer.status == 200
    assert answer.header('content-length') == '5'
    assert answer.body == b''


def test_app_error_is_500_and_the_connection_keeps_serving(servers, tls, interface):
    async def go(client):
        failed = await client.request('GET', '/error')
        after = await client.request('GET', '/')
        return failed, after

    failed, after = h3(servers[interface], tls, go)
    assert failed.status == 500
    assert (after.status, after.body) == (200, b'hello')


def test_many_concurrent_streams_on_one_connection(servers, tls, interface):
    async def go(client):
        return await asyncio.gather(
            *(client.request('GET', '/slow' if i % 5 == 0 else '/') for i in range(60)),
            *(client.request('POST', '/echo', body=[b'%d' % i] * 100) for i in range(20)),
        )

    answers = h3(servers[interface], tls, go)
    assert [a.status for a in answers] == [200] * 80
    assert [a.body for a in answers[:60]] == [b'slow' if i % 5 == 0 else b'hello' for i in range(60)]
    assert [a.body for a in answers[60:]] == [(b'%d' % i) * 100 for i in range(20)]


def test_a_client_leaving_mid_request_does_not_stop_the_worker(servers, tls, interface):
    async def leave(client):
        asyncio.ensure_future(client.request('GET', '/slow'))
        await asyncio.sleep(0.1)  # the request is in the app; the connection then closes

    h3(servers[interface], tls, leave)
    answer = h3(servers[interface], tls, lambda c: c.request('GET', '/'))
    assert answer.status == 200


@pytest.mark.parametrize('interface', ['rsgi', 'asgi'])
def test_the_app_learns_its_client_left(servers, tls, interface):
    key = f'left-{interface}'

    async def leave(client):
        asyncio.ensure_future(client.request('GET', f'/wait-disconnect?id={key}'))
        await asyncio.sleep(0.3)

    srv = servers[interface]
    h3(srv, tls, leave)

    def noted():
        return h3(srv, tls, lambda c: c.request('GET', f'/events?id={key}')).body == b'disconnected'

    wait_for(noted, timeout=10, what='the app to see the disconnect')


def test_access_log_names_http3(servers, tls, interface):
    srv = servers[interface]
    mark = srv.mark()
    h3(srv, tls, lambda c: c.request('GET', '/version?from=h3'))
    line = srv.wait_log('/version', since=mark)
    assert 'HTTP/3' in line


@pytest.mark.parametrize('http2', [False, True])
def test_alt_svc_on_http1_and_http2(servers, tls, http2):
    srv = servers['rsgi']
    with httpx.Client(verify=ssl.create_default_context(cafile=tls[2]), http2=http2) as client:
        response = client.get(f'https://{HOST}:{srv.port}/')
    assert response.http_version == ('HTTP/2' if http2 else 'HTTP/1.1')
    assert response.headers['alt-svc'] == f'h3=":{srv.port}"; ma=86400'


def test_no_alt_svc_without_http3(start_server, tls):
    cert, key, ca = tls
    srv = start_server(APPS['rsgi'], tls=(cert, key))
    response = httpx.get(f'https://{HOST}:{srv.port}/', verify=ssl.create_default_context(cafile=ca))
    assert response.status_code == 200
    assert 'alt-svc' not in response.headers


def test_metrics_count_http3_requests(start_server, tls):
    cert, key, _ = tls
    metrics_port = free_port()
    srv = start_server(
        APPS['rsgi'],
        '--http3',
        '--metrics',
        '--metrics-port',
        str(metrics_port),
        '--metrics-scrape-interval',
        '1',
        tls=(cert, key),
    )
    h3(srv, tls, lambda c: asyncio.gather(*(c.request('GET', '/') for _ in range(3))))

    def counted():
        text = httpx.get(f'http://{HOST}:{metrics_port}/metrics').text
        found = re.search(r'granian_request_duration_seconds_count\{[^}]*protocol="3"[^}]*\} (\d+)', text)
        return found and int(found.group(1)) >= 3

    wait_for(counted, timeout=10, what='the HTTP/3 requests in the metrics')


def test_graceful_shutdown_finishes_requests_in_flight(start_server, tls):
    cert, key, _ = tls
    srv = start_server(APPS['rsgi'], '--http3', tls=(cert, key))

    async def go(client):
        pending = asyncio.ensure_future(client.request('GET', '/slow'))
        await asyncio.sleep(0.2)
        srv.signal(signal.SIGTERM)
        answer = await pending
        # The server closes the connection once its requests are done.
        await asyncio.wait_for(client.protocol.terminated.wait(), 5)
        return answer

    answer = h3(srv, tls, go)
    assert (answer.status, answer.body) == (200, b'slow')
    assert srv.wait(timeout=15) == 0


def _reload_under_http3_requests(srv, tls, connections: int = 6):
    """SIGHUP while each of `connections` HTTP/3 connections has a request in flight; their answers."""

    async def one(client):
        # A body still on its way for 4 s: the new worker starts (and binds, when it can) meanwhile, and
        # packets from the client that reached it instead of the old worker would be lost.
        return await client.request('POST', '/echo', body=[b'x' * 1000] * 9, pause=0.5)

    async def go():
        clients = [H3Client(srv.port, tls[2]) for _ in range(connections)]
        for client in clients:
            await client.__aenter__()
        pending = [asyncio.ensure_future(one(client)) for client in clients]
        await asyncio.sleep(0.1)
        srv.signal(signal.SIGHUP)
        answers = await asyncio.gather(*pending, return_exceptions=True)
        for client in clients:
            await client.__aexit__(None, None, None)
        return answers

    return run(go())


def test_a_sole_worker_reloads_without_losing_http3_requests(start_server, tls):
    cert, key, _ = tls
    srv = start_server(APPS['rsgi'], '--http3', tls=(cert, key), workers=1)
    answers = _reload_under_http3_requests(srv, tls)
    assert [getattr(a, 'status', a) for a in answers] == [200] * len(answers)
    assert {a.body for a in answers} == {b'x' * 9000}
    srv.wait_log('Reloading (')

    def served_again():
        # The new worker takes the port once the old one is gone; until then HTTP/3 is refused.
        try:
            return h3(srv, tls, lambda c: c.request('GET', '/')).status == 200
        except (ConnectionError, TimeoutError):
            return False

    wait_for(served_again, timeout=20, what='HTTP/3 served by the new worker')


def test_body_limits_hold_over_http3(start_server, tls):
    cert, key, _ = tls
    srv = start_server(APPS['asgi'], '--http3', '--max-body-size', '1000', interface='asgi', tls=(cert, key))

    async def go(client):
        over = await client.request('POST', '/echo', body=[b'x' * 600, b'y' * 600])
        declared = await client.request('POST', '/echo', headers=[('content-length', '5000')], body=b'z' * 5000)
        within = await client.request('POST', '/echo', body=b'w' * 1000)
        return over, declared, within

    over, declared, within = h3(srv, tls, go)
    assert over.status == 413
    assert declared.status == 413
    assert (within.status, within.body) == (200, b'w' * 1000)


def _refused(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in server_env().items() if not k.startswith('GRANIAN_')}
    return subprocess.run(
        granian_cmd(*args, APPS['rsgi']), cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=30
    )


def test_http3_without_tls_is_refused():
    done = _refused('--http3', '--port', str(free_port()))
    assert done.returncode != 0
    assert 'http3' in done.stderr and 'TLS' in done.stderr


def test_http3_on_a_unix_socket_is_refused(tls, tmp_path):
    cert, key, _ = tls
    done = _refused(
        '--http3', '--uds', str(tmp_path / 's.sock'), '--ssl-certificate', str(cert), '--ssl-keyfile', str(key)
    )
    assert done.returncode != 0
    assert 'http3' in done.stderr and 'uds' in done.stderr


def test_http3_option_from_the_environment(start_server, tls):
    cert, key, _ = tls
    srv = start_server(APPS['rsgi'], tls=(cert, key), env={'GRANIAN_HTTP3': 'true'})
    answer = h3(srv, tls, lambda c: c.request('GET', '/'))
    assert answer.status == 200


def test_two_workers_each_serve_http3(start_server, tls):
    cert, key, _ = tls
    srv = start_server(APPS['rsgi'], '--http3', tls=(cert, key), workers=2)
    for _ in range(4):  # a new client address each time: the kernel spreads them over the workers
        answer = h3(srv, tls, lambda c: c.request('GET', '/'))
        assert answer.status == 200
