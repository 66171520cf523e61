"""`--log-format text|json`: runtime and access lines as JSON objects, read from real servers.

The servers here write to a pipe (as under a process manager or a container runtime), read by a
thread of the test that copies it to the log file: several worker processes share that pipe, and
each line must come out whole, never torn by another process's write.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone

import pytest
from granian.log import LogFormats, log_request_builder

from .rsgi_support import RawH2, RawHTTP1, request_bytes, wait_for
from .server_support import HOST, PORT, ROOT, ServerProcess, free_port, granian_cmd, server_env
from .test_log_module import REQUEST

APP = 'tests.apps.static_apps:rsgi_app'
ERROR_APP = 'tests.apps.rsgi_app:app'
ISO_TIME = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$')
RUNTIME_KEYS = {'time', 'level', 'logger', 'message'}
ACCESS_KEYS = [
    'time',
    'level',
    'logger',
    'message',
    'addr',
    'method',
    'path',
    'query_string',
    'status',
    'dt_ms',
    'protocol',
    'scheme',
]
# Every atom, a header that is sent and one that is not, and dt_ms last (see `check_message`).
ALL_ATOMS_FMT = (
    '%(addr)s [%(time)s] "%(method)s %(path)s?%(query_string)s %(protocol)s" %(scheme)s %(status)d '
    'ua="%(header{User-Agent})s" ref=%(header{Referer})s %(dt_ms).3f'
)


# -- servers on a pipe -------------------------------------------------------------------------------------------------


class PipeReader:
    """Copies a server's stdout+stderr pipe to its log file. While `throttle` is set it reads a little at a
    time, so the pipe fills up and the workers' writes wait for room, as with a slow log collector: that is
    when the kernel interleaves writes larger than PIPE_BUF."""

    def __init__(self, pipe, log_path):
        self.fd = pipe.fileno()
        self.log_path = log_path
        self.throttle = threading.Event()
        self.thread = threading.Thread(target=self._run, name='log-pipe-reader', daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with open(self.log_path, 'ab') as out:
            while True:
                if self.throttle.is_set():
                    chunk = os.read(self.fd, 512)
                    time.sleep(0.002)
                else:
                    chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    return
                out.write(chunk)
                out.flush()


def start_piped(pool, *args: str, app: str = APP, workers: int = 1, env=None) -> ServerProcess:
    """`granian --interface rsgi --port P --workers N *args app`, its output on a pipe (see `PipeReader`)."""
    port = free_port()
    cmd = granian_cmd('--interface', 'rsgi', '--port', str(port), '--workers', str(workers), *args, app)
    log_path = pool.log_dir / f'piped-{len(pool.started)}-{port}.log'
    log_path.write_bytes(b'')
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=server_env(env, clean=True)
    )
    server = ServerProcess(proc, port, log_path)
    server.reader = PipeReader(proc.stdout, log_path)
    pool.started.append(server)
    return server.start_or_stop(PORT)


def finished_log(srv) -> str:
    """Stops the server and returns all it wrote (the reader has seen the pipe's end)."""
    srv.reader.throttle.clear()
    srv.stop()
    srv.reader.thread.join(timeout=30)
    assert not srv.reader.thread.is_alive(), 'the pipe did not close after the server stopped'
    srv.proc.stdout.close()
    return srv.log


def wait_logged(srv, count_lines, total: int, what: str) -> None:
    """Until `count_lines(whole lines)` reaches `total`, or the log stops growing (lines lost or torn:
    the checks that follow say which)."""
    state = {'size': -1, 'since': time.monotonic()}

    def done() -> bool:
        text = srv.log
        if count_lines(whole_lines(text)) >= total:
            return True
        if len(text) != state['size']:
            state['size'], state['since'] = len(text), time.monotonic()
        return time.monotonic() - state['since'] > 3

    wait_for(done, timeout=120, what=what)


def whole_lines(text: str) -> list:
    """The lines that have their newline (a write in progress may have left part of one)."""
    return text.split('\n')[:-1]


def parse_all(text: str) -> list:
    """Every line as JSON: a line that does not parse (torn, interleaved, or plain text) fails the test."""
    lines = text.split('\n')
    assert lines[-1] == '', f'the output does not end with a newline: {lines[-1][-300:]!r}'
    records = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f'line {number} is not a JSON object: {line[:500]!r}')
        assert isinstance(record, dict), line
        records.append(record)
    return records


