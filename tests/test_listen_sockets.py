"""Where the listening socket comes from (`--fd`, systemd socket activation, `--reuse-port`), and
the notices a `Type=notify` unit gets (ready, reloading, stopping, watchdog).

Socket activation runs under `systemd-socket-activate` (Debian's systemd package), the notices
go to a datagram socket the test owns, named by `NOTIFY_SOCKET` as systemd would.
"""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.server_support import HOST, free_port, granian_cmd, server_env, wait_for

APP = 'tests.apps.workers_apps:app'
ACTIVATE = shutil.which('systemd-socket-activate')
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason='systemd-socket-activate is not installed')


class Notices:
    """The service manager's end of NOTIFY_SOCKET: every datagram the server sends, in order."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list = []

    def _drain(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return

    def wait(self, line: str, after: int = 0, timeout: float = 15.0) -> int:
        """Until a message from index `after` on has `line` among its lines; returns its index."""

        def seen():
            self._drain()
            for index in range(after, len(self.messages)):
                if line in self.messages[index].splitlines():
                    return index + 1  # 1-based, so that index 0 is truthy
            return None

        return wait_for(seen, timeout=timeout, what=f'{line} from the server') - 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notices(tmp_path):
    n = Notices(tmp_path / 'notify.sock')
    yield n
    n.close()


def _get(url: str, path: str, **kwargs) -> str:
    response = httpx.get(f'{url}{path}', timeout=10, **kwargs)
    assert response.status_code == 200
    return response.text


def _activated(port_or_path, *granian_args: str, notify=None, extra_env=None):
    """The command and environment of granian under systemd-socket-activate, listening on a TCP
    port or a Unix socket path, with NOTIFY_SOCKET (and WATCHDOG_USEC) passed through."""
    env = server_env(extra_env, clean=True)
    cmd = [ACTIVATE, '-l', str(port_or_path)]
    if notify is not None:
        env['NOTIFY_SOCKET'] = notify.path
        cmd += ['-E', 'NOTIFY_SOCKET']
    if 'WATCHDOG_USEC' in env:
        cmd += ['-E', 'WATCHDOG_USEC']
    cmd += granian_cmd('--interface', 'rsgi', *granian_args, APP)
    return cmd, env


@needs_activate
def test_socket_activation_tcp_serves_the_passed_socket_and_notifies(server_pool, notices):
    port = free_port()
    cmd, env = _activated(f'{HOST}:{port}', '--workers', '2', notify=notices)
    # systemd-socket-activate starts the server at the first connection: `ready` makes it.
    server = server_pool.launch(cmd, port=port, env=env)
    ready = notices.wait('READY=1')
    assert 'serving with 2 workers' in notices.messages[ready]
    log = server.log
    assert '(socket activation)' in log
    assert log.count('is serving') == 2  # READY=1 came once every worker served
    # The workers see neither the activation variables nor the notify socket.
    seen = json.loads(_get(server.url, '/env', params={'keys': 'LISTEN_FDS,LISTEN_PID,NOTIFY_SOCKET'}))
    assert seen == {'LISTEN_FDS': None, 'LISTEN_PID': None, 'NOTIFY_SOCKET': None}

    server.signal(signal.SIGHUP)
    reloading = notices.wait('RELOADING=1', after=ready + 1)
    assert any(line.startswith('MONOTONIC_USEC=') for line in notices.messages[reloading].splitlines())
    again = notices.wait('READY=1', after=reloading + 1)
    assert server.log.count('is serving') == 4  # both replacements served before READY=1 again
    assert _get(server.url, '/pid')

    server.signal(signal.SIGTERM)
    notices.wait('STOPPING=1', after=again + 1)
    assert server.wait() == 0


@needs_activate
def test_socket_activation_unix_socket(server_pool, tmp_path):
    path = tmp_path / 'activated.sock'
    cmd, env = _activated(path)
    server = server_pool.launch(cmd, port=0, env=env, ready=None)
    trigger = socket.socket(socket.AF_UNIX)
    wait_for(lambda: trigger.connect_ex(str(path)) == 0, what='the activated socket')
    trigger.close()
    server.wait_log('is serving')
    assert f'Listening at: http://unix:{path} (socket activation)' in server.log
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url='http://granian') as client:
        assert client.get('/pid').status_code == 200
    server.stop()
    assert path.exists(), 'the socket file belongs to the service manager: the server must not remove it'


@needs_activate
def test_watchdog_pings_at_half_the_timeout(server_pool, notices):
    port = free_port()
    cmd, env = _activated(f'{HOST}:{port}', notify=notices, extra_env={'WATCHDOG_USEC': '1000000'})
    server_pool.launch(cmd, port=port, env=env)
    first = notices.wait('READY=1')
    start = time.monotonic()
    index = first
    for _ in range(3):
        index = notices.wait('WATCHDOG=1', after=index + 1, timeout=5)
    # Three pings 0.5 s apart: about a second (the bound is loose; this is not a timing test).
    assert time.monotonic() - start < 4


def test_no_notices_without_notify_socket(server_pool, tmp_path):
    # The same server without NOTIFY_SOCKET starts and stops normally (nothing to notify).
    server = server_pool.start(APP, clean_env=True, ready='is serving')
    server.stop()
    assert server.proc.returncode == 0
    assert 'systemd' not in server.log


def test_fd_serves_an_inherited_listening_socket(server_pool):
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    cmd = granian_cmd('--interface', 'rsgi', '--workers', '2', '--fd', str(fd), APP)
    server = server_pool.launch(cmd, port=port, env=server_env(clean=True), pass_fds=(fd,), ready='is serving')
    listener.close()  # the server holds its own copy
    assert f'(file descriptor {fd})' in server.log
    pids = {_get(server.url, '/pid') for _ in range(20)}
    assert pids


def test_fd_refuses_a_socket_that_does_not_listen(server_pool):
    unbound = socket.socket()
    fd = unbound.fileno()
    cmd = granian_cmd('--interface', 'rsgi', '--fd', str(fd), APP)
    server = server_pool.launch(cmd, port=0, env=server_env(clean=True), pass_fds=(fd,), ready=None)
    assert server.wait() != 0
    assert f'descriptor {fd} is not a listening stream socket' in server.log
    unbound.close()


def _listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:port (LISTEN is state 0A in /proc/net/tcp)."""
    count = 0
    with open('/proc/net/tcp') as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            local, state = fields[1], fields[3]
            if local == f'0100007F:{port:04X}' and state == '0A':
                count += 1
    return count


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc/net/tcp')
def test_reuse_port_gives_each_worker_its_own_socket(start_server):
    server = start_server(APP, '--reuse-port', workers=2, ready='worker-2 (PID')
    wait_for(lambda: server.log.count('is serving') == 2, what='both workers serving')
    assert _listening_sockets(server.port) == 2
    pids = set()
    for _ in range(200):
        with httpx.Client() as client:  # a new connection each time: the kernel picks the socket
            pids.add(client.get(f'{server.url}/pid').text)
        if len(pids) == 2:
            break
    assert len(pids) == 2
    # The port stays the server's: a listener without SO_REUSEPORT cannot take it.
    with socket.socket() as intruder, pytest.raises(OSError):
        intruder.bind((HOST, server.port))


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc/net/tcp')
def test_without_reuse_port_workers_share_one_socket(start_server):
    server = start_server(APP, workers=2, ready='worker-2 (PID')
    wait_for(lambda: server.log.count('is serving') == 2, what='both workers serving')
    assert _listening_sockets(server.port) == 1


def test_reuse_port_with_port_zero_binds_every_worker_to_the_picked_port(server_pool):
    cmd = granian_cmd('--interface', 'rsgi', '--workers', '2', '--reuse-port', '--port', '0', APP)
    server = server_pool.launch(cmd, port=0, env=server_env(clean=True), ready='worker-2 (PID')
    wait_for(lambda: server.log.count('is serving') == 2, what='both workers serving')
    port = int(server.log.split('Listening at: http://127.0.0.1:')[1].split()[0])
    assert _listening_sockets(port) == 2


@pytest.mark.parametrize(
    'args, message',
    [
        (['--reuse-port', '--uds', '/tmp/granian-test-never.sock'], 'reuse_port'),
        (['--fd', '-1'], '--fd'),
        (['--fd', '3', '--uds', '/tmp/granian-test-never.sock'], 'fd'),
    ],
)
def test_refused_combinations(args, message):
    result = subprocess.run(
        granian_cmd('--interface', 'rsgi', *args, APP),
        check=False,
        env=server_env(clean=True),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    err = result.stderr.decode()
    assert message in err
    assert 'Traceback' not in err
