"""Reloading on changes (`--reload`): files edited under a temp dir while the server runs."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, free_port

pytest.importorskip('watchfiles')

APP = """\
import os

MSG = {msg!r}


def app(environ, start_response):
    if environ['PATH_INFO'] == '/crash':
        os._exit(3)
    start_response('200 OK', [('content-type', 'text/plain')])
    return [f'{{MSG}} {{os.getpid()}}'.encode()]
"""

# Long enough for a reload to have happened had the change been seen (the tick is 50 ms).
QUIET = 1.5


def write_app(project: Path, msg: str, name: str = 'app.py') -> None:
    (project / name).write_text(APP.format(msg=msg))


class Server:
    def __init__(self, cmd: list, project: Path, log_path: Path, port: int, env=None):
        self.port = port
        self.url = f'http://127.0.0.1:{port}'
        self.log_path = log_path
        full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'PYTHONDONTWRITEBYTECODE': '1', **(env or {})}
        full_env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), full_env.get('PYTHONPATH')]))
        with open(log_path, 'wb') as log:
            self.proc = subprocess.Popen(cmd, cwd=project, stdout=log, stderr=subprocess.STDOUT, env=full_env)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str = '/') -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def answer(self) -> tuple:
        """(message, worker pid) of the app serving now."""
        msg, pid = self.get().text.split()
        return msg, int(pid)

    def wait_answer(self, msg: str, timeout: float = 20) -> int:
        """Polls (retrying through restarts) until the app answers `msg`; returns the worker pid."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.alive(), f'the server exited ({self.proc.returncode}):\n{self.log}'
            try:
                last = self.answer()
                if last[0] == msg:
                    return last[1]
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f'never answered {msg!r} (last: {last!r}):\n{self.log}')

    def wait_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            time.sleep(0.05)
        raise AssertionError(f'{text!r} never logged:\n{self.log}')

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def project(tmp_path):
    path = tmp_path / 'project'
    path.mkdir()
    write_app(path, 'v1')
    return path


@pytest.fixture
def servers(tmp_path, project):
    started = []

    def cli(*args: str, env=None) -> Server:
        port = free_port()
        cmd = [sys.executable, '-m', 'granian', '--interface', 'wsgi', '--port', str(port), '--reload']
        cmd += [*args, 'app:app']
        server = Server(cmd, project, tmp_path / f'server-{port}.log', port, env)
        started.append(server)
        return server

    def api(body: str) -> Server:
        """Runs a script that builds `g = Granian(...)` from `body` (with PORT and PROJECT set), then serves."""
        port = free_port()
        script = tmp_path / f'serve-{port}.py'
        script.write_text(
            f'PORT = {port}\nPROJECT = {str(project)!r}\n'
            'from granian.server import Granian\n' + textwrap.dedent(body) + '\ng.serve()\n'
        )
        server = Server([sys.executable, str(script)], project, tmp_path / f'server-{port}.log', port)
        started.append(server)
        return server

    yield type('Servers', (), {'cli': staticmethod(cli), 'api': staticmethod(api)})
    for server in started:
        server.stop()


def test_a_change_reloads_and_the_new_code_answers(servers, project):
    server = servers.cli('--reload-tick', '50')
    pid = server.wait_answer('v1')
    write_app(project, 'v2')
    new_pid = server.wait_answer('v2')
    assert new_pid != pid
    assert 'Reloading (files changed: app.py)' in server.log
    # A burst of writes (an editor saving several files) is one reload.
    for i in range(5):
        (project / f'mod{i}.py').write_text(f'X = {i}\n')
    write_app(project, 'v3')
    server.wait_answer('v3')
    time.sleep(QUIET)
    assert server.log.count('Reloading (') == 2, server.log
    assert server.alive()