def access_records(records: list) -> list:
    return [r for r in records if r.get('logger') == 'granian.access']


def runtime_records(records: list) -> list:
    return [r for r in records if r.get('logger') != 'granian.access']


def check_time(value: str) -> None:
    assert ISO_TIME.match(value), value
    stamp = datetime.fromisoformat(value)
    assert stamp.utcoffset() is not None
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 600


def check_runtime(record: dict) -> None:
    assert RUNTIME_KEYS <= set(record), record
    check_time(record['time'])
    assert record['level'] in ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'), record
    assert record['logger'] == '_granian' or record['logger'].startswith('_granian.'), record
    assert isinstance(record['message'], str) and record['message'], record


def check_message(record: dict, fmt: str) -> None:
    """`message` is the line `fmt` gives in text mode: the same atoms, `-` for a missing header."""
    values = {key: record[key] for key in ACCESS_KEYS[4:]}
    values['time'] = datetime.fromisoformat(record['time']).strftime('%Y-%m-%d %H:%M:%S %z')
    headers = record.get('header', {})
    text_fmt = re.sub(r'%\(header\{([^}]+)\}\)s', lambda m: headers[m[1].strip().lower()] or '-', fmt)
    # dt_ms ends the format: the text shows it unrounded, JSON to the microsecond.
    expected, _, _ = (text_fmt % values).rpartition(' ')
    message, _, dt_text = record['message'].rpartition(' ')
    assert message == expected
    assert abs(float(dt_text) - record['dt_ms']) < 0.0011


def raw_get(port: int, target: str, method: str = 'GET', headers=()):
    with RawHTTP1(port) as conn:
        conn.send(request_bytes(method, target, headers=headers))
        return conn.read_response()


# -- JSON under load, several workers on one pipe ---------------------------------------------------------------------

THREADS = 6
PER_THREAD = 500
PER_CONNECTION = 25


def drive_load(port: int) -> set:
    """THREADS clients, PER_THREAD requests each, a new keep-alive connection every PER_CONNECTION (so that
    every worker gets some); each request is `/pid?t=T&i=I`. Returns the PIDs that answered."""
    pids, errors = set(), []
    # A long header value: long lines fill a batch (and PIPE_BUF) sooner.
    agent = 'load-client/1.0 ' + 'x' * 300

    def client(thread: int) -> None:
        try:
            for start in range(0, PER_THREAD, PER_CONNECTION):
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                for index in range(start, start + PER_CONNECTION):
                    conn.request('GET', f'/pid?t={thread}&i={index}', headers={'User-Agent': f'{agent} t{thread}'})
                    response = conn.getresponse()
                    body = response.read()
                    assert response.status == 200, response.status
                    pids.add(int(body))
                conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:3]
    return pids


def test_json_lines_stay_whole_under_load_with_several_workers(server_pool):
    srv = start_piped(server_pool, '--log-format', 'json', '--access-log', '--access-log-fmt', ALL_ATOMS_FMT, workers=3)
    # Known requests first: HTTP/1.1 with a query string and headers, HTTP/2.
    probe = raw_get(srv.port, '/probe/path?x=1&y=%20z', method='POST', headers=[('user-agent', 'probe/1.0 "q"')])
    assert probe.status == 200
    with RawH2(srv.port) as conn:
        assert conn.response(conn.request('GET', '/h2/path?q=h2')).status == 200
    srv.reader.throttle.set()
    pids = drive_load(srv.port)
    assert len(pids) >= 2, f'the load reached one worker only: {pids}'
    srv.reader.throttle.clear()
    total = THREADS * PER_THREAD + 2

    wait_logged(srv, lambda lines: sum('"logger":"granian.access"' in line for line in lines), total, 'access lines')
    records = parse_all(finished_log(srv))

    access = access_records(records)
    assert len(access) == total
    for record in access:
        assert list(record) == [*ACCESS_KEYS, 'header'], record
        check_time(record['time'])
        assert (record['level'], record['addr'], record['scheme']) == ('INFO', '127.0.0.1', 'http')
        assert isinstance(record['status'], int) and isinstance(record['dt_ms'], (int, float))
        assert record['dt_ms'] >= 0
        check_message(record, ALL_ATOMS_FMT)

    # The workers' lines interleave (whole): find the known requests by their path.
    (first,) = [r for r in access if r['path'] == '/probe/path']
    (second,) = [r for r in access if r['path'] == '/h2/path']
    assert (first['method'], first['path'], first['query_string']) == ('POST', '/probe/path', 'x=1&y=%20z')
    assert (first['status'], first['protocol']) == (200, 'HTTP/1.1')
    assert first['header'] == {'user-agent': 'probe/1.0 "q"', 'referer': None}
    assert (second['method'], second['path'], second['query_string']) == ('GET', '/h2/path', 'q=h2')
    assert (second['status'], second['protocol']) == (200, 'HTTP/2')

    # Each load request logged once, with its own values.
    seen = set()
    for record in access:
        if record is first or record is second:
            continue
        query = dict(part.split('=') for part in record['query_string'].split('&'))
        key = (int(query['t']), int(query['i']))
        assert key not in seen, record
        seen.add(key)
        assert (record['method'], record['path'], record['status'], record['protocol']) == (
            'GET',
            '/pid',
            200,
            'HTTP/1.1',
        )
        assert record['header']['user-agent'].endswith(f' t{key[0]}')
        assert record['header']['referer'] is None
    assert seen == {(t, i) for t in range(THREADS) for i in range(PER_THREAD)}

    runtime = runtime_records(records)
    for record in runtime:
        check_runtime(record)
    messages = [r['message'] for r in runtime]
    assert f'Listening at: http://127.0.0.1:{srv.port}' in messages
    assert 'Shutdown complete' in messages


