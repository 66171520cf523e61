"""The embedded server: `granian.server.embed.Server` run as a task in the test's own loop."""

import asyncio
import ssl

import httpx
import pytest
import websockets
from granian.errors import ConfigurationError, FatalError
from granian.server.embed import Server

from .apps.embed_apps import AsgiApp, RsgiApp
from .server_support import port_is_free

INTERFACES = [('asgi', AsgiApp), ('rsgi', RsgiApp)]


async def start(server: Server) -> 'asyncio.Task[None]':
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(server.started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()  # raises what serve() raised
        raise AssertionError('serve() returned before serving')
    assert waiter in done, 'the server did not start within 10s'
    return task


async def stop(server: Server, task: 'asyncio.Task[None]') -> None:
    server.stop()
    await asyncio.wait_for(task, 15)


def make(app, interface: str, **options) -> Server:
    return Server(app, interface=interface, address='127.0.0.1', port=0, log_enabled=False, **options)


async def until(condition, what: str, timeout: float = 10) -> None:
    """Lets the loop run (the server is a task in it) until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f'timed out waiting for {what}'
        await asyncio.sleep(0.01)


@pytest.mark.parametrize('interface,app_cls', INTERFACES)
def test_serve_http1_http2_ws_then_stop(interface, app_cls):
    app = app_cls()

    async def main():
        server = make(app, interface)
        task = await start(server)
        port = server.bound_port
        url = f'http://127.0.0.1:{port}'
        assert not port_is_free(port)
        async with httpx.AsyncClient() as client:
            r = await client.get(f'{url}/')
            assert r.status_code == 200 and r.text == f'ok {app.tag}'
            assert (await client.get(f'{url}/proto')).text == '1.1'
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f'{url}/proto')
            assert r.http_version == 'HTTP/2' and r.text == '2'
        async with websockets.connect(f'ws://127.0.0.1:{port}/ws') as ws:
            await ws.send('hello')
            assert await asyncio.wait_for(ws.recv(), 5) == 'hello'
        await stop(server, task)
        assert task.done() and task.exception() is None
        assert port_is_free(port)

    asyncio.run(main())
    expected = ['startup', 'shutdown'] if interface == 'asgi' else ['init', 'del']
    assert app.events == expected


@pytest.mark.parametrize('interface,app_cls', INTERFACES)
def test_stop_is_graceful(interface, app_cls):
    app = app_cls()

    async def main():
        server = make(app, interface)
        task = await start(server)
        port = server.bound_port
        async with httpx.AsyncClient() as client:
            slow = asyncio.create_task(client.get(f'http://127.0.0.1:{port}/slow'))
            await until(lambda: app.slow_started == 1, 'the request to reach the app')
            server.stop()
            r = await asyncio.wait_for(slow, 10)
            assert r.status_code == 200 and r.text == 'slow done'
        await asyncio.wait_for(task, 15)
        assert port_is_free(port)

    asyncio.run(main())


@pytest.mark.parametrize('interface,app_cls', INTERFACES)
def test_reload_under_requests_loses_nothing(interface, app_cls):
    app = app_cls()

    async def main():
        server = make(app, interface)
        task = await start(server)
        url = f'http://127.0.0.1:{server.bound_port}'
        results = []
        running = True

        async def hammer(client):
            while running:
                r = await client.get(f'{url}/', headers={'connection': 'close'})
                results.append(r.status_code)

        # One connection per request (as the process-worker reload tests do): an idle keep-alive
        # connection the old worker closes may race with the client's next request on it, which
        # HTTP/1.1 leaves to the client to retry.
        async with httpx.AsyncClient() as client:
            workers = [asyncio.create_task(hammer(client)) for _ in range(4)]
            slow = asyncio.create_task(client.get(f'{url}/slow', headers={'connection': 'close'}))
            # The slow request is in the app of the first generation when the reloads begin.
            await until(lambda: app.slow_started == 1, 'the slow request to reach the app')
            for _ in range(3):
                reloading = server.reload()
                assert reloading is not None
                await asyncio.wait_for(reloading, 15)
                # Requests answered by the new generation before the next reload.
                answered = len(results)
                await until(lambda answered=answered: len(results) >= answered + 10, 'requests after the reload')
            assert (await asyncio.wait_for(slow, 10)).text == 'slow done'
            running = False
            await asyncio.gather(*workers)
        assert results and all(code == 200 for code in results)
        await stop(server, task)

    asyncio.run(main())
    # Four generations, each with its own startup and shutdown.
    if interface == 'asgi':
        assert app.events.count('startup') == 4 and app.events.count('shutdown') == 4
    else:
        assert app.events.count('init') == 4 and app.events.count('del') == 4


def test_two_servers_in_one_loop():
    async def main():
        one = make(AsgiApp('one'), 'asgi')
        two = make(RsgiApp('two'), 'rsgi')
        t1, t2 = await start(one), await start(two)
        assert one.bound_port != two.bound_port
        async with httpx.AsyncClient() as client:
            assert (await client.get(f'http://127.0.0.1:{one.bound_port}/')).text == 'ok one'
            assert (await client.get(f'http://127.0.0.1:{two.bound_port}/')).text == 'ok two'
            await stop(one, t1)
            assert (await client.get(f'http://127.0.0.1:{two.bound_port}/')).text == 'ok two'
            await stop(two, t2)
        assert port_is_free(one.bound_port) and port_is_free(two.bound_port)

    asyncio.run(main())


def test_stop_before_serving_returns():
    async def main():
        server = make(AsgiApp(), 'asgi')
        server.stop()
        await asyncio.wait_for(server.serve(), 5)

    asyncio.run(main())


def test_cancelled_serve_stops_gracefully():
    app = AsgiApp()

    async def main():
        server = make(app, 'asgi')
        task = await start(server)
        port = server.bound_port
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        assert port_is_free(port)

    asyncio.run(main())
    assert app.events == ['startup', 'shutdown']


def test_wsgi_refused():
    with pytest.raises(ConfigurationError, match='WSGI is not supported'):
        Server(lambda environ, start_response: [], interface='wsgi')


def test_process_options_refused():
    with pytest.raises(ConfigurationError, match='workers'):
        Server(AsgiApp(), interface='asgi', workers=2)


def test_https_and_http2_over_tls(tmp_path):
    trustme = pytest.importorskip('trustme')
    ca = trustme.CA()
    issued = ca.issue_cert('127.0.0.1')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def main():
        server = make(AsgiApp(), 'asgi', ssl_cert=cert, ssl_key=key)
        task = await start(server)
        url = f'https://127.0.0.1:{server.bound_port}'
        async with httpx.AsyncClient(verify=context) as client:
            r = await client.get(f'{url}/proto')
            assert r.http_version == 'HTTP/1.1' and r.text == '1.1'
        async with httpx.AsyncClient(verify=context, http2=True) as client:
            r = await client.get(f'{url}/proto')
            assert r.http_version == 'HTTP/2' and r.text == '2'
        await stop(server, task)

    asyncio.run(main())


def test_unix_socket(tmp_path):
    path = tmp_path / 'embed.sock'

    async def main():
        server = Server(AsgiApp('uds'), interface='asgi', uds=path, log_enabled=False)
        task = await start(server)
        assert server.bound_port is None and path.exists()
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path))) as client:
            assert (await client.get('http://granian/')).text == 'ok uds'
        await stop(server, task)
        assert not path.exists()

    asyncio.run(main())


class FailingLifespan(AsgiApp):
    async def __call__(self, scope, receive, send):
        if scope['type'] == 'lifespan':
            await receive()
            await send({'type': 'lifespan.startup.failed', 'message': 'no database'})
            return
        await super().__call__(scope, receive, send)


def test_lifespan_startup_failure_raises_and_releases_the_port():
    async def main():
        server = make(FailingLifespan(), 'asgi')
        with pytest.raises(FatalError, match='no database'):
            await asyncio.wait_for(server.serve(), 10)
        assert port_is_free(server.bound_port)

    asyncio.run(main())


def test_serves_again_after_stop():
    async def main():
        server = make(AsgiApp(), 'asgi')
        for _ in range(2):
            task = await start(server)
            async with httpx.AsyncClient() as client:
                assert (await client.get(f'http://127.0.0.1:{server.bound_port}/')).status_code == 200
            await stop(server, task)

    asyncio.run(main())


def test_request_limits_apply_to_the_embedded_server():
    async def main():
        server = make(AsgiApp('limits'), 'asgi', max_body_size=100, ws_max_message_size=1024)
        task = await start(server)
        async with httpx.AsyncClient() as client:
            url = f'http://127.0.0.1:{server.bound_port}/'
            assert (await client.post(url, content=b'x' * 101)).status_code == 413
            assert (await client.get(url)).text == 'ok limits'
        await stop(server, task)

    asyncio.run(main())
