"""The server classes' Python API as granian 2.8.7 has it: option clamping, `serve()`'s loaders,
subclass overrides, `build_ssl_context`, the embedded server's constructor and life cycle, and
the ASGI error texts apps see.

Servers are real: processes started through `tests.apps.server_api_apps` (the Python API) or the
CLI, and embedded servers in the test's own loop, talked to by httpx.
"""

import asyncio
import logging
import pickle
import signal
import sys
import sysconfig

import httpx
import pytest
import trustme
from granian.errors import ConfigurationError, FatalError
from granian.log import logger as granian_logger
from granian.server.embed import Server as EmbeddedServer
from granian.server.mp import MPServer

from .apps.embed_apps import AsgiApp, RsgiApp
from .apps.server_api_apps import TARGET
from .rsgi_support import TIMEOUT, wait_for
from .server_support import ServerProcess, free_port, port_is_free, server_env

APPS = 'tests.apps.server_api_apps'
TARGET_TEXT = f'loaded {TARGET}'


# -- 1. clamping -----------------------------------------------------------------------------------------------------


@pytest.fixture
def granian_log(caplog):
    """caplog, receiving granian's logger directly: an earlier in-process server may have configured it
    not to propagate, or disabled it (`log_enabled=False`)."""
    saved = (granian_logger.disabled, granian_logger.level, granian_logger.propagate)
    granian_logger.disabled = False
    granian_logger.setLevel(logging.DEBUG)
    granian_logger.propagate = False
    granian_logger.addHandler(caplog.handler)
    yield caplog
    granian_logger.removeHandler(caplog.handler)
    granian_logger.disabled, granian_logger.level, granian_logger.propagate = saved


def warnings_of(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == granian_logger.name and r.levelno == logging.WARNING]


CLAMPED = [
    ('workers', 0, 1),
    ('backlog', 64, 128),
    ('runtime_threads', 0, 1),
    ('backpressure', -3, 1),
    ('runtime_blocking_threads', 0, 1),
]


@pytest.mark.parametrize('option,value,expected', CLAMPED)
def test_values_below_the_minimum_are_raised_with_a_warning(granian_log, option, value, expected):
    from granian import Granian

    server = Granian('x:app', **{option: value})
    assert getattr(server, option) == expected
    (warning,) = warnings_of(granian_log)
    assert option in warning and str(value) in warning and str(expected) in warning


@pytest.mark.parametrize('option,value,expected', CLAMPED)
def test_values_at_the_minimum_are_kept_without_a_warning(granian_log, option, value, expected):
    from granian import Granian

    server = Granian('x:app', **{option: expected})
    assert getattr(server, option) == expected
    assert warnings_of(granian_log) == []


def test_larger_values_are_kept(granian_log):
    from granian import Granian

    server = Granian('x:app', workers=3, backlog=2048, runtime_threads=2, backpressure=7, runtime_blocking_threads=9)
    assert (server.workers, server.backlog, server.runtime_threads) == (3, 2048, 2)
    assert (server.backpressure, server.runtime_blocking_threads) == (7, 9)
    assert warnings_of(granian_log) == []


# -- 2. names --------------------------------------------------------------------------------------------------------


def test_server_is_granian_and_build_gil_is_exported():
    import granian
    import granian.server
    from granian._granian import BUILD_GIL as native_build_gil
    from granian.server import BUILD_GIL as server_build_gil
    from granian.server.mp import MPServer

    assert granian.server.Server is granian.Granian
    assert type(native_build_gil) is bool and type(server_build_gil) is bool
    assert native_build_gil == server_build_gil
    # Built with the GIL exactly when this interpreter is not a free-threaded build.
    assert native_build_gil == (not sysconfig.get_config_var('Py_GIL_DISABLED'))
    if native_build_gil:
        assert granian.Granian is MPServer


# -- 3. serve() arguments refused ------------------------------------------------------------------------------------


def stopping_server(server_class=MPServer):
    """A server whose startup hook stops it at once: should a refusal not come, serve() returns
    (and the test fails) instead of serving."""
    server = server_class('tests.apps.server_api_apps:never_loaded', port=free_port(), log_enabled=False)
    server.on_startup(server.stop)
    return server


def test_serve_refuses_a_spawn_target():
    server = stopping_server()
    with pytest.raises(ConfigurationError, match='spawn_target'):
        server.serve(spawn_target=lambda *args: None)
    assert port_is_free(server.port)


