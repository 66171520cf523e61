"""Reloading on changes (`--reload`): files edited under a temp dir while the server runs."""

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .server_support import ROOT, ServerProcess, free_port, server_env

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

RELOAD_LINE = re.compile(r'Reloading \(files changed: (.*)\): ')


def write_app(project: Path, msg: str, name: str = 'app.py') -> None:
    (project / name).write_text(APP.format(msg=msg))


def get(server: ServerProcess, path: str = '/') -> httpx.Response:
    return httpx.get(server.url + path, timeout=5)


def answer(server: ServerProcess) -> tuple:
    """(message, worker pid) of the app serving now."""
    msg, pid = get(server).text.split()
    return msg, int(pid)


def wait_answer(server: ServerProcess, msg: str, timeout: float = 20) -> int:
    """Polls (retrying through restarts) until the app answers `msg`; returns the worker pid."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert server.alive(), f'the server exited ({server.proc.returncode}):\n{server.log}'
        try:
            last = answer(server)
            if last[0] == msg:
                return last[1]
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f'never answered {msg!r} (last: {last!r}):\n{server.log}')


def reloads(server: ServerProcess) -> list:
    """The files each reload so far was for, as logged (names sorted; beyond five, `and N more`)."""
    return [match[1] for match in RELOAD_LINE.finditer(server.log)]


@pytest.fixture
def project(tmp_path):
    path = tmp_path / 'project'
    path.mkdir()
    write_app(path, 'v1')
    return path


@pytest.fixture
def servers(server_pool, tmp_path, project):
    """cli(*args) / api(body) -> ServerProcess, in the project directory; not waited for (the tests poll)."""
    env = server_env({'PYTHONDONTWRITEBYTECODE': '1'})
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))

    def cli(*args: str) -> ServerProcess:
        port = free_port()
        cmd = [sys.executable, '-m', 'granian', '--interface', 'wsgi', '--port', str(port), '--reload']
        cmd += [*args, 'app:app']
        return server_pool.launch(cmd, port=port, env=env, cwd=project, ready=None)

    def api(body: str) -> ServerProcess:
        """Runs a script that builds `g = Granian(...)` from `body` (with PORT and PROJECT set), then serves."""
        port = free_port()
        script = tmp_path / f'serve-{port}.py'
        script.write_text(
            f'PORT = {port}\nPROJECT = {str(project)!r}\n'
            'from granian.server import Granian\n' + textwrap.dedent(body) + '\ng.serve()\n'
        )
        return server_pool.launch([sys.executable, str(script)], port=port, env=env, cwd=project, ready=None)

    return type('Servers', (), {'cli': staticmethod(cli), 'api': staticmethod(api)})


def test_a_change_reloads_and_the_new_code_answers(servers, project):
    server = servers.cli('--reload-tick', '50')
    pid = wait_answer(server, 'v1')
    write_app(project, 'v2')
    new_pid = wait_answer(server, 'v2')
    assert new_pid != pid
    assert reloads(server) == ['app.py']
    # A burst of writes (an editor saving several files) is one reload.
    for i in range(5):
        (project / f'mod{i}.py').write_text(f'X = {i}\n')
    write_app(project, 'v3')
    wait_answer(server, 'v3')
    # One more change, made once v3 answers: its reload comes after any the burst caused.
    write_app(project, 'v4')
    wait_answer(server, 'v4')
    assert reloads(server) == ['app.py', 'app.py, mod0.py, mod1.py, mod2.py, mod3.py and 1 more', 'app.py']
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
    pid = wait_answer(server, 'v1')
    write_app(project / 'skipme', 'x', 'mod.py')  # ignored dir
    write_app(project, 'x', 'scratch_1.py')  # ignored pattern
    write_app(project / 'assets' / 'keep', 'x', 'mod.py')  # ignored path
    # The defaults of watchfiles still apply: the options extend them.
    (project / '__pycache__').mkdir()
    (project / '__pycache__' / 'app.cpython.pyc').write_bytes(b'x')
    (project / 'app.py.swp').write_text('x')
    # A watched file still reloads; had any of the changes above been seen, it would have reloaded
    # before this one, or been named by it.
    write_app(project, 'v2')
    assert wait_answer(server, 'v2') != pid
    assert reloads(server) == ['app.py'], server.log


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
    pid = wait_answer(server, 'v1')
    write_app(project, 'v2')  # not a .txt: no reload
    (project / 'trigger.txt').write_text('go')
    assert wait_answer(server, 'v2') != pid
    # One reload, for the .txt file alone: app.py was never a reason to reload.
    assert reloads(server) == ['trigger.txt'], server.log


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
    wait_answer(server, 'v1')
    assert not marker.exists()
    write_app(project, 'v2')
    wait_answer(server, 'v2')
    assert marker.read_text() == 'reloaded\n'


def test_syntax_error_then_fix(servers, project):
    server = servers.cli()
    pid = wait_answer(server, 'v1')
    (project / 'app.py').write_text('def app(:\n')
    server.wait_log('SyntaxError')
    server.wait_log('exited before serving')
    # The main process lives on, and so does the worker with the last good code.
    assert server.alive()
    assert answer(server) == ('v1', pid)
    write_app(project, 'v2')
    assert wait_answer(server, 'v2') != pid


def test_syntax_error_at_start_waits_for_a_fix(servers, project):
    (project / 'app.py').write_text('def app(:\n')
    server = servers.cli()
    server.wait_log('waiting for a change')
    assert server.alive()
    write_app(project, 'v2')
    wait_answer(server, 'v2')


def test_ignore_worker_failure_keeps_the_main_process(servers, project):
    server = servers.cli('--reload-ignore-worker-failure')
    wait_answer(server, 'v1')
    with pytest.raises(httpx.HTTPError):
        get(server, '/crash')
    server.wait_log('died unexpectedly')
    server.wait_log('stays down until a change')
    assert server.alive()
    write_app(project, 'v2')
    wait_answer(server, 'v2')


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
