"""`granian.log` from Python: levels, the default config, configure_logging, log_request_builder.

The access log of real servers (the Rust fast path and the `logging` one) is in test_logging.py.
"""

import logging
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime

import pytest
from granian.log import (
    DEFAULT_ACCESSLOG_FMT,
    LOGGING_CONFIG,
    LogLevels,
    access_logger,
    configure_logging,
    log_levels_map,
    log_request_builder,
)

from .server_support import ROOT


def test_log_levels():
    assert str(LogLevels.info) == 'LogLevels.info'
    assert LogLevels.info == 'info'
    assert LogLevels('warn') is LogLevels.warn
    assert log_levels_map == {
        LogLevels.critical: logging.CRITICAL,
        LogLevels.error: logging.ERROR,
        LogLevels.warning: logging.WARNING,
        LogLevels.warn: logging.WARNING,
        LogLevels.info: logging.INFO,
        LogLevels.debug: logging.DEBUG,
        LogLevels.notset: logging.NOTSET,
    }
    assert log_levels_map['debug'] == logging.DEBUG  # plain strings find their member


def test_default_config_configures_only_granian_loggers():
    assert 'root' not in LOGGING_CONFIG
    assert set(LOGGING_CONFIG['loggers']) == {'_granian', 'granian.access'}


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_configure_logging_leaves_the_app_logging_alone():
    # A fresh interpreter: dictConfig changes process-wide state.
    out = run_python(
        """
        import logging, sys
        from granian.log import LogLevels, configure_logging

        root = logging.getLogger()
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter('APP %(name)s %(levelname)s %(message)s'))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        configure_logging(LogLevels.warning)
        assert root.handlers == [handler] and root.level == logging.DEBUG, (root.handlers, root.level)
        logging.getLogger('myapp').debug('app debug line')
        logging.getLogger('_granian').info('hidden at warning')
        logging.getLogger('_granian').warning('granian warning')
        """
    )
    assert 'APP myapp DEBUG app debug line' in out
    assert 'hidden at warning' not in out
    assert '[WARNING] granian warning' in out
    assert 'APP _granian' not in out  # granian's loggers do not propagate to the app's handlers


def test_configure_logging_level_is_required():
    with pytest.raises(TypeError):
        configure_logging()


# -- log_request_builder ---------------------------------------------------------------------------------------------


REQUEST = {
    'addr_remote': '192.0.2.7',
    'path': '/items',
    'qs': 'page=2',
    'method': 'POST',
    'scheme': 'https',
    'protocol': 'HTTP/2',
}


def test_default_format(access_lines):
    log = log_request_builder(DEFAULT_ACCESSLOG_FMT)
    assert log.parse_headers is False
    rtime = time.time()
    log(rtime, time.perf_counter() - 0.25, REQUEST, 201)
    (line,) = access_lines
    stamp = datetime.fromtimestamp(rtime, tz=datetime.now().astimezone().tzinfo).strftime('%Y-%m-%d %H:%M:%S %z')
    match = re.fullmatch(rf'\[{re.escape(stamp)}\] 192\.0\.2\.7 - "POST /items HTTP/2" 201 (\d+\.\d{{3}})', line)
    assert match, line
    assert 250 <= float(match[1]) < 5000
    log_request_builder(None)(rtime, time.perf_counter(), REQUEST, 200)
    assert access_lines[1].startswith(f'[{stamp}] 192.0.2.7 - "POST /items HTTP/2" 200 ')


def test_every_atom(access_lines):
    log = log_request_builder(
        '%(addr)s|%(method)-5s|%(path)s|%(query_string)s|%(scheme)s|%(protocol)s|%(status)d 100%%'
    )
    log(time.time(), time.perf_counter(), REQUEST, 404)
    assert access_lines == ['192.0.2.7|POST |/items|page=2|https|HTTP/2|404 100%']


def test_header_atoms(access_lines):
    log = log_request_builder('%(status)d ua=%(header{User-Agent})s ref=%(header{ referer })s x=%(header{x-none})s')
    assert log.parse_headers is True
    asked = []

    def headers(name):
        asked.append(name)
        return {'user-agent': 'curl/8', 'referer': 'https://example.org/'}.get(name)

    log(time.time(), time.perf_counter(), {**REQUEST, 'headers': headers}, 200)
    assert access_lines == ['200 ua=curl/8 ref=https://example.org/ x=-']
    assert asked == ['user-agent', 'referer', 'x-none']


def test_nothing_is_built_below_the_level(access_lines):
    log = log_request_builder('%(path)s')
    access_logger.setLevel(logging.WARNING)
    log(time.time(), time.perf_counter(), {}, 200)  # would fail on the missing keys if built
    assert access_lines == []


@pytest.mark.parametrize(
    ('fmt', 'message'),
    [
        ('%(nope)s', "unknown atom 'nope'"),
        ('%(status)q', 'invalid access log format'),
        ('100% sure', 'invalid access log format'),
    ],
)
def test_a_bad_format_is_refused_when_built(fmt, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        log_request_builder(fmt)