def test_text_lines_stay_whole_under_load_with_several_workers(server_pool):
    """The same load in text mode: every line is one whole access or runtime line."""
    srv = start_piped(server_pool, '--access-log', '--access-log-fmt', ALL_ATOMS_FMT, workers=3)
    srv.reader.throttle.set()
    pids = drive_load(srv.port)
    assert len(pids) >= 2, f'the load reached one worker only: {pids}'
    srv.reader.throttle.clear()
    total = THREADS * PER_THREAD
    wait_logged(srv, lambda lines: sum(' "GET /pid?t=' in line for line in lines), total, 'access lines')
    lines = whole_lines(finished_log(srv))
    access_line = re.compile(
        r'^127\.0\.0\.1 \[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /pid\?t=(\d+)&i=(\d+) HTTP/1\.1" http 200 '
        r'ua="load-client/1\.0 x{300} t(\d+)" ref=- \d+\.\d{3}$'
    )
    seen = set()
    for line in lines:
        if line.startswith('['):
            assert re.match(r'^\[(INFO|WARNING)\] \S', line), line
            continue
        match = access_line.match(line)
        assert match, f'not a whole access line: {line[:500]!r}'
        assert match[1] == match[3]
        seen.add((int(match[1]), int(match[2])))
    assert len(seen) == total == len(lines) - sum(line.startswith('[') for line in lines)


# -- the shapes -------------------------------------------------------------------------------------------------------


def test_default_access_format_as_json(server_pool):
    """The default format names no query string or header: the JSON line still has every atom, no `header`."""
    srv = start_piped(server_pool, '--log-format', 'json', '--access-log')
    assert raw_get(srv.port, '/items?page=2&sort=name', method='DELETE').status == 200
    wait_for(lambda: '"logger":"granian.access"' in srv.log, what='the access line')
    records = parse_all(finished_log(srv))
    (record,) = access_records(records)
    assert list(record) == ACCESS_KEYS
    assert record['method'] == 'DELETE'
    assert record['path'] == '/items'
    assert record['query_string'] == 'page=2&sort=name'
    assert record['status'] == 200
    assert record['protocol'] == 'HTTP/1.1'
    stamp = datetime.fromisoformat(record['time']).strftime('%Y-%m-%d %H:%M:%S %z')
    assert re.fullmatch(
        rf'\[{re.escape(stamp)}\] 127\.0\.0\.1 - "DELETE /items HTTP/1\.1" 200 \d+\.\d{{3}}', record['message']
    )
    for runtime in runtime_records(records):
        check_runtime(runtime)


@pytest.mark.parametrize(('tz', 'offset'), [('UTC0', '+00:00'), ('IST-5:30', '+05:30'), ('HST10', '-10:00')])
def test_json_times_are_local_with_their_offset(server_pool, tz, offset):
    srv = start_piped(server_pool, '--log-format', 'json', '--access-log', env={'TZ': tz})
    assert raw_get(srv.port, '/ping').status == 200
    wait_for(lambda: '"logger":"granian.access"' in srv.log, what='the access line')
    records = parse_all(finished_log(srv))
    assert access_records(records)
    for record in records:
        check_time(record['time'])
        assert record['time'].endswith(offset), record


