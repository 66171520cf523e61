"""Real servers on free ports: the CLI in a subprocess, talked to by real clients."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a new listener can take the port (SO_REUSEADDR: closed connections in TIME_WAIT don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(('127.0.0.1', port))
            s.listen()
        except OSError:
            return False
        return True


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with {proc.returncode} before listening')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f'server did not listen on {port} within {timeout}s')


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f'http://127.0.0.1:{port}'

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def granian_cmd(*args: str) -> list:
    return [sys.executable, '-m', 'granian', *args]


@pytest.fixture
def start_server(tmp_path):
    """start_server('tests.apps.rsgi_app:app', '--http', '2', env={...}) -> ServerProcess."""
    servers = []

    def start(target: str = 'tests.apps.rsgi_app:app', *args: str, interface: str = 'rsgi', env=None, wait=True):
        port = free_port()
        log_path = tmp_path / f'server-{port}.log'
        full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
        cmd = granian_cmd('--interface', interface, '--port', str(port), *args, target)
        with open(log_path, 'wb') as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        server = ServerProcess(proc, port, log_path)
        servers.append(server)
        if wait:
            try:
                wait_port(port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f'{exc}\n--- server log ---\n{server.log}') from None
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def rsgi_server(start_server):
    return start_server('tests.apps.rsgi_app:app')


@pytest.fixture(params=['h1', 'h2'])
def client(request, server):
    """An httpx client for the module's `server`, over HTTP/1.1 or prior-knowledge h2c."""
    from .rsgi_support import http_client

    with http_client(server.url, request.param) as c:
        yield c