def test_ignored_dirs_patterns_and_paths_do_not_reload(servers, project):
    (project / 'skipme').mkdir()
    (project / 'assets').mkdir()
    (project / 'assets' / 'keep').mkdir()
    server = servers.cli(
        '--reload-ignore-dirs',
        'skipme',
        '--reload-ignore-patterns',
        r'^scratch_.*\.py$',
        '--reload-ignore-paths',
        str(project / 'assets'),
    )
    pid = server.wait_answer('v1')
    write_app(project / 'skipme', 'x', 'mod.py')  # ignored dir
    write_app(project, 'x', 'scratch_1.py')  # ignored pattern
    write_app(project / 'assets' / 'keep', 'x', 'mod.py')  # ignored path
    # The defaults of watchfiles still apply: the options extend them.
    (project / '__pycache__').mkdir()
    (project / '__pycache__' / 'app.cpython.pyc').write_bytes(b'x')
    (project / 'app.py.swp').write_text('x')
    time.sleep(QUIET)
    assert server.answer() == ('v1', pid)
    assert 'Reloading' not in server.log
    # A watched file still reloads.
    write_app(project, 'v2')
    assert server.wait_answer('v2') != pid
    assert server.log.count('Reloading (') == 1, server.log


def test_custom_filter(servers, project):
    server = servers.api(
        """
        import watchfiles

        class OnlyTxt(watchfiles.DefaultFilter):
            def __call__(self, change, path):
                return path.endswith('.txt') and super().__call__(change, path)

        g = Granian('app:app', interface='wsgi', port=PORT, reload=True, reload_paths=[PROJECT],
                    reload_filter=OnlyTxt, working_dir=PROJECT)
        """
    )
    pid = server.wait_answer('v1')
    write_app(project, 'v2')  # not a .txt: no reload
    time.sleep(QUIET)
    assert server.answer() == ('v1', pid)
    (project / 'trigger.txt').write_text('go')
    assert server.wait_answer('v2') != pid


def test_on_reload_hook(servers, project, tmp_path):
    marker = tmp_path / 'hook.log'
    server = servers.api(
        f"""
        g = Granian('app:app', interface='wsgi', port=PORT, reload=True, reload_paths=[PROJECT],
                    working_dir=PROJECT)

        @g.on_reload
        def hook():
            with open({str(marker)!r}, 'a') as f:
                f.write('reloaded\\n')
        """
    )
    server.wait_answer('v1')
    assert not marker.exists()
    write_app(project, 'v2')
    server.wait_answer('v2')
    assert marker.read_text() == 'reloaded\n'


def test_syntax_error_then_fix(servers, project):
    server = servers.cli()
    pid = server.wait_answer('v1')
    (project / 'app.py').write_text('def app(:\n')
    server.wait_log('SyntaxError')
    server.wait_log('exited before serving')
    # The main process lives on, and so does the worker with the last good code.
    assert server.alive()
    assert server.answer() == ('v1', pid)
    write_app(project, 'v2')
    assert server.wait_answer('v2') != pid


def test_syntax_error_at_start_waits_for_a_fix(servers, project):
    (project / 'app.py').write_text('def app(:\n')
    server = servers.cli()
    server.wait_log('waiting for a change')
    assert server.alive()
    write_app(project, 'v2')
    server.wait_answer('v2')


def test_ignore_worker_failure_keeps_the_main_process(servers, project):
    server = servers.cli('--reload-ignore-worker-failure')
    server.wait_answer('v1')
    with pytest.raises(httpx.HTTPError):
        server.get('/crash')
    server.wait_log('died unexpectedly')
    server.wait_log('stays down until a change')
    assert server.alive()
    write_app(project, 'v2')
    server.wait_answer('v2')


def test_missing_extra_is_a_clear_message(project):
    script = textwrap.dedent(
        """
        import sys
        sys.modules['watchfiles'] = None  # as if granian[reload] were not installed
        from granian.errors import ConfigurationError
        from granian.server import Granian
        try:
            Granian('app:app', interface='wsgi', reload=True)
        except ConfigurationError as exc:
            print(exc)
        else:
            print('no error')
        from granian.cli import cli
        sys.argv = ['granian', '--interface', 'wsgi', '--reload', 'app:app']
        cli(prog_name='granian')
        """
    )
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    result = subprocess.run(
        [sys.executable, '-c', script], check=False, cwd=project, capture_output=True, text=True, timeout=30, env=env
    )
    output = result.stdout + result.stderr
    assert 'pip install granian[reload]' in result.stdout.splitlines()[0], output
    assert result.returncode != 0
    assert output.count('pip install granian[reload]') == 2, output
