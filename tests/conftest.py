"""Fixtures for real servers: the CLI in a subprocess on a free port, talked to by real clients.

The helpers behind them (`ServerPool`, `ServerProcess`, `free_port`, ...) are in server_support.py.
"""

import logging

import pytest
from granian.log import access_logger

from .server_support import ServerPool


@pytest.fixture
def server_pool(tmp_path):
    """The test's `ServerPool`: `server_pool.start(...)`, `server_pool.launch(cmd, port=...)`; all stopped at the end."""
    with ServerPool(tmp_path) as pool:
        yield pool


@pytest.fixture
def start_server(server_pool):
    """start_server('tests.apps.rsgi_app:app', '--http', '2', interface='rsgi', env={...}, ready=...) -> ServerProcess.

    Options: interface, port, workers, tls=(certificate, key), env, clean_env, ready (PORT, a log text or
    regex, a callable or None), timeout, cwd, program; see `ServerPool.start`.
    """
    return server_pool.start


@pytest.fixture
def rsgi_server(start_server):
    return start_server('tests.apps.rsgi_app:app')


@pytest.fixture(params=['h1', 'h2'])
def client(request, server):
    """An httpx client for the module's `server`, over HTTP/1.1 or prior-knowledge h2c."""
    from .rsgi_support import http_client

    with http_client(server.url, request.param) as c:
        yield c


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines():
    """What reaches `granian.access`, whatever an earlier test configured."""
    handler = Collect()
    saved = access_logger.level, access_logger.disabled
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.disabled = False
    yield handler.lines
    access_logger.removeHandler(handler)
    access_logger.setLevel(saved[0])
    access_logger.disabled = saved[1]