def test_runtime_error_carries_its_traceback(server_pool):
    srv = start_piped(server_pool, '--log-format', 'json', '--log-level', 'debug', app=ERROR_APP)
    assert raw_get(srv.port, '/error').status == 500
    with RawHTTP1(srv.port) as conn:
        conn.send(b'NOT HTTP AT ALL\r\n\r\n')
        assert conn.read_response().status == 400
    wait_for(lambda: 'ended with an error' in srv.log and 'boom from the app' in srv.log, what='the error lines')
    records = parse_all(finished_log(srv))
    for record in records:
        check_runtime(record)
    (error,) = [r for r in records if r['level'] == 'ERROR']
    assert error['logger'] == '_granian'
    assert error['exc_info'].startswith('Traceback (most recent call last):\n')
    assert error['exc_info'].endswith('RuntimeError: boom from the app')
    assert 'exc_info' not in {key for r in records if r is not error for key in r}
    # A record of the Rust core, at debug level, through the same formatter.
    assert any(r['level'] == 'DEBUG' and 'ended with an error' in r['message'] for r in records)


def test_environment_variable_selects_json(server_pool):
    srv = start_piped(server_pool, '--access-log', env={'GRANIAN_LOG_FORMAT': 'JSON'})
    assert raw_get(srv.port, '/ping').status == 200
    wait_for(lambda: '"logger":"granian.access"' in srv.log, what='the access line')
    records = parse_all(finished_log(srv))
    assert [r['path'] for r in access_records(records)] == ['/ping']
    assert any(r['message'] == 'Shutdown complete' for r in runtime_records(records))


def test_command_line_wins_over_the_environment(server_pool):
    srv = start_piped(server_pool, '--log-format', 'text', env={'GRANIAN_LOG_FORMAT': 'json'})
    assert raw_get(srv.port, '/ping').status == 200  # serving: the stop below is a graceful one
    log = finished_log(srv)
    assert '[INFO] Shutdown complete\n' in log
    assert '{' not in log


def _normalised(log: str, port: int) -> list:
    """The lines with what changes from run to run (times, PIDs, the port, durations) masked."""
    out = []
    for line in log.splitlines():
        line = re.sub(r'\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}', 'TIME', line)
        line = re.sub(r'PID:? \d+', 'PID N', line)
        line = line.replace(str(port), 'PORT')
        line = re.sub(r' \d+\.\d{3}$', ' DT', line)
        out.append(line)
    return out


def test_text_format_is_unchanged(server_pool):
    """`--log-format text` writes what the server wrote before the option existed (and without it)."""
    logs = []
    for extra in ([], ['--log-format', 'text']):
        srv = start_piped(server_pool, *extra, '--access-log', workers=2)
        wait_for(lambda srv=srv: srv.log.count(') is serving') == 2, what='both workers serving')
        for target in ('/a?x=1', '/b'):
            assert raw_get(srv.port, target).status == 200
        wait_for(lambda srv=srv: srv.log.count('"GET /') == 2, what='two access lines')
        logs.append(_normalised(finished_log(srv), srv.port))
    default, text = logs
    # Compared as sets: how many workers print a shutdown line varies from run to run.
    assert set(default) == set(text), (default, text)
    assert '[INFO] Listening at: http://127.0.0.1:PORT' in text
    assert '[INFO] Shutdown complete' in text
    assert sorted(line for line in text if not line.startswith('[INFO]')) == [
        '[TIME] 127.0.0.1 - "GET /a HTTP/1.1" 200 DT',
        '[TIME] 127.0.0.1 - "GET /b HTTP/1.1" 200 DT',
    ]


