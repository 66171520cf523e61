"""The forwarded-header wrappers under real servers.

- RSGI (and ASGI/WSGI once those interfaces land) under our own server;
- ASGI under uvicorn and WSGI under wsgiref, in a fresh virtual env holding nothing of
  granian but the granian-proxies wheel built from this repository.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from .server_support import ROOT, free_port

UVICORN = 'uvicorn==0.54.0'
TIMEOUT = 10
SETUP_TIMEOUT = 240
UNTRUSTED = {'PROXIES_TEST_TRUSTED': '10.1.2.3, 2001:db8::/32'}
pytestmark = pytest.mark.timeout(300)  # the first venv test builds the wheel and installs uvicorn

FORWARDED = [
    ('x-forwarded-for', '6.6.6.6, 127.0.0.1'),  # written by the client: a spoof attempt
    ('x-forwarded-for', '203.0.113.7'),  # appended by the (trusted) proxy
    ('x-forwarded-proto', 'https'),
    ('x-custom', 'kept'),
]


def _client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, trust_env=False)


def _get(base_url: str, headers=(), path: str = '/info?q=1') -> dict:
    with _client() as client:
        response = client.get(base_url + path, headers=list(headers))
    assert response.status_code == 200, response.text
    return response.json()


def _post(base_url: str, headers=(), body: bytes = b'payload') -> dict:
    with _client() as client:
        response = client.post(base_url + '/upload', headers=list(headers), content=body)
    assert response.status_code == 200, response.text
    return response.json()


# -- under our server ---------------------------------------------------------------------


def test_rsgi_wrapper_under_granian_trusted_proxy(start_server):
    server = start_server('tests.apps.proxies_apps:rsgi_app')

    data = _get(server.url, FORWARDED)
    assert data['client'] == '203.0.113.7:0'
    assert data['scheme'] == 'https'
    # Everything else is the server's scope, unchanged.
    assert data['proto'] == 'http'
    assert data['method'] == 'GET'
    assert data['path'] == '/info'
    assert data['query_string'] == 'q=1'
    assert data['server'] == f'127.0.0.1:{server.port}'
    assert data['forwarded_for'] == ['6.6.6.6, 127.0.0.1', '203.0.113.7']
    assert data['custom'] == 'kept'
    # The wrapped app's __rsgi_init__ ran, through the wrapper.
    assert data['init_calls'] == 1

    data = _post(server.url, [('x-forwarded-for', '[2001:db8::7]:4711')])
    assert data['client'] == '[2001:db8::7]:4711'
    assert data['scheme'] == 'http'
    assert data['method'] == 'POST'
    assert data['body'] == 'payload'

    # No forwarded headers, or unusable ones: the real peer.
    for headers in ([], [('x-forwarded-for', 'unknown'), ('x-forwarded-proto', 'gopher')]):
        data = _get(server.url, headers)
        host, _, port = data['client'].rpartition(':')
        assert host == '127.0.0.1' and port != '0'
        assert data['scheme'] == 'http'


def test_rsgi_wrapper_under_granian_untrusted_peer(start_server):
    server = start_server('tests.apps.proxies_apps:rsgi_app', env=UNTRUSTED)
    data = _get(server.url, FORWARDED)
    assert data['client'].startswith('127.0.0.1:')
    assert data['scheme'] == 'http'
    assert data['custom'] == 'kept'


def test_asgi_wrapper_under_granian(start_server):
    server = start_server('tests.apps.proxies_apps:asgi_app', interface='asgi')
    data = _get(server.url, FORWARDED)
    assert data['client'] == ['203.0.113.7', 0]
    assert data['scheme'] == 'https'
    assert data['path'] == '/info' and data['query_string'] == 'q=1' and data['custom'] == 'kept'
    data = _post(server.url, [('x-forwarded-for', '[2001:db8::7]:4711')])
    assert data['client'] == ['2001:db8::7', 4711]
    assert data['body'] == 'payload'

    untrusted = start_server('tests.apps.proxies_apps:asgi_app', interface='asgi', env=UNTRUSTED)
    data = _get(untrusted.url, FORWARDED)
    assert data['client'][0] == '127.0.0.1'
    assert data['scheme'] == 'http'


def test_wsgi_wrapper_under_granian(start_server):
    server = start_server('tests.apps.proxies_apps:wsgi_app', interface='wsgi')
    data = _get(server.url, FORWARDED)
    assert data['client'] == '203.0.113.7'
    assert data['scheme'] == 'https'
    assert data['path'] == '/info' and data['query_string'] == 'q=1' and data['custom'] == 'kept'
    data = _post(server.url)
    assert data['client'] == '127.0.0.1'
    assert data['body'] == 'payload'

    untrusted = start_server('tests.apps.proxies_apps:wsgi_app', interface='wsgi', env=UNTRUSTED)
    data = _get(untrusted.url, FORWARDED)
    assert data['client'] == '127.0.0.1'
    assert data['scheme'] == 'http'


# -- the wheel alone, under other servers -------------------------------------------------


class ProxiesVenv:
    def __init__(self, root: Path, wheel: Path, python: Path, env: dict):
        self.root = root
        self.wheel = wheel
        self.python = python
        self.env = env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.python), *args],
            check=False,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def serve(self, pool, port: int, *args: str, extra_env=None):
        """`python *args` of this env as a server on `port` (in the test's pool), once it listens."""
        env = {**self.env, 'PYTHONUNBUFFERED': '1', **(extra_env or {})}
        return pool.launch([str(self.python), *args], port=port, env=env, cwd=self.root, name='venv')


def _uv() -> str:
    uv = os.environ.get('UV') or shutil.which('uv')
    if not uv:
        pytest.fail('uv is needed to build the granian-proxies wheel')
    return uv


def _check(cmd: list, **kwargs) -> None:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=SETUP_TIMEOUT, **kwargs)
    if result.returncode != 0:
        pytest.fail(f'{" ".join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')