@pytest.mark.parametrize('loader', ['tests.apps.server_api_apps:module_level_loader', 42])
def test_serve_refuses_a_target_loader_that_is_not_callable(loader):
    with pytest.raises(ConfigurationError, match='target_loader'):
        stopping_server().serve(target_loader=loader)


@pytest.mark.parametrize('wrap_loader', [True, False])
def test_process_workers_refuse_a_target_loader_that_does_not_pickle(wrap_loader):
    loader = lambda *args: None  # what does not pickle
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda: by reference, not found
        pickle.dumps(loader)
    with pytest.raises(ConfigurationError, match='target_loader'):
        stopping_server(MPServer).serve(target_loader=loader, wrap_loader=wrap_loader)


def test_a_picklable_target_loader_is_accepted():
    from .apps.server_api_apps import module_level_loader

    server = stopping_server(MPServer)
    server.serve(target_loader=module_level_loader)  # stopped by its startup hook, before any worker
    assert port_is_free(server.port)


# -- 4. and 5. the Python API in a real process ----------------------------------------------------------------------


@pytest.fixture
def scripts(server_pool):
    """scripts(mode) -> ServerProcess running `python -m tests.apps.server_api_apps <mode> <port>`."""

    def start(mode: str) -> ServerProcess:
        port = free_port()
        cmd = [sys.executable, '-m', APPS, mode, str(port)]
        return server_pool.launch(cmd, port=port, env=server_env(clean=True), name=mode)

    return start


def get_text(server: ServerProcess, path: str = '/') -> str:
    try:
        r = httpx.get(server.url + path, timeout=TIMEOUT, headers={'connection': 'close'})
    except httpx.HTTPError as exc:
        raise AssertionError(f'GET {path} failed: {exc!r}\n--- server log ---\n{server.log}') from None
    assert r.status_code == 200, server.log
    return r.text


