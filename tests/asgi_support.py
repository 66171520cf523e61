"""Helpers shared by the ASGI test modules."""

import os
import subprocess

from .conftest import ROOT, ServerProcess, free_port, granian_cmd, wait_port
from .rsgi_support import http_client

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


def assert_still_serving(url: str) -> None:
    for proto in ('h1', 'h2'):
        with http_client(url, proto) as c:
            response = c.get('/')
            assert response.status_code == 200
            assert response.http_version == c.expected_version
            assert response.text == 'Hello, world!'
