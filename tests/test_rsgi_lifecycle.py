"""RSGI server life cycle: signals, app hooks, targets, loops, HTTP modes, CLI options and env vars, memory."""

import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from .rsgi_support import TIMEOUT, FrameH2, RawHTTP1, request_bytes, wait_for
from .server_support import ROOT, free_port, granian_cmd, server_env, wait_port

EXTRA = 'tests.apps.rsgi_extra:app'
BASE = 'tests.apps.rsgi_app'


@pytest.fixture
def launch(server_pool):
    """launch(*cli_args, port=..., env={...}) -> ServerProcess: the CLI exactly as given (no implicit options),
    without this process's GRANIAN_* settings."""

    def run(*args: str, port: int, env=None):
        return server_pool.launch(granian_cmd(*args), port=port, env=server_env(env, clean=True), name='launch')

    return run


def run_cli(*args: str, env=None, cwd=ROOT, timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs the CLI to its exit (for start-up failures), capturing its output."""
    return subprocess.run(
        granian_cmd(*args),
        check=False,
        cwd=cwd,
        env=server_env(env, clean=True),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'Traceback' not in output, output
    matching = [line for line in output.splitlines() if all(needle in line for needle in needles)]
    assert len(matching) == 1, f'expected one line with {needles!r} in:\n{output}'
    return matching[0]


def serves(url: str, h2: bool = False) -> httpx.Response:
    with httpx.Client(timeout=TIMEOUT, http1=not h2, http2=h2) as client:
        response = client.get(url + '/scope')
    assert response.status_code == 200
    assert response.http_version == ('HTTP/2' if h2 else 'HTTP/1.1')
    return response


# -- signals ---------------------------------------------------------------------------------------------------------


def test_sigterm_completes_in_flight_request(start_server):
    srv = start_server(EXTRA)
    result = {}

    def do_request():
        try:
            with httpx.Client(timeout=TIMEOUT) as client:
                result['response'] = client.get(f'{srv.url}/slow?s=2&id=sigterm-h1')
        except httpx.HTTPError as exc:  # reported by the assertions below
            result['error'] = exc

    thread = threading.Thread(target=do_request)
    thread.start()
    try:
        wait_for(lambda: 'slow request started sigterm-h1' in srv.log, what='the request to reach the app')
        srv.signal(signal.SIGTERM)
    finally:
        thread.join(TIMEOUT + 5)
    assert 'error' not in result, result
    assert result['response'].status_code == 200
    assert result['response'].text == 'slept'
    assert srv.wait() == 0
    assert 'Shutdown complete' in srv.log


def test_sigterm_completes_in_flight_request_h2(start_server):
    # Frame-level client: httpx/h2 cannot follow a graceful GOAWAY (python-hyper/h2#1181).
    srv = start_server(EXTRA)
    with FrameH2(srv.port) as conn:
        stream = conn.request('GET', '/slow?s=2&id=sigterm-h2')
        wait_for(lambda: 'slow request started sigterm-h2' in srv.log, what='the request to reach the app')
        srv.signal(signal.SIGTERM)
        response = conn.response(stream)
    assert response.status == 200
    assert response.body == b'slept'
    assert srv.wait() == 0
    assert 'Shutdown complete' in srv.log


def test_sigterm_idle_exits_zero(start_server):
    srv = start_server(EXTRA)
    serves(srv.url)
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0


def test_sigint_exits_zero(start_server):
    srv = start_server(EXTRA)
    serves(srv.url)
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0


def test_sigterm_with_idle_keep_alive_connection(start_server):
    srv = start_server(EXTRA)
    with RawHTTP1(srv.port) as conn:
        conn.send(request_bytes('GET', '/'))
        assert conn.read_response().status == 200
        # The connection stays open and idle: shutdown must not wait for it forever.
        srv.signal(signal.SIGTERM)
        assert srv.wait() == 0


# -- app hooks, __rsgi__, factory, working dir ----------------------------------------------------------------------


def test_rsgi_preferred_over_call(start_server):
    srv = start_server(f'{BASE}:hooks_app')
    for h2 in (False, True):
        with httpx.Client(timeout=TIMEOUT, http1=not h2, http2=h2) as client:
            response = client.get(srv.url + '/')
        assert response.status_code == 200
        assert response.text == 'called __rsgi__'


def test_init_and_del_hooks_called_once(start_server, tmp_path):
    hooks = tmp_path / 'hooks.txt'
    srv = start_server(f'{BASE}:hooks_app', env={'GRANIAN_TEST_HOOKS': str(hooks)})
    with httpx.Client(timeout=TIMEOUT) as client:
        for _ in range(5):
            assert client.get(srv.url + '/').text == 'called __rsgi__'
    assert hooks.read_text().splitlines() == ['init']
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert hooks.read_text().splitlines() == ['init', 'del']


def test_hooks_can_run_the_loop_themselves(start_server, tmp_path):
    hooks = tmp_path / 'hooks.txt'
    srv = start_server('tests.apps.rsgi_extra:loop_hooks_app', env={'GRANIAN_TEST_HOOKS': str(hooks)})
    assert httpx.get(srv.url + '/', timeout=TIMEOUT).text == 'initialised in loop'
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert hooks.read_text().splitlines() == ['init running=False', 'del running=False torn down in loop']


def test_factory_option(start_server):
    srv = start_server(f'{BASE}:factory', '--factory')
    assert httpx.get(srv.url + '/', timeout=TIMEOUT).text == 'from factory'


def test_factory_env_var(start_server):
    srv = start_server(f'{BASE}:factory', env={'GRANIAN_FACTORY': 'true'})
    assert httpx.get(srv.url + '/', timeout=TIMEOUT).text == 'from factory'


WD_APP = """
import os

async def app(scope, proto):
    proto.response_str(200, [], os.getcwd() + '|' + os.path.dirname(os.path.abspath(__file__)))
"""


def test_working_dir_option(start_server, tmp_path):
    app_dir = tmp_path / 'appdir'
    app_dir.mkdir()
    (app_dir / 'wd_only_app.py').write_text(WD_APP)
    srv = start_server('wd_only_app:app', '--working-dir', str(app_dir))
    cwd, _, module_dir = httpx.get(srv.url + '/', timeout=TIMEOUT).text.partition('|')
    assert os.path.realpath(cwd) == os.path.realpath(app_dir)
    assert os.path.realpath(module_dir) == os.path.realpath(app_dir)


# -- bad targets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('target', 'needles'),
    [
        ('tests.apps.no_such_module:app', ('tests.apps.no_such_module', 'import')),
        (f'{BASE}:no_such_attr', ('no_such_attr',)),
        (f'{BASE}:not_callable', ('not_callable', 'not callable')),
    ],
    ids=['missing-module', 'missing-attribute', 'not-callable'],
)
def test_bad_target_one_line_error(target, needles):
    result = run_cli('--interface', 'rsgi', '--port', str(free_port()), target)
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize(
    ('source', 'needle'),
    [
        ("raise ImportError('broken on purpose')\n", 'broken on purpose'),
        ('def app(:\n', 'broken_mod'),
        ('import no_such_dependency_xyz\n\nasync def app(scope, proto): ...\n', 'no_such_dependency_xyz'),
    ],
    ids=['raises', 'syntax-error', 'missing-dependency'],
)
def test_broken_module_one_line_error(tmp_path, source, needle):
    (tmp_path / 'broken_mod.py').write_text(source)
    result = run_cli('--port', str(free_port()), '--working-dir', str(tmp_path), 'broken_mod:app')
    assert_one_line_error(result, needle)


def test_factory_that_raises_one_line_error(tmp_path):
    (tmp_path / 'bad_factory.py').write_text("def make():\n    raise RuntimeError('factory failed')\n")
    result = run_cli('--port', str(free_port()), '--working-dir', str(tmp_path), '--factory', 'bad_factory:make')
    assert_one_line_error(result, 'factory failed')


# -- event loops ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('loop', ['uvloop', 'rloop'])
def test_missing_loop_package_refused(loop):
    if importlib.util.find_spec(loop) is not None:
        pytest.skip(f'{loop} is installed here')
    result = run_cli('--port', str(free_port()), '--loop', loop, EXTRA)
    line = assert_one_line_error(result, loop)
    assert result.returncode == 2
    assert 'Error' in line


@pytest.mark.skipif(sys.platform == 'win32', reason='winloop is allowed on Windows')
def test_winloop_refused_off_windows():
    result = run_cli('--port', str(free_port()), '--loop', 'winloop', EXTRA)
    line = assert_one_line_error(result, 'winloop')
    assert 'Windows' in line
    assert result.returncode == 2


def test_missing_loop_refused_from_env():
    if importlib.util.find_spec('uvloop') is not None:
        pytest.skip('uvloop is installed here')
    result = run_cli('--port', str(free_port()), EXTRA, env={'GRANIAN_LOOP': 'uvloop'})
    assert_one_line_error(result, 'uvloop')


@pytest.mark.parametrize('loop', ['asyncio', 'auto'])
def test_available_loops_serve(start_server, loop):
    srv = start_server(EXTRA, '--loop', loop)
    serves(srv.url)
    serves(srv.url, h2=True)
    assert f'loop: {loop}' in srv.log


# -- HTTP modes ------------------------------------------------------------------------------------------------------


def test_http1_mode_serves_http1(start_server):
    srv = start_server(EXTRA, '--http', '1')
    assert serves(srv.url).json()['http_version'] == '1.1'


def test_http1_mode_refuses_http2(start_server):
    srv = start_server(EXTRA, '--http', '1')
    with pytest.raises(httpx.HTTPError):
        serves(srv.url, h2=True)
    with RawHTTP1(srv.port) as conn:
        conn.send(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
        assert conn.is_closed_by_server()
        assert not conn.buf.startswith(b'\x00'), 'the server answered with HTTP/2 frames'
    serves(srv.url)


def test_http2_mode_serves_http2(start_server):
    srv = start_server(EXTRA, '--http', '2')
    assert serves(srv.url, h2=True).json()['http_version'] == '2'


def test_http2_mode_refuses_http1(start_server):
    srv = start_server(EXTRA, '--http', '2')
    with pytest.raises(httpx.HTTPError):
        serves(srv.url)
    with RawHTTP1(srv.port) as conn:
        conn.send(request_bytes('GET', '/'))
        assert conn.is_closed_by_server()
        assert not conn.buf.startswith(b'HTTP/1'), 'the server answered in HTTP/1'
    serves(srv.url, h2=True)


def test_http_auto_serves_both(start_server):
    srv = start_server(EXTRA, '--http', 'auto')
    serves(srv.url)
    serves(srv.url, h2=True)


# -- env vars and CLI options -----------------------------------------------------------------------------------------


def test_env_port_interface_http(launch):
    port = free_port()
    srv = launch(EXTRA, port=port, env={'GRANIAN_PORT': str(port), 'GRANIAN_INTERFACE': 'rsgi', 'GRANIAN_HTTP': '2'})
    assert serves(srv.url, h2=True).json()['server'] == f'127.0.0.1:{port}'
    assert 'interface: rsgi, HTTP: 2' in srv.log


def test_env_interface_is_read(launch):
    port = free_port()
    srv = launch('--port', str(port), 'tests.apps.wsgi_app:app', port=port, env={'GRANIAN_INTERFACE': 'wsgi'})
    assert 'interface: wsgi' in srv.log
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(srv.url + '/')
    # The WSGI app itself answers (under another interface it could not).
    assert response.status_code == 200
    assert response.text == 'Hello, world!'
    result = run_cli('--port', str(free_port()), EXTRA, env={'GRANIAN_INTERFACE': 'nope'})
    line = assert_one_line_error(result, 'nope')
    assert result.returncode == 2
    assert 'Error' in line


def test_cli_option_beats_env(launch):
    port, other = free_port(), free_port()
    srv = launch('--port', str(port), EXTRA, port=port, env={'GRANIAN_PORT': str(other)})
    assert serves(srv.url).json()['server'] == f'127.0.0.1:{port}'
    srv2 = launch('--http', 'auto', '--port', str(other), EXTRA, port=other, env={'GRANIAN_HTTP': '2'})
    assert 'HTTP: auto' in srv2.log
    serves(srv2.url)
    serves(srv2.url, h2=True)


def test_env_host(launch):
    port = free_port()
    srv = launch(EXTRA, port=port, env={'GRANIAN_PORT': str(port), 'GRANIAN_HOST': '127.0.0.1'})
    assert serves(srv.url).json()['server'] == f'127.0.0.1:{port}'


def test_env_http1_buffer_size(start_server):
    srv = start_server(EXTRA, env={'GRANIAN_HTTP1_BUFFER_SIZE': '8192'})
    headers = [(f'x-pad-{i}', 'a' * 2048) for i in range(10)]
    with RawHTTP1(srv.port) as conn:
        conn.send(request_bytes('GET', '/', headers=headers))
        assert conn.read_response().status == 431


def test_env_header_read_timeout(start_server):
    srv = start_server(EXTRA, env={'GRANIAN_HTTP1_HEADER_READ_TIMEOUT': '500'})
    with RawHTTP1(srv.port) as conn:
        conn.send(b'GET / HT')
        assert conn.is_closed_by_server()


def test_env_log_level(start_server):
    srv = start_server(EXTRA, env={'GRANIAN_LOG_LEVEL': 'error'})
    assert httpx.get(srv.url + '/error', timeout=TIMEOUT).status_code == 500
    wait_for(lambda: 'boom from the app' in srv.log, what='the error log')
    assert '[INFO]' not in srv.log


def test_log_level_option(start_server):
    srv = start_server(EXTRA, '--log-level', 'warning')
    assert httpx.get(srv.url + '/error', timeout=TIMEOUT).status_code == 500
    wait_for(lambda: 'boom from the app' in srv.log, what='the error log')
    assert 'Listening at' not in srv.log


@pytest.mark.parametrize(
    'args',
    [
        ('--runtime-threads', '2'),
        ('--runtime-mode', 'mt'),
        ('--runtime-mode', 'st'),
        ('--runtime-blocking-threads', '4'),
        ('--blocking-threads', '1'),
        ('--backlog', '256'),
        ('--backpressure', '1'),
        ('--http1-pipeline-flush',),
        ('--http2-adaptive-window',),
        ('--http2-keep-alive-interval', '1000', '--http2-keep-alive-timeout', '5s'),
        ('--http2-initial-connection-window-size', '2097152'),
        ('--http2-max-send-buffer-size', '65536'),
        ('--http2-max-headers-size', '65536'),
        ('--no-ws',),
        ('--host', '127.0.0.1'),
        ('--workers', '1'),
        ('--workers-kill-timeout', '5'),
    ],
    ids=lambda args: ' '.join(args),
)
def test_accepted_options_serve(start_server, args):
    srv = start_server(EXTRA, *args)
    serves(srv.url)
    serves(srv.url, h2=True)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.post(srv.url + '/echo', content=b'x' * 100_000).content == b'x' * 100_000


def test_backpressure_one_queues_concurrent_requests(start_server):
    srv = start_server(EXTRA, '--backpressure', '1')
    results = []

    def slow():
        results.append(httpx.get(srv.url + '/slow?s=0.5&id=bp-first', timeout=TIMEOUT).text)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        srv.wait_log('slow request started bp-first')
        # Sent while the first request holds the one slot: it waits for the slot, then is served.
        assert httpx.get(srv.url + '/slow?s=0&id=bp-second', timeout=TIMEOUT).text == 'slept'
    finally:
        thread.join(TIMEOUT + 5)
    assert results == ['slept']
    log = srv.log
    assert log.index('slow request finished bp-first') < log.index('slow request started bp-second'), log


@pytest.mark.parametrize(
    'args',
    [
        ('--http', '3'),
        ('--loop', 'nope'),
        ('--backlog', '10'),
        ('--http1-buffer-size', '100'),
        ('--http1-header-read-timeout', '0'),
        ('--interface', 'nope'),
        ('--port', 'abc'),
        ('--workers', '0'),
        ('--task-impl', 'trio'),
    ],
    ids=lambda args: ' '.join(args),
)
def test_invalid_options_refused(args):
    result = run_cli(*args, EXTRA)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'Error' in result.stderr
    assert 'Traceback' not in result.stdout + result.stderr
    assert args[0] in result.stderr or args[0].lstrip('-').replace('-', '_') in result.stderr


def test_version_option():
    result = run_cli('--version')
    assert result.returncode == 0
    # As granian 2.8.7: the program name is how it was started (`python -m granian` here).
    assert result.stdout.startswith('python -m granian ')


def test_help_lists_env_vars():
    result = run_cli('--help')
    assert result.returncode == 0
    for env in ('GRANIAN_PORT', 'GRANIAN_INTERFACE', 'GRANIAN_HTTP', 'GRANIAN_LOOP', 'GRANIAN_HTTP1_BUFFER_SIZE'):
        assert env in result.stdout


def test_port_in_use_fails_cleanly(start_server):
    srv = start_server(EXTRA)
    result = run_cli('--port', str(srv.port), EXTRA)
    assert result.returncode != 0
    assert 'Traceback' not in result.stdout + result.stderr
    serves(srv.url)


def test_pid_file_option(start_server, tmp_path):
    pid_file = tmp_path / 'granian.pid'
    srv = start_server(EXTRA, '--pid-file', str(pid_file))
    serves(srv.url)
    assert pid_file.read_text().strip() == str(srv.proc.pid)
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert not pid_file.exists()


# -- Python API in a 'spawn' child ---------------------------------------------------------------------------------


def test_serve_in_spawn_context_process():
    from .apps.rsgi_extra import serve_in_process

    port = free_port()
    ctx = multiprocessing.get_context('spawn')
    child = ctx.Process(target=serve_in_process, args=(port, str(ROOT)))
    child.start()
    try:
        wait_port(port, child.is_alive, timeout=20)
        url = f'http://127.0.0.1:{port}'
        assert httpx.get(url + '/', timeout=TIMEOUT).text == 'Hello, world!'
        # The spawned process is the main process: a worker process of its own answers.
        assert parent_pid(int(httpx.get(url + '/pid', timeout=TIMEOUT).text)) == child.pid
        serves(url, h2=True)
        child.terminate()
        child.join(15)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)


# -- request bodies stream: memory stays bounded ------------------------------------------------------------------

UPLOAD_SIZE = 300 * 1024 * 1024
RSS_LIMIT_KIB = 150 * 1024


def parent_pid(pid: int) -> int:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('PPid:'):
                return int(line.split()[1])
    raise AssertionError('no PPid in /proc status')


def vm_hwm_kib(pid: int) -> int:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise AssertionError('no VmHWM in /proc status')


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='needs /proc')
@pytest.mark.parametrize('proto', ['h1', 'h2'])
def test_streaming_upload_memory_bounded(start_server, proto):
    srv = start_server(EXTRA)
    chunk = b'u' * (1024 * 1024)

    def body():
        for _ in range(UPLOAD_SIZE // len(chunk)):
            yield chunk

    h2 = proto == 'h2'
    with httpx.Client(timeout=httpx.Timeout(TIMEOUT, read=60), http1=not h2, http2=h2) as client:
        response = client.post(srv.url + '/upload', content=body())
    assert response.status_code == 200
    info = response.json()
    assert info['total'] == UPLOAD_SIZE
    assert info['chunks'] > 1
    assert parent_pid(info['pid']) == srv.proc.pid  # measured where the upload went: the worker
    peak = vm_hwm_kib(info['pid'])
    assert peak < RSS_LIMIT_KIB, f'server peak RSS {peak} KiB for a {UPLOAD_SIZE >> 20} MiB upload'