def stop_cleanly(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.log


def test_target_loader_gets_the_target_string(scripts):
    server = scripts('loader')
    assert get_text(server) == TARGET_TEXT
    stop_cleanly(server)


def test_target_loader_without_wrapping_is_called_with_no_argument(scripts):
    server = scripts('loader-nowrap')
    assert get_text(server) == 'other loader called with 0 arguments'
    stop_cleanly(server)


def test_target_loader_defined_in_the_script_being_run(scripts):
    # `python -m pkg.script` / `python script.py` passing a function of its own: granian 2.8.7's
    # workers (multiprocessing, fork or spawn) find `__main__.module_level_loader`.
    server = scripts('script-loader')
    assert get_text(server) == TARGET_TEXT
    stop_cleanly(server)


def test_subclass_defined_in_the_script_being_run(scripts):
    # A `Granian` subclass written in the script that serves with it (`__main__.MarkedServer`).
    server = scripts('script-subclass')
    assert int(get_text(server)) != server.proc.pid  # answered by a worker
    stop_cleanly(server)
    assert marks(server.log)[-2:] == ['MARK shutdown begin exit_code=0', 'MARK shutdown end']


def marks(log: str) -> list:
    return [line for line in log.splitlines() if line.startswith('MARK ')]


def position(log: str, text: str) -> int:
    assert text in log, f'{text!r} not in the log:\n{log}'
    return log.index(text)


def test_subclass_overrides_run_in_order(scripts):
    server = scripts('subclass')
    first_pid = get_text(server)
    wait_for(lambda: 'is serving' in server.log, timeout=TIMEOUT, what='a worker serving')
    log = server.log
    assert marks(log) == ['MARK startup begin', 'MARK startup end']
    # The overrides wrap the base class's: it starts the workers, which serve afterwards.
    assert position(log, 'MARK startup begin') < position(log, 'Listening at:') < position(log, 'MARK startup end')
    assert position(log, 'MARK startup end') < position(log, 'is serving')

    server.signal(signal.SIGHUP)
    hup = f'MARK signal_handler_reload {int(signal.SIGHUP)}'
    wait_for(lambda: hup in server.log, timeout=TIMEOUT, what=f'{hup!r} in the log')
    # Answering all along, until a new worker answers.
    wait_for(lambda: get_text(server) != first_pid, timeout=30, what='the worker replaced')
    assert int(get_text(server)) != int(first_pid)
    log = server.log
    assert position(log, hup) < position(log, 'Reloading (SIGHUP)')
    assert 'MARK shutdown' not in log

    stop_cleanly(server)
    log = server.log
    assert marks(log) == [
        'MARK startup begin',
        'MARK startup end',
        hup,
        'MARK shutdown begin exit_code=0',
        'MARK shutdown end',
    ]
    assert position(log, 'Shutting down (SIGTERM)') < position(log, 'MARK shutdown begin')
    assert (
        position(log, 'MARK shutdown begin') < position(log, 'Shutdown complete') < position(log, 'MARK shutdown end')
    )


# -- 6. build_ssl_context --------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('server-api-tls')
    ca = trustme.CA()
    issued = ca.issue_cert('127.0.0.1')
    issued.cert_chain_pems[0].write_to_path(str(d / 'cert.pem'))
    issued.private_key_pem.write_to_path(str(d / 'key.pem'))
    ca.cert_pem.write_to_path(str(d / 'ca.pem'))
    return d


def test_ssl_ctx_with_tls(tls_files, monkeypatch):
    from granian import Granian

    monkeypatch.chdir(tls_files)  # relative paths: ssl_ctx holds them resolved
    server = Granian('x:app', ssl_cert='cert.pem', ssl_key='key.pem')
    ctx = server.ssl_ctx
    assert isinstance(ctx, tuple) and len(ctx) == 8
    assert ctx == (
        True,
        str(tls_files.resolve() / 'cert.pem'),
        str(tls_files.resolve() / 'key.pem'),
        None,
        'tls1.3',
        None,
        [],
        False,
    )


def test_ssl_ctx_with_client_verification(tls_files):
    from granian import Granian

    server = Granian(
        'x:app',
        ssl_cert=tls_files / 'cert.pem',
        ssl_key=tls_files / 'key.pem',
        ssl_protocol_min='tls1.2',
        ssl_ca=tls_files / 'ca.pem',
        ssl_client_verify=True,
    )
    assert server.ssl_ctx[0] is True
    assert server.ssl_ctx[4:] == ('tls1.2', str((tls_files / 'ca.pem').resolve()), [], True)


def test_build_ssl_context_can_be_called_again(tls_files):
    from granian import Granian
    from granian.constants import SSLProtocols

    server = Granian('x:app')
    assert server.ssl_ctx[0] is False
    server.build_ssl_context(tls_files / 'cert.pem', tls_files / 'key.pem', None, SSLProtocols.tls13, None, [], False)
    assert server.ssl_ctx[:3] == (True, str((tls_files / 'cert.pem').resolve()), str((tls_files / 'key.pem').resolve()))
    assert server.ssl_ctx[4] == str(SSLProtocols.tls13) == 'tls1.3'


def test_ssl_ctx_without_tls():
    from granian import Granian

    ctx = Granian('x:app').ssl_ctx
    assert len(ctx) == 8 and ctx[0] is False
    assert ctx == (False, None, None, None, 'tls1.3', None, [], False)


def test_ssl_cert_without_key_is_refused(tls_files):
    from granian import Granian

    with pytest.raises(ConfigurationError, match='ssl_key'):
        Granian('x:app', ssl_cert=tls_files / 'cert.pem')


def test_client_verification_without_ca_is_refused(tls_files):
    from granian import Granian

    with pytest.raises(ConfigurationError, match='ssl_client_verify'):
        Granian('x:app', ssl_cert=tls_files / 'cert.pem', ssl_key=tls_files / 'key.pem', ssl_client_verify=True)


def test_fatal_error_catches_configuration_errors(tls_files):
    from granian import Granian

    assert issubclass(ConfigurationError, FatalError)
    caught = None
    try:
        Granian('x:app', ssl_cert=tls_files / 'cert.pem')
    except FatalError as exc:
        caught = exc
    assert isinstance(caught, ConfigurationError)


# -- 7. the embedded server ------------------------------------------------------------------------------------------


async def start_embedded(server: EmbeddedServer) -> 'asyncio.Task[None]':
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(server.started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        raise AssertionError('serve() returned before serving')
    assert waiter in done, 'the server did not start within 10s'
    return task


async def stop_embedded(server: EmbeddedServer, task: 'asyncio.Task[None]') -> None:
    server.stop()
    await asyncio.wait_for(task, 15)
    assert task.exception() is None


EMBEDDED = [('asgi', AsgiApp), ('rsgi', RsgiApp)]


@pytest.mark.parametrize('interface,app_cls', EMBEDDED)
@pytest.mark.parametrize('call', ['positional', 'keyword'])
def test_embedded_constructor_forms_serve(interface, app_cls, call):
    app = app_cls('made')
    port = free_port()

    async def main():
        if call == 'positional':
            server = EmbeddedServer(app, '127.0.0.1', port, interface=interface, log_enabled=False)
        else:
            server = EmbeddedServer(target=app, port=port, interface=interface, log_enabled=False)
        assert server.target is app and server.port == port
        task = await start_embedded(server)
        assert server.bound_port == port
        async with httpx.AsyncClient() as client:
            r = await client.get(f'http://127.0.0.1:{port}/')
            assert r.status_code == 200 and r.text == 'ok made'
        await stop_embedded(server, task)
        assert port_is_free(port)

    asyncio.run(main())


@pytest.mark.parametrize('interface,app_cls', EMBEDDED)
def test_embedded_factory_is_called_when_serving_starts(interface, app_cls):
    calls = []

    def factory():
        calls.append('called')
        return app_cls('from factory')

    async def main():
        server = EmbeddedServer(factory, port=0, interface=interface, factory=True, log_enabled=False)
        assert calls == []
        task = await start_embedded(server)
        assert calls == ['called']
        async with httpx.AsyncClient() as client:
            r = await client.get(f'http://127.0.0.1:{server.bound_port}/')
            assert r.status_code == 200 and r.text == 'ok from factory'
        await stop_embedded(server, task)
        assert calls == ['called']

    asyncio.run(main())


def test_embedded_factory_needs_a_callable():
    with pytest.raises(ConfigurationError, match='factory'):
        EmbeddedServer('tests.apps.embed_apps:AsgiApp', interface='asgi', factory=True)


def test_embedded_serve_refuses_a_spawn_target():
    port = free_port()

    async def main():
        server = EmbeddedServer(AsgiApp(), port=port, interface='asgi', log_enabled=False)
        with pytest.raises(ConfigurationError, match='spawn_target'):
            await asyncio.wait_for(server.serve(spawn_target=lambda *args: None), 10)
        assert port_is_free(port)

    asyncio.run(main())


def test_embedded_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match='no_such_option'):
        EmbeddedServer(AsgiApp(), interface='asgi', no_such_option=1)


def test_embedded_refuses_more_workers():
    EmbeddedServer(AsgiApp(), interface='asgi', workers=1)  # the one worker it runs: accepted
    with pytest.raises(ConfigurationError, match='workers'):
        EmbeddedServer(AsgiApp(), interface='asgi', workers=2)


def test_embedded_default_backlog():
    from granian import Granian

    assert EmbeddedServer(AsgiApp(), interface='asgi').backlog == 128
    assert Granian('x:app').backlog == 1024


@pytest.mark.parametrize('interface,app_cls', EMBEDDED)
def test_embedded_startup_then_shutdown(interface, app_cls):
    app = app_cls('background')

    async def main():
        server = EmbeddedServer(app, port=0, interface=interface, log_enabled=False)
        assert server.startup(None, None) is None  # returns at once: serving goes on in the background
        await asyncio.wait_for(server.started.wait(), 10)
        port = server.bound_port
        async with httpx.AsyncClient() as client:
            r = await client.get(f'http://127.0.0.1:{port}/')
            assert r.status_code == 200 and r.text == 'ok background'
        await asyncio.wait_for(server.shutdown(), 15)
        assert port_is_free(port)

    asyncio.run(main())
    assert app.events == (['startup', 'shutdown'] if interface == 'asgi' else ['init', 'del'])


# -- 8. ASGI error texts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'path,expected',
    [
        ('/bogus', 'RuntimeError|Unsupported ASGI message'),
        ('/body-first', 'RuntimeError|ASGI flow error: Response not started'),
        ('/start-twice', 'RuntimeError|ASGI flow error: Response already started'),
        ('/', 'ok'),
    ],
)
def test_asgi_errors_apps_see(start_server, path, expected):
    server = start_server(f'{APPS}:asgi_errors', interface='asgi')
    r = httpx.get(server.url + path, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.text == expected