@pytest.mark.parametrize('where', ['option', 'environment'])
def test_a_bad_value_is_a_usage_error(where):
    args = ['--log-format', 'xml'] if where == 'option' else []
    env = server_env({'GRANIAN_LOG_FORMAT': 'xml'} if where == 'environment' else None, clean=True)
    result = subprocess.run(
        granian_cmd('--interface', 'rsgi', '--port', str(free_port()), *args, APP),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error')]
    named = "'--log-format'" if where == 'option' else "'--log-format' (env var: 'GRANIAN_LOG_FORMAT')"
    assert errors == [f"Error: Invalid value for {named}: 'xml' is not one of 'text', 'json'."], result.stderr
    assert 'Traceback' not in result.stderr
    assert result.stdout == ''


# -- through `logging` ------------------------------------------------------------------------------------------------


def test_a_log_config_wins_for_what_it_names(server_pool, tmp_path):
    """A `--log-config` formatter for runtime lines replaces the JSON one; one for access lines gets the JSON
    line as its message (the access lines then go through `logging`, not the direct writer)."""
    config = {
        'version': 1,
        'formatters': {
            'generic': {'format': 'MINE %(levelname)s %(message)s'},
            'access': {'format': 'VIA-LOGGING %(message)s'},
        },
    }
    path = tmp_path / 'log.json'
    path.write_text(json.dumps(config))
    srv = start_piped(server_pool, '--log-format', 'json', '--log-config', str(path), '--access-log')
    assert raw_get(srv.port, '/via?x=1').status == 200
    wait_for(lambda: 'VIA-LOGGING' in srv.log, what='the access line')
    lines = whole_lines(finished_log(srv))
    (access,) = [line for line in lines if line.startswith('VIA-LOGGING ')]
    record = json.loads(access.removeprefix('VIA-LOGGING '))
    assert (record['logger'], record['path'], record['query_string']) == ('granian.access', '/via', 'x=1')
    assert 'MINE INFO Shutdown complete' in lines
    assert all(line.startswith(('MINE ', 'VIA-LOGGING ')) for line in lines), lines


# -- from Python: the access logger of a Python interface, the runtime formatter ---------------------------------------


def test_python_access_lines_have_the_same_shape(access_lines):
    log = log_request_builder(ALL_ATOMS_FMT, log_format=LogFormats.json)
    request = {**REQUEST, 'headers': {'user-agent': 'curl/8 "x"'}.get}
    log(time.time(), time.perf_counter() - 0.25, request, 201)
    (line,) = access_lines
    record = json.loads(line)
    assert list(record) == [*ACCESS_KEYS, 'header']
    check_time(record['time'])
    assert record['level'] == 'INFO' and record['logger'] == 'granian.access'
    assert (record['addr'], record['method'], record['path'], record['query_string']) == (
        '192.0.2.7',
        'POST',
        '/items',
        'page=2',
    )
    assert (record['status'], record['protocol'], record['scheme']) == (201, 'HTTP/2', 'https')
    assert 250 <= record['dt_ms'] < 5000 and round(record['dt_ms'], 3) == record['dt_ms']
    assert record['header'] == {'user-agent': 'curl/8 "x"', 'referer': None}
    check_message(record, ALL_ATOMS_FMT)
    # Text stays text.
    log_request_builder('%(status)d', log_format=LogFormats.text)(time.time(), time.perf_counter(), request, 204)
    assert access_lines[1] == '204'


def test_configure_logging_selects_json_in_a_fresh_interpreter():
    code = """
        import logging
        from granian.log import LogFormats, LogLevels, configure_logging, log_request_builder, logger

        configure_logging(LogLevels.info, log_format=LogFormats.json)
        logger.info('plain %s', 'message')
        try:
            1 / 0
        except ZeroDivisionError:
            logger.exception('it failed')
        logging.getLogger('_granian.core').warning('from a child logger')
        req = {'addr_remote': '::1', 'path': '/p', 'qs': '', 'method': 'GET', 'scheme': 'http', 'protocol': 'HTTP/1.1'}
        log_request_builder(None)(172800.0, 0.0, req, 200)
        """
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    plain, failed, child, access = parse_all(result.stdout)
    for record in (plain, failed, child):
        check_runtime(record)
    assert list(plain) == ['time', 'level', 'logger', 'message']
    assert plain['message'] == 'plain message'
    assert (failed['level'], failed['message']) == ('ERROR', 'it failed')
    assert failed['exc_info'].startswith('Traceback (most recent call last):')
    assert failed['exc_info'].endswith('ZeroDivisionError: division by zero')
    assert (child['level'], child['logger']) == ('WARNING', '_granian.core')
    assert list(access) == ACCESS_KEYS
    assert access['addr'] == '::1' and access['time'].startswith('1970-01-0')
