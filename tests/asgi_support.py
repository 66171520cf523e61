"""Helpers shared by the ASGI test modules."""

import os
import subprocess

import httpx

from .conftest import ROOT, ServerProcess, free_port, granian_cmd, wait_port
from .rsgi_support import TIMEOUT

ASGI_APP = 'tests.apps.asgi_app:app'


def spawn(target: str, log_path, *args: str, interface: str = 'asgi', env=None) -> ServerProcess:
    """A server for a whole module (the `start_server` fixture is per test)."""
    port = free_port()
    full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(
            granian_cmd('--interface', interface, '--port', str(port), *args, target),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = ServerProcess(proc, port, log_path)
    try:
        wait_port(port, proc)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f'{exc}\n--- server log ---\n{server.log}') from None
    return server


def http_client(url: str, proto: str) -> httpx.Client:
    """httpx speaking HTTP/1.1, or HTTP/2 with prior knowledge on plain http (h2c)."""
    h2 = proto == 'h2'
    client = httpx.Client(base_url=url, timeout=TIMEOUT, http1=not h2, http2=h2)
    client.expected_version = 'HTTP/2' if h2 else 'HTTP/1.1'
    client.scope_version = '2' if h2 else '1.1'
    return client


def assert_still_serving(url: str) -> None:
    for proto in ('h1', 'h2'):
        with http_client(url, proto) as c:
            response = c.get('/')
            assert response.status_code == 200
            assert response.http_version == c.expected_version
            assert response.text == 'Hello, world!'
