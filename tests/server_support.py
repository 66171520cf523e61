"""Real server processes for the tests: started on a free port, ready once they listen (or log a line, or
answer), their output kept in a log file, and stopped by PID.

    with ServerPool(log_dir) as pool:                  # every server it started is stopped on leaving
        srv = pool.start('tests.apps.asgi_app:app', '--http', '2', interface='asgi', workers=2)
        srv = pool.start(target, tls=(cert, key), env={'X': '1'}, clean_env=True, ready='is serving')
        srv = pool.launch([sys.executable, 'script.py', str(port)], port=port, ready='serving')

`start_server` and `server_pool` (conftest.py) are the per-test fixtures over a pool; module-wide
fixtures open a pool of their own.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Self, Sequence, Union

ROOT = Path(__file__).resolve().parent.parent
HOST = '127.0.0.1'
START_TIMEOUT = 15.0
# `ready=PORT` (the default): ready once a connection to the port succeeds.
PORT = 'port'

Ready = Union[str, re.Pattern, Callable[['ServerProcess'], object], None]


def wait_for(condition, timeout: float = 10.0, interval: float = 0.05, what: str = 'condition'):
    """Polls `condition()` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a new listener can take the port (SO_REUSEADDR: closed connections in TIME_WAIT don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            s.listen()
        except OSError:
            return False
        return True


def wait_port(port: int, alive: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    """Until a connection to `port` succeeds; RuntimeError once `alive()` is false or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f'the server exited before listening on {port}')
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f'the server did not listen on {port} within {timeout}s')


def granian_cmd(*args: str) -> list:
    return [sys.executable, '-m', 'granian', *args]


def server_env(extra=None, clean: bool = False) -> dict:
    """This process's environment (without its GRANIAN_* settings when `clean`), unbuffered, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith('GRANIAN_'))}
    env['PYTHONUNBUFFERED'] = '1'
    env.update(extra or {})
    return env


class ServerProcess:
    """One started process: its PID, port, URL and log (stdout and stderr together)."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, scheme: str = 'http'):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.scheme = scheme
        self.url = f'{scheme}://{HOST}:{port}'

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def mark(self) -> int:
        """Where the log ends now: `log_since(mark)` and `wait_log(..., since=mark)` read what comes after."""
        return len(self.log)

    def log_since(self, mark: int) -> str:
        return self.log[mark:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, needle, since: int = 0, timeout: float = 15.0) -> str:
        """Until the log from offset `since` holds `needle` (a text, or a compiled regex searched in it);
        returns that part of the log. Fails at once when the process has exited without logging it."""

        def found(text: str) -> bool:
            return bool(needle.search(text)) if isinstance(needle, re.Pattern) else needle in text

        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()
            text = self.log_since(since)
            if found(text):
                return text
            if exited:
                raise AssertionError(f'{needle!r} not logged; the process exited ({self.proc.returncode}):\n{text}')
            if time.monotonic() > deadline:
                raise AssertionError(f'{needle!r} not logged within {timeout}s:\n{text}')
            time.sleep(0.05)

    def wait_ready(self, ready: Ready, timeout: float = START_TIMEOUT) -> None:
        """`PORT`: it listens. A text or a compiled regex: its log shows it. A callable: `ready(self)` is
        truthy (it may raise RuntimeError to give up). None: nothing to wait for."""
        if ready is None:
            return
        if ready == PORT:
            wait_port(self.port, self.alive, timeout)
        elif isinstance(ready, (str, re.Pattern)):
            try:
                self.wait_log(ready, timeout=timeout)
            except AssertionError as exc:
                raise RuntimeError(str(exc).splitlines()[0]) from None
        else:

            def check():
                if not self.alive():
                    raise RuntimeError(f'the server exited with {self.proc.returncode} before it was ready')
                return ready(self)

            try:
                wait_for(check, timeout=timeout, what='the server to be ready')
            except AssertionError as exc:
                raise RuntimeError(str(exc)) from None

    def start_or_stop(self, ready: Ready, timeout: float = START_TIMEOUT) -> 'ServerProcess':
        """`wait_ready`; on failure, stops the process and raises RuntimeError with its log."""
        try:
            self.wait_ready(ready, timeout)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f'{exc}\n--- server log ---\n{self.log}') from None
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; nothing when it has exited already."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(
    cmd: Sequence[str],
    *,
    port: int,
    log_path: Path,
    env: Optional[dict] = None,
    cwd=ROOT,
    scheme: str = 'http',
    pass_fds: Sequence[int] = (),
) -> ServerProcess:
    """Runs `cmd` (which is to serve on `port`) with `env` as its whole environment (default: `server_env()`),
    stdout and stderr to `log_path`, inheriting `pass_fds`. Does not wait: see `ServerProcess.start_or_stop`."""
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(
            [str(part) for part in cmd],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env() if env is None else env,
            pass_fds=tuple(pass_fds),
        )
    return ServerProcess(proc, port, log_path, scheme)


class ServerPool:
    """The servers started for a test or a module; leaving the `with` block (or `stop_all()`) stops each."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.started: list = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def launch(
        self,
        cmd: Sequence[str],
        *,
        port: int,
        env: Optional[dict] = None,
        cwd=ROOT,
        ready: Ready = PORT,
        timeout: float = START_TIMEOUT,
        scheme: str = 'http',
        name: str = 'server',
        pass_fds: Sequence[int] = (),
    ) -> ServerProcess:
        """Any command that serves on `port`, with `env` as its whole environment (default: `server_env()`),
        inheriting the descriptors `pass_fds`.

        ready: PORT (it listens), a log text or compiled regex, a callable `ready(server)`, or None; if it
        is not ready within `timeout`, the process is stopped and RuntimeError raised with its log."""
        log_path = self.log_dir / f'{name}-{len(self.started)}-{port}.log'
        server = spawn(cmd, port=port, log_path=log_path, env=env, cwd=cwd, scheme=scheme, pass_fds=pass_fds)
        self.started.append(server)
        return server.start_or_stop(ready, timeout)

    def start(
        self,
        target: str = 'tests.apps.rsgi_app:app',
        *args: str,
        interface: Optional[str] = 'rsgi',
        port: Optional[int] = None,
        workers: Optional[int] = None,
        tls: Optional[tuple] = None,
        env: Optional[dict] = None,
        clean_env: bool = False,
        program: Optional[Sequence[str]] = None,
        **options,
    ) -> ServerProcess:
        """`granian --interface I --port P [--workers N] [--ssl-certificate C --ssl-keyfile K] *args target`.

        interface: None leaves the option out. tls: (certificate, key) paths; the URL is then https.
        env: added to this process's environment (without its GRANIAN_* settings when `clean_env`).
        program: the command instead of `python -m granian` (another granian executable).
        Other options (ready, timeout, cwd) as for `launch`.
        """
        port = free_port() if port is None else port
        cli = [] if interface is None else ['--interface', interface]
        cli += ['--port', str(port)]
        if workers is not None:
            cli += ['--workers', str(workers)]
        if tls is not None:
            certificate, key = tls
            cli += ['--ssl-certificate', str(certificate), '--ssl-keyfile', str(key)]
        cmd = [*(program or granian_cmd()), *cli, *args, target]
        scheme = 'https' if tls is not None else 'http'
        env = server_env(env, clean=clean_env)
        return self.launch(cmd, port=port, env=env, scheme=scheme, name=interface or 'server', **options)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