@pytest.fixture(scope='session')
def proxies_venv(tmp_path_factory) -> ProxiesVenv:
    """A virtual env with the built granian-proxies wheel and uvicorn, and nothing else of granian."""
    root = tmp_path_factory.mktemp('proxies-venv')
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME')}
    dist = root / 'dist'
    _check([uv, 'build', '--wheel', '--package', 'granian-proxies', '-o', str(dist)], cwd=ROOT, env=env)
    wheels = list(dist.glob('granian_proxies-*.whl'))
    assert len(wheels) == 1, wheels
    venv = root / 'venv'
    _check([uv, 'venv', '--python', sys.executable, str(venv)], cwd=root, env=env)
    python = venv / 'bin' / 'python'
    _check([uv, 'pip', 'install', '--python', str(python), str(wheels[0]), UVICORN], cwd=root, env=env)
    return ProxiesVenv(root, wheels[0], python, env)


def test_wheel_ships_only_the_utils_package(proxies_venv):
    with zipfile.ZipFile(proxies_venv.wheel) as wheel:
        names = wheel.namelist()
        metadata_name = next(n for n in names if n.endswith('.dist-info/METADATA'))
        metadata = wheel.read(metadata_name).decode()
    assert sorted(n for n in names if '.dist-info/' not in n) == [
        'granian/utils/__init__.py',
        'granian/utils/proxies.py',
    ]
    assert 'Name: granian-proxies' in metadata
    assert 'Requires-Dist' not in metadata


