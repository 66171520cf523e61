"""Logging (`--log*`) and the access log (`--access-log*`), read from real servers' output."""

import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from .rsgi_support import RawH2, RawHTTP1, request_bytes, wait_for
from .server_support import ROOT, free_port, granian_cmd

APPS = {
    'rsgi': 'tests.apps.static_apps:rsgi_app',
    'asgi': 'tests.apps.static_apps:asgi_app',
    'wsgi': 'tests.apps.static_apps:wsgi_app',
}
RSGI_APP = APPS['rsgi']
TIME = r'\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4})\]'
DEFAULT_LINE = re.compile(
    TIME + r' (?P<addr>[0-9.]+) - "(?P<method>[A-Z]+) (?P<path>\S+) (?P<protocol>HTTP/[0-9.]+)" '
    r'(?P<status>\d{3}) (?P<dt_ms>\d+\.\d{3})$'
)


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The CLI to completion (for options refused at start)."""
    cmd = granian_cmd('--interface', 'rsgi', '--port', str(free_port()), *args)
    return subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def get(port: int, target: str, method: str = 'GET', headers=(), body: bytes = b''):
    with RawHTTP1(port) as conn:
        conn.send(request_bytes(method, target, headers=headers, body=body))
        return conn.read_response(head_request=method == 'HEAD')


def served(srv) -> None:
    """One request answered: the worker is up (and has configured its logging)."""
    assert get(srv.port, '/ping').status == 200


def stopped_log(srv) -> str:
    srv.stop()
    return srv.log


def access_lines(srv, count: int, pattern=DEFAULT_LINE) -> list:
    """The first `count` log lines matching `pattern`, once there are that many."""

    def lines():
        found = [m for m in map(pattern.match, srv.log.splitlines()) if m]
        return found if len(found) >= count else None

    return wait_for(lines, what=f'{count} access lines in the log')[:count]


@pytest.fixture
def static_dir(tmp_path) -> Path:
    mount = tmp_path / 'pub'
    mount.mkdir()
    (mount / 'alpha.txt').write_bytes(b'abcdefghijklmnopqrstuvwxyz')
    return mount


# -- levels ---------------------------------------------------------------------------------------


def test_default_level_is_info(start_server):
    srv = start_server(RSGI_APP)
    served(srv)
    log = stopped_log(srv)
    assert '[INFO] Starting granian' in log
    assert f'[INFO] Listening at: http://127.0.0.1:{srv.port}' in log
    assert '[INFO] Shutdown complete' in log
    assert '[DEBUG]' not in log


def test_debug_level_shows_debug_lines(start_server):
    srv = start_server(RSGI_APP, '--log-level', 'debug')
    served(srv)
    wait_for(lambda: '[DEBUG] All workers serving' in srv.log, what='the supervisor debug line')
    # A malformed request: the core (Rust, in the worker) logs the connection error at debug.
    with RawHTTP1(srv.port) as conn:
        conn.send(b'NOT HTTP AT ALL\r\n\r\n')
        assert conn.read_response().status == 400
    wait_for(
        lambda: re.search(r'\[DEBUG\] connection from 127\.0\.0\.1:\d+ ended with an error', srv.log),
        what='the core debug line',
    )
    assert '[INFO] Listening at' in srv.log


def test_warning_level_hides_info_lines(start_server):
    srv = start_server(RSGI_APP, '--log-level', 'warning')
    served(srv)
    with RawHTTP1(srv.port) as conn:
        conn.send(b'NOT HTTP AT ALL\r\n\r\n')
        assert conn.read_response().status == 400
    log = stopped_log(srv)
    assert '[INFO]' not in log
    assert '[DEBUG]' not in log
    assert 'Listening at' not in log


def test_warning_level_still_shows_errors():
    result = run_cli('--log-level', 'warning', 'tests.apps.static_apps:missing_app')
    assert result.returncode != 0
    assert "[ERROR] cannot find 'missing_app'" in result.stdout
    assert '[INFO]' not in result.stdout


def test_no_log_silences_everything(start_server):
    srv = start_server(RSGI_APP, '--no-log', '--access-log')
    served(srv)
    assert get(srv.port, '/again').status == 200
    assert stopped_log(srv) == ''


# -- a dictConfig file ---------------------------------------------------------------------------


def test_log_config_file_is_applied(start_server, tmp_path):
    log_file = tmp_path / 'granian-file.log'
    config = {
        'version': 1,
        'formatters': {'mine': {'format': 'MYPREFIX %(levelname)s %(name)s | %(message)s'}},
        'handlers': {
            'mine': {'class': 'logging.StreamHandler', 'formatter': 'mine', 'stream': 'ext://sys.stdout'},
            'file': {'class': 'logging.FileHandler', 'formatter': 'mine', 'filename': str(log_file)},
        },
        'loggers': {
            '_granian': {'handlers': ['mine', 'file'], 'level': 'INFO', 'propagate': False},
            'granian.access': {'handlers': ['file'], 'level': 'INFO', 'propagate': False},
        },
    }
    config_path = tmp_path / 'log.json'
    config_path.write_text(json.dumps(config))
    srv = start_server(RSGI_APP, '--log-config', str(config_path), '--access-log')
    served(srv)
    # The access line is written by the worker process: the config reached it too.
    access = wait_for(
        lambda: (
            log_file.exists()
            and re.search(r'^MYPREFIX INFO granian\.access \| \[.*"GET /ping', log_file.read_text(), re.MULTILINE)
        ),
        what='the access line in the configured file',
    )
    assert access
    log = stopped_log(srv)
    assert f'MYPREFIX INFO _granian | Listening at: http://127.0.0.1:{srv.port}' in log
    assert 'MYPREFIX INFO _granian | Shutdown complete' in log
    # Our formatter replaced the default one for _granian, and access lines went to the file only.
    assert '[INFO]' not in log
    assert '"GET /ping' not in log
    assert 'MYPREFIX INFO _granian | Listening at' in log_file.read_text()


@pytest.mark.parametrize(
    'content, message',
    [
        ('{"version": 1,', 'cannot load JSON'),
        ('[1, 2]', 'must contain a JSON object'),
        ('', 'cannot load JSON'),
    ],
)
def test_unreadable_log_config_is_refused(tmp_path, content, message):
    path = tmp_path / 'log.json'
    path.write_text(content)
    result = run_cli('--log-config', str(path), RSGI_APP)
    assert result.returncode == 2
    assert "Invalid value for '--log-config'" in result.stderr
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


def test_missing_log_config_is_refused(tmp_path):
    result = run_cli('--log-config', str(tmp_path / 'nope.json'), RSGI_APP)
    assert result.returncode == 2
    assert "Invalid value for '--log-config'" in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize(
    'config, named',
    [
        (
            {
                'version': 1,
                'handlers': {'broken': {'class': 'nowhere.NoHandler'}},
                'loggers': {'_granian': {'handlers': ['broken']}},
            },
            'nowhere.NoHandler',
        ),
        ({'version': 2}, 'version'),
    ],
)
def test_invalid_log_config_is_refused_clearly(tmp_path, config, named):
    path = tmp_path / 'log.json'
    path.write_text(json.dumps(config))
    result = run_cli('--log-config', str(path), RSGI_APP)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in output
    assert 'Traceback' not in output, output[-2000:]


# -- the access log ---------------------------------------------------------------------------


@pytest.mark.parametrize('interface', ['rsgi', 'asgi', 'wsgi'])
def test_default_access_log_for_each_interface(start_server, static_dir, interface):
    srv = start_server(APPS[interface], '--access-log', '--static-path-mount', str(static_dir), interface=interface)
    requests = [
        ('GET', '/app/path?x=1&y=2', 200),
        ('GET', '/static/alpha.txt', 200),
        ('GET', '/static/missing.txt', 404),
        ('POST', '/static/alpha.txt', 200),
        ('HEAD', '/static/alpha.txt', 200),
    ]
    for method, target, status in requests:
        assert get(srv.port, target, method=method, body=b'xy' if method == 'POST' else b'').status == status
    lines = access_lines(srv, len(requests))
    now = datetime.now(timezone.utc)
    for match, (method, target, status) in zip(lines, requests, strict=True):
        assert match['method'] == method
        assert match['path'] == target.partition('?')[0]  # the default format has no query string
        assert match['protocol'] == 'HTTP/1.1'
        assert int(match['status']) == status
        assert match['addr'] == '127.0.0.1'
        assert float(match['dt_ms']) >= 0
        logged = datetime.strptime(match[1], '%Y-%m-%d %H:%M:%S %z')
        assert abs((now - logged).total_seconds()) < 3600


@pytest.mark.parametrize(
    ('config', 'expected'),
    [
        # The logger's level raised: access lines are dropped, as logging would drop them.
        ({'loggers': {'granian.access': {'handlers': ['access'], 'level': 'WARNING', 'propagate': False}}}, None),
        # The default handler kept, with another formatter: the lines go through it.
        ({'formatters': {'access': {'format': 'VIA-LOGGING %(name)s %(message)s'}}}, 'VIA-LOGGING granian.access ['),
    ],
    ids=['level-raised', 'formatter-replaced'],
)
def test_access_log_follows_a_changed_logging_setup(start_server, tmp_path, config, expected):
    config_path = tmp_path / 'log.json'
    config_path.write_text(json.dumps({'version': 1, **config}))
    srv = start_server(RSGI_APP, '--log-config', str(config_path), '--access-log')
    for _ in range(3):
        served(srv)
    if expected:
        wait_for(lambda: srv.log.count(expected) == 3, what='three access lines through logging')
    log = stopped_log(srv)
    assert not [line for line in log.splitlines() if DEFAULT_LINE.match(line)], log
    if expected is None:
        assert '"GET /ping' not in log


def test_no_access_log_by_default(start_server):
    srv = start_server(RSGI_APP)
    served(srv)
    log = stopped_log(srv)
    assert '"GET /ping' not in log


ALL_ATOMS = (
    'A=%(addr)s T=%(time)s D=%(dt_ms).2f S=%(status)d P=%(path)s Q=%(query_string)s '
    'M=%(method)s SC=%(scheme)s PR=%(protocol)s W=[%(status)5d|%(method)-6s|%(path).7s] 100%%'
)
CUSTOM_LINE = re.compile(
    r'A=(?P<addr>\S+) T=(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}) D=(?P<dt_ms>\d+\.\d{2}) '
    r'S=(?P<status>\d+) P=(?P<path>\S*) Q=(?P<query>\S*) M=(?P<method>[A-Z]+) SC=(?P<scheme>\w+) '
    r'PR=(?P<protocol>\S+) W=\[(?P<padded>.{5}\|.{6}\|.{0,7})\] 100%$'
)


def test_custom_access_log_format_with_every_atom(start_server, static_dir):
    srv = start_server(RSGI_APP, '--access-log', '--access-log-fmt', ALL_ATOMS, '--static-path-mount', str(static_dir))
    # HTTP/1.1: a static file with a query string, then a 206 and a 304.
    first = get(srv.port, '/static/alpha.txt?v=1&w=2')
    assert first.status == 200
    assert get(srv.port, '/static/alpha.txt', headers=[('range', 'bytes=0-1')]).status == 206
    assert get(srv.port, '/static/alpha.txt', headers=[('if-none-match', first.header('etag'))]).status == 304
    # HTTP/1.0, to the app.
    with RawHTTP1(srv.port) as conn:
        conn.send(b'DELETE /thing?id=7 HTTP/1.0\r\n\r\n')
        assert conn.read_to_eof().startswith(b'HTTP/1.')
    # HTTP/2.
    with RawH2(srv.port) as conn:
        assert conn.response(conn.request('GET', '/h2/path?q=h2')).status == 200

    lines = access_lines(srv, 5, CUSTOM_LINE)
    expected = [
        ('GET', '/static/alpha.txt', 'v=1&w=2', 200, 'HTTP/1.1', '  200|GET   |/static'),
        ('GET', '/static/alpha.txt', '', 206, 'HTTP/1.1', '  206|GET   |/static'),
        ('GET', '/static/alpha.txt', '', 304, 'HTTP/1.1', '  304|GET   |/static'),
        ('DELETE', '/thing', 'id=7', 200, 'HTTP/1.0', '  200|DELETE|/thing'),
        ('GET', '/h2/path', 'q=h2', 200, 'HTTP/2', '  200|GET   |/h2/pat'),
    ]
    for match, (method, path, query, status, protocol, padded) in zip(lines, expected, strict=True):
        assert match['addr'] == '127.0.0.1'
        assert match['method'] == method
        assert match['path'] == path
        assert match['query'] == query
        assert int(match['status']) == status
        assert match['scheme'] == 'http'
        assert match['protocol'] == protocol
        assert match['padded'] == padded
        assert float(match['dt_ms']) >= 0


@pytest.mark.parametrize(
    'fmt, named',
    [
        ('%(nope)s', 'nope'),
        ('[%(time)s] %(addr)s %(user_agent)s', 'user_agent'),
    ],
)
def test_unknown_atom_is_refused_at_start(fmt, named):
    result = run_cli('--access-log', '--access-log-fmt', fmt, RSGI_APP)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error')]
    assert len(errors) == 1, result.stderr
    assert named in errors[0]
    assert 'unknown atom' in errors[0]
    assert 'Listening' not in result.stdout


@pytest.mark.parametrize('fmt', ['%(status)q', '100% sure', '%(status'])
def test_malformed_access_log_format_is_refused_at_start(fmt):
    result = run_cli('--access-log', '--access-log-fmt', fmt, RSGI_APP)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith('Error')]) == 1


HEADER_LINE = re.compile(r'S=(?P<status>\d+) UA=(?P<ua>.*) REF=(?P<ref>.*) T=(?P<time>.+)$')


@pytest.mark.parametrize('tz, offset', [('UTC0', '+0000'), ('IST-5:30', '+0530'), ('HST10', '-1000')])
def test_access_log_header_atoms_and_local_time(start_server, tz, offset):
    """`%(header{Name})s` shows a request header (`-` when absent) and `%(time)s` is local
    time with its offset, as in granian 2.8.7."""
    fmt = 'S=%(status)d UA=%(header{User-Agent})s REF=%(header{ referer })s T=%(time)s'
    srv = start_server(RSGI_APP, '--access-log', '--access-log-fmt', fmt, env={'TZ': tz})
    assert get(srv.port, '/ping', headers=[('user-agent', 'probe/1.0 (x)')]).status == 200
    assert get(srv.port, '/ping', headers=[('referer', 'http://r/'), ('user-agent', '')]).status == 200
    first, second = access_lines(srv, 2, HEADER_LINE)
    assert (first['ua'], first['ref']) == ('probe/1.0 (x)', '-')
    assert (second['ua'], second['ref']) == ('-', 'http://r/')
    for line in (first, second):
        stamp = datetime.strptime(line['time'], '%Y-%m-%d %H:%M:%S %z')
        assert line['time'].endswith(offset)
        assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 600


def test_header_atom_takes_only_the_s_conversion():
    result = run_cli('--access-log', '--access-log-fmt', '%(header{x})d', RSGI_APP)
    assert result.returncode == 2
    assert "takes the 's' conversion" in result.stderr