def test_wheel_alone_imports_without_granian_core(proxies_venv):
    probe = (
        'import json\n'
        'try:\n'
        '    import granian._granian\n'
        '    core = True\n'
        'except ImportError:\n'
        '    core = False\n'
        'import granian\n'
        'from granian.utils.proxies import (\n'
        '    wrap_asgi_with_proxy_headers, wrap_rsgi_with_proxy_headers, wrap_wsgi_with_proxy_headers)\n'
        'import granian.utils.proxies as module\n'
        'import granian.utils as utils\n'
        "print(json.dumps({'core': core, 'init': getattr(granian, '__file__', None), 'module': module.__file__,\n"
        "                  'utils': utils.__file__}))\n"
    )
    result = proxies_venv.run('-c', probe)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data['core'] is False
    assert data['init'] is None  # a namespace package: no granian/__init__.py in this distribution
    assert Path(data['module']).is_relative_to(proxies_venv.root / 'venv')
    assert Path(data['utils']).name == '__init__.py'  # granian.utils is a regular package, as in granian


def _start_uvicorn(pool, venv: ProxiesVenv, extra_env=None) -> str:
    port = free_port()
    server = venv.serve(
        pool,
        port,
        '-m',
        'uvicorn',
        '--host',
        '127.0.0.1',
        '--port',
        str(port),
        '--no-proxy-headers',  # uvicorn's own forwarded-header handling off: only the wrapper acts
        '--no-access-log',
        '--lifespan',
        'on',
        '--app-dir',
        str(ROOT),
        'tests.apps.proxies_apps:asgi_app',
        extra_env=extra_env,
    )
    return server.url


def test_asgi_wrapper_under_uvicorn(server_pool, proxies_venv):
    url = _start_uvicorn(server_pool, proxies_venv)
    data = _get(url, FORWARDED)
    assert data['client'] == ['203.0.113.7', 0]
    assert data['scheme'] == 'https'
    assert data['path'] == '/info' and data['query_string'] == 'q=1' and data['custom'] == 'kept'
    data = _post(url, [('x-forwarded-for', '[2001:db8::7]:4711'), ('x-forwarded-proto', 'nonsense')])
    assert data['client'] == ['2001:db8::7', 4711]
    assert data['scheme'] == 'http'
    assert data['body'] == 'payload'
    data = _get(url)
    assert data['client'][0] == '127.0.0.1' and data['client'][1] != 0


def test_asgi_wrapper_under_uvicorn_untrusted_peer(server_pool, proxies_venv):
    url = _start_uvicorn(server_pool, proxies_venv, UNTRUSTED)
    data = _get(url, FORWARDED)
    assert data['client'][0] == '127.0.0.1'
    assert data['scheme'] == 'http'


WSGIREF_SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from wsgiref.simple_server import WSGIRequestHandler, make_server
from tests.apps.proxies_apps import wsgi_app

class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass

with make_server('127.0.0.1', int(sys.argv[2]), wsgi_app, handler_class=QuietHandler) as server:
    server.serve_forever()
"""


def _start_wsgiref(pool, venv: ProxiesVenv, extra_env=None) -> str:
    port = free_port()
    return venv.serve(pool, port, '-c', WSGIREF_SERVER, str(ROOT), str(port), extra_env=extra_env).url


def test_wsgi_wrapper_under_wsgiref(server_pool, proxies_venv):
    url = _start_wsgiref(server_pool, proxies_venv)
    data = _get(url, FORWARDED)
    assert data['client'] == '203.0.113.7'
    assert data['scheme'] == 'https'
    assert data['path'] == '/info' and data['query_string'] == 'q=1' and data['custom'] == 'kept'
    data = _post(url, [('x-forwarded-for', 'garbage'), ('x-forwarded-proto', 'wss')])
    assert data['client'] == '127.0.0.1'
    assert data['scheme'] == 'https'
    assert data['body'] == 'payload'


def test_wsgi_wrapper_under_wsgiref_untrusted_peer(server_pool, proxies_venv):
    url = _start_wsgiref(server_pool, proxies_venv, UNTRUSTED)
    data = _get(url, FORWARDED)
    assert data['client'] == '127.0.0.1'
    assert data['scheme'] == 'http'
