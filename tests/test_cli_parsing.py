"""Unit tests of the `granian` command line: parsing and validation only, no server is started.

`granian.cli.Granian` is replaced by a fake that records what the CLI would hand the server.
"""

import json
import os
import pathlib
from typing import ClassVar, Optional

import click
import granian.cli as granian_cli
import pytest
from click.testing import CliRunner
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from granian.errors import ConfigurationError, FatalError
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogFormats, LogLevels

# (option and metavar, help text, bracketed extras) as `granian --help` shows them, in its order.
SEED_OPTIONS = [
    ('--host TEXT', 'Host address to bind to', 'env var: GRANIAN_HOST; default: (127.0.0.1)'),
    ('--port INTEGER', 'Port to bind to.', 'env var: GRANIAN_PORT; default: 8000'),
    ('--uds PATH', 'Unix Domain Socket to bind to.', 'env var: GRANIAN_UDS'),
    ('--uds-permissions OCTAL INTEGER', 'Unix Domain Socket file permissions', 'env var: GRANIAN_UDS_PERMISSIONS'),
    (
        '--interface [asgi|asginl|rsgi|wsgi]',
        'Application interface type',
        'env var: GRANIAN_INTERFACE; default: (rsgi)',
    ),
    ('--http [auto|1|2]', 'HTTP version', 'env var: GRANIAN_HTTP; default: (auto)'),
    ('--ws / --no-ws', 'Enable websockets handling', 'env var: GRANIAN_WEBSOCKETS; default: (enabled)'),
    ('--workers INTEGER RANGE', 'Number of worker processes', 'env var: GRANIAN_WORKERS; default: 1; x>=1'),
    (
        '--blocking-threads INTEGER RANGE',
        'Number of blocking threads (per worker)',
        'env var: GRANIAN_BLOCKING_THREADS; x>=1',
    ),
    (
        '--blocking-threads-idle-timeout DURATION',
        (
            'The maximum amount of time in seconds (or a human-readable duration) an idle blocking thread will be kept '
            'alive'
        ),
        'env var: GRANIAN_BLOCKING_THREADS_IDLE_TIMEOUT; default: 30; 5<=x<=600',
    ),
    (
        '--runtime-threads INTEGER RANGE',
        'Number of runtime threads (per worker)',
        'env var: GRANIAN_RUNTIME_THREADS; default: 1; x>=1',
    ),
    (
        '--runtime-blocking-threads INTEGER RANGE',
        'Number of runtime I/O blocking threads (per worker)',
        'env var: GRANIAN_RUNTIME_BLOCKING_THREADS; x>=1',
    ),
    (
        '--runtime-mode [auto|mt|st]',
        'Runtime mode to use (single/multi threaded)',
        'env var: GRANIAN_RUNTIME_MODE; default: (auto)',
    ),
    (
        '--loop [auto|asyncio|rloop|uvloop|winloop]',
        'Event loop implementation',
        'env var: GRANIAN_LOOP; default: (auto)',
    ),
    (
        '--task-impl [asyncio|rust]',
        'Async task implementation to use',
        'env var: GRANIAN_TASK_IMPL; default: (asyncio)',
    ),
    (
        '--backlog INTEGER RANGE',
        'Maximum number of connections to hold in backlog (globally)',
        'env var: GRANIAN_BACKLOG; default: 1024; x>=128',
    ),
    (
        '--backpressure INTEGER RANGE',
        'Maximum number of requests to process concurrently (per worker)',
        'env var: GRANIAN_BACKPRESSURE; default: (backlog/workers); x>=1',
    ),
    (
        '--http1-buffer-size INTEGER RANGE',
        'Sets the maximum buffer size for HTTP/1 connections',
        'env var: GRANIAN_HTTP1_BUFFER_SIZE; default: 417792; x>=8192',
    ),
    (
        '--http1-header-read-timeout INTEGER RANGE',
        'Sets a timeout (in milliseconds) to read headers',
        'env var: GRANIAN_HTTP1_HEADER_READ_TIMEOUT; default: 30000; 1<=x<=60000',
    ),
    (
        '--http1-keep-alive / --no-http1-keep-alive',
        'Enables or disables HTTP/1 keep-alive',
        'env var: GRANIAN_HTTP1_KEEP_ALIVE; default: (enabled)',
    ),
    (
        '--http1-pipeline-flush / --no-http1-pipeline-flush',
        'Aggregates HTTP/1 flushes to better support pipelined responses (experimental)',
        'env var: GRANIAN_HTTP1_PIPELINE_FLUSH; default: (disabled)',
    ),
    (
        '--http2-adaptive-window / --no-http2-adaptive-window',
        'Sets whether to use an adaptive flow control for HTTP2',
        'env var: GRANIAN_HTTP2_ADAPTIVE_WINDOW; default: (disabled)',
    ),
    (
        '--http2-initial-connection-window-size INTEGER RANGE',
        'Sets the max connection-level flow control for HTTP2',
        'env var: GRANIAN_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE; default: 1048576; x>=1024',
    ),
    (
        '--http2-initial-stream-window-size INTEGER RANGE',
        'Sets the `SETTINGS_INITIAL_WINDOW_SIZE` option for HTTP2 stream-level flow control',
        'env var: GRANIAN_HTTP2_INITIAL_STREAM_WINDOW_SIZE; default: 1048576; x>=1024',
    ),
    (
        '--http2-keep-alive-interval INTEGER RANGE',
        'Sets an interval (in milliseconds) for HTTP2 Ping frames should be sent to keep a connection alive',
        'env var: GRANIAN_HTTP2_KEEP_ALIVE_INTERVAL; 1<=x<=60000',
    ),
    (
        '--http2-keep-alive-timeout DURATION',
        (
            'Sets a timeout (in seconds or a human-readable duration) for receiving an acknowledgement of the HTTP2 '
            'keep-alive ping'
        ),
        'env var: GRANIAN_HTTP2_KEEP_ALIVE_TIMEOUT; default: 20; x>=1',
    ),
    (
        '--http2-max-concurrent-streams INTEGER RANGE',
        'Sets the SETTINGS_MAX_CONCURRENT_STREAMS option for HTTP2 connections',
        'env var: GRANIAN_HTTP2_MAX_CONCURRENT_STREAMS; default: 200; x>=10',
    ),
    (
        '--http2-max-frame-size INTEGER RANGE',
        'Sets the maximum frame size to use for HTTP2',
        'env var: GRANIAN_HTTP2_MAX_FRAME_SIZE; default: 16384; x>=1024',
    ),
    (
        '--http2-max-headers-size INTEGER RANGE',
        'Sets the max size of received header frames',
        'env var: GRANIAN_HTTP2_MAX_HEADERS_SIZE; default: 16777216; x>=1',
    ),
    (
        '--http2-max-send-buffer-size INTEGER RANGE',
        'Set the maximum write buffer size for each HTTP/2 stream',
        'env var: GRANIAN_HTTP2_MAX_SEND_BUFFER_SIZE; default: 409600; x>=1024',
    ),
    ('--log / --no-log', 'Enable logging', 'env var: GRANIAN_LOG_ENABLED; default: (enabled)'),
    (
        '--log-level [critical|error|warning|warn|info|debug|notset]',
        'Log level',
        'env var: GRANIAN_LOG_LEVEL; default: (info)',
    ),
    ('--log-config FILE', 'Logging configuration file (json)', 'env var: GRANIAN_LOG_CONFIG'),
    (
        '--access-log / --no-access-log',
        'Enable access log',
        'env var: GRANIAN_LOG_ACCESS_ENABLED; default: (disabled)',
    ),
    ('--access-log-fmt TEXT', 'Access log format', 'env var: GRANIAN_LOG_ACCESS_FMT'),
    ('--ssl-certificate FILE', 'SSL certificate file', 'env var: GRANIAN_SSL_CERTIFICATE'),
    ('--ssl-keyfile FILE', 'SSL key file', 'env var: GRANIAN_SSL_KEYFILE'),
    ('--ssl-keyfile-password TEXT', 'SSL key password', 'env var: GRANIAN_SSL_KEYFILE_PASSWORD'),
    (
        '--ssl-protocol-min [tls1.2|tls1.3]',
        'Set the minimum supported protocol for SSL connections.',
        'env var: GRANIAN_SSL_PROTOCOL_MIN; default: (tls1.3)',
    ),
    ('--ssl-ca FILE', 'Root SSL cerificate file for client verification', 'env var: GRANIAN_SSL_CA'),
    ('--ssl-crl FILE', 'SSL CRL file(s)', 'env var: GRANIAN_SSL_CRL'),
    (
        '--ssl-client-verify / --no-ssl-client-verify',
        'Verify clients SSL certificates',
        'env var: GRANIAN_SSL_CLIENT_VERIFY; default: (disabled)',
    ),
    ('--url-path-prefix TEXT', 'URL path prefix the app is mounted on', 'env var: GRANIAN_URL_PATH_PREFIX'),
    (
        '--respawn-failed-workers / --no-respawn-failed-workers',
        'Enable workers respawn on unexpected exit',
        'env var: GRANIAN_RESPAWN_FAILED_WORKERS; default: (disabled)',
    ),
    (
        '--respawn-interval FLOAT',
        'The number of seconds to sleep between workers respawn',
        'env var: GRANIAN_RESPAWN_INTERVAL; default: 3.5',
    ),
    (
        '--rss-sample-interval DURATION',
        'The sample rate in seconds (or a human-readable duration) for the resource monitor',
        'env var: GRANIAN_RSS_SAMPLE_INTERVAL; default: 30; 1<=x<=300',
    ),
    (
        '--rss-samples INTEGER RANGE',
        'The number of consecutive samples to consider a worker over resource limit',
        'env var: GRANIAN_RSS_SAMPLES; default: 1; x>=1',
    ),
    (
        '--workers-lifetime DURATION',
        (
            'The maximum amount of time in seconds (or a human-readable duration) a worker will be kept alive before '
            'respawn'
        ),
        'env var: GRANIAN_WORKERS_LIFETIME; x>=60',
    ),
    (
        '--workers-max-rss INTEGER RANGE',
        'The maximum amount of memory (in MiB) a worker can consume before respawn',
        'env var: GRANIAN_WORKERS_MAX_RSS; x>=1',
    ),
    (
        '--workers-kill-timeout DURATION',
        (
            'The amount of time in seconds (or a human-readable duration) to wait for killing workers that refused to '
            'gracefully stop'
        ),
        'env var: GRANIAN_WORKERS_KILL_TIMEOUT; default: (disabled); 1<=x<=1800',
    ),
    (
        '--factory / --no-factory',
        'Treat target as a factory function, that should be invoked to build the actual target',
        'env var: GRANIAN_FACTORY; default: (disabled)',
    ),
    ('--working-dir DIRECTORY', 'Set the working directory', 'env var: GRANIAN_WORKING_DIR'),
    (
        '--env-files FILE',
        'Environment file(s) to load (requires granian[dotenv] extra)',
        'env var: GRANIAN_ENV_FILES',
    ),
    (
        '--static-path-route TEXT',
        'Route for static file serving',
        'env var: GRANIAN_STATIC_PATH_ROUTE; default: (/static)',
    ),
    (
        '--static-path-mount DIRECTORY',
        'Path to mount for static file serving',
        'env var: GRANIAN_STATIC_PATH_MOUNT',
    ),
    (
        '--static-path-dir-to-file TEXT',
        'File to serve when a static path is a directory (e.g. index.html)',
        'env var: GRANIAN_STATIC_PATH_DIR_TO_FILE',
    ),
    (
        '--static-path-expires DURATION',
        'Cache headers expiration (in seconds or a human-readable duration) for static file serving. 0 to disable.',
        'env var: GRANIAN_STATIC_PATH_EXPIRES; default: 86400; x>=0',
    ),
    (
        '--metrics / --no-metrics',
        'Serve Prometheus metrics (every worker, from the main process) on a separate address',
        'env var: GRANIAN_METRICS_ENABLED; default: (disabled)',
    ),
    (
        '--metrics-scrape-interval DURATION',
        'How often (in seconds or a human-readable duration) the metrics are collected',
        'env var: GRANIAN_METRICS_SCRAPE_INTERVAL; default: 15; 1<=x<=60',
    ),
    (
        '--metrics-address TEXT',
        'Address the metrics exporter listens on',
        'env var: GRANIAN_METRICS_ADDRESS; default: (127.0.0.1)',
    ),
    ('--metrics-port INTEGER', 'Port the metrics exporter listens on', 'env var: GRANIAN_METRICS_PORT; default: 9090'),
    (
        '--reload / --no-reload',
        "Enable auto reload on application's files changes (requires granian[reload] extra)",
        'env var: GRANIAN_RELOAD; default: (disabled)',
    ),
    (
        '--reload-paths PATH',
        'Paths to watch for changes',
        'env var: GRANIAN_RELOAD_PATHS; default: (Working directory)',
    ),
    (
        '--reload-ignore-dirs TEXT',
        (
            'Names of directories to ignore changes for. Extends the default list of directories to ignore in '
            "watchfiles' default filter"
        ),
        'env var: GRANIAN_RELOAD_IGNORE_DIRS',
    ),
    (
        '--reload-ignore-patterns TEXT',
        (
            'File/directory name patterns (regex) to ignore changes for. Extends the default list of patterns to '
            "ignore in watchfiles' default filter"
        ),
        'env var: GRANIAN_RELOAD_IGNORE_PATTERNS',
    ),
    (
        '--reload-ignore-paths PATH',
        'Absolute paths to ignore changes for',
        'env var: GRANIAN_RELOAD_IGNORE_PATHS',
    ),
    (
        '--reload-tick INTEGER RANGE',
        'The tick frequency (in milliseconds) the reloader watch for changes',
        'env var: GRANIAN_RELOAD_TICK; default: 50; 50<=x<=5000',
    ),
    (
        '--reload-ignore-worker-failure / --no-reload-ignore-worker-failure',
        'Ignore worker failures when auto reload is enabled',
        'env var: GRANIAN_RELOAD_IGNORE_WORKER_FAILURE; default: (disabled)',
    ),
    (
        '--process-name TEXT',
        'Set a custom name for processes (requires granian[pname] extra)',
        'env var: GRANIAN_PROCESS_NAME',
    ),
    ('--pid-file FILE', 'A path to write the PID file to', 'env var: GRANIAN_PID_FILE'),
]

DEFAULT_KWARGS = {
    'address': '127.0.0.1',
    'port': 8000,
    'uds': None,
    'uds_permissions': None,
    'fd': None,
    'reuse_port': False,
    'max_body_size': None,
    'body_read_timeout': 60,
    'ws_max_message_size': 16 * 1024 * 1024,
    'ws_max_frame_size': 16 * 1024 * 1024,
    'ws_ping_interval': None,
    'ws_idle_timeout': None,
    'ws_compression': True,
    'http3': False,
    'http3_idle_timeout': 30,
    'http3_max_concurrent_streams': 100,
    'interface': Interfaces.RSGI,
    'workers': 1,
    'blocking_threads': None,
    'blocking_threads_idle_timeout': 30,
    'runtime_threads': 1,
    'runtime_blocking_threads': None,
    'runtime_mode': RuntimeModes.auto,
    'loop': Loops.auto,
    'task_impl': TaskImpl.asyncio,
    'http': HTTPModes.auto,
    'websockets': True,
    'backlog': 1024,
    'backpressure': None,
    'http1_settings': HTTP1Settings(),
    'http2_settings': HTTP2Settings(),
    'log_enabled': True,
    'log_level': LogLevels.info,
    'log_dictconfig': None,
    'log_format': LogFormats.text,
    'log_access': False,
    'log_access_format': None,
    'ssl_cert': None,
    'ssl_key': None,
    'ssl_key_password': None,
    'ssl_protocol_min': SSLProtocols.tls13,
    'ssl_ca': None,
    'ssl_crl': None,
    'ssl_client_verify': False,
    'url_path_prefix': None,
    'respawn_failed_workers': False,
    'respawn_interval': 3.5,
    'rss_sample_interval': 30,
    'rss_samples': 1,
    'workers_lifetime': None,
    'workers_max_rss': None,
    'workers_kill_timeout': None,
    'factory': False,
    'working_dir': None,
    'env_files': None,
    'static_path_route': None,
    'static_path_mount': None,
    'static_path_expires': 86400,
    'static_path_dir_to_file': None,
    'metrics_enabled': False,
    'metrics_scrape_interval': 15,
    'metrics_address': '127.0.0.1',
    'metrics_port': 9090,
    'reload': False,
    'reload_paths': None,
    'reload_ignore_dirs': None,
    'reload_ignore_patterns': None,
    'reload_ignore_paths': None,
    'reload_tick': 50,
    'reload_ignore_worker_failure': False,
    'process_name': None,
    'pid_file': None,
}


class FakeGranian:
    """Stands in for the server: records its arguments, serves nothing."""

    calls: ClassVar[list] = []
    raise_on_init: ClassVar[Optional[Exception]] = None
    raise_on_serve: ClassVar[Optional[Exception]] = None

    def __init__(self, target, **kwargs):
        if self.raise_on_init is not None:
            raise self.raise_on_init
        self.target = target
        self.kwargs = kwargs
        self.served = False
        FakeGranian.calls.append(self)

    def serve(self):
        if self.raise_on_serve is not None:
            raise self.raise_on_serve
        self.served = True


@pytest.fixture(autouse=True)
def fake_server(monkeypatch):
    # The developer's own GRANIAN_* variables must not leak into what these tests parse.
    for name in list(os.environ):
        if name.startswith('GRANIAN_'):
            monkeypatch.delenv(name)
    monkeypatch.setattr(FakeGranian, 'calls', [])
    monkeypatch.setattr(FakeGranian, 'raise_on_init', None)
    monkeypatch.setattr(FakeGranian, 'raise_on_serve', None)
    monkeypatch.setattr(granian_cli, 'Granian', FakeGranian)
    return FakeGranian


def invoke(args, env=None, **extra):
    return CliRunner().invoke(granian_cli.cli, args, env=env, prog_name='granian', **extra)


def argv(*items):
    """Flatten `('--opt', 'value')` pairs and bare flags into an argument list."""
    return [part for item in items for part in ((item,) if isinstance(item, str) else item)]


def parse(args, env=None):
    """Run the CLI and return the keyword arguments the server was built with."""
    result = invoke([*args, 'main:app'], env=env)
    assert result.exit_code == 0, result.output
    assert len(FakeGranian.calls) == 1
    server = FakeGranian.calls[0]
    assert server.target == 'main:app'
    assert server.served
    return server.kwargs


def assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert not FakeGranian.calls
    for fragment in fragments:
        assert fragment in result.output


# defaults and the keyword mapping


def test_defaults_mapping():
    assert parse([]) == DEFAULT_KWARGS


def test_build_kwargs_without_cli():
    ctx = granian_cli.cli.make_context('granian', ['main:app'])
    params = dict(ctx.params)
    del params['app']
    assert granian_cli.build_kwargs(**params) == DEFAULT_KWARGS


def test_options_mapping(tmp_path):
    cert = tmp_path / 'cert.pem'
    key = tmp_path / 'key.pem'
    ca = tmp_path / 'ca.pem'
    for path in (cert, key, ca):
        path.write_text('x')
    kwargs = parse(
        argv(
            ('--host', '0.0.0.0'),
            ('--port', '9000'),
            ('--uds', str(tmp_path / 'sock')),
            ('--interface', 'wsgi'),
            ('--http', '2'),
            '--no-ws',
            ('--workers', '4'),
            ('--blocking-threads', '8'),
            ('--runtime-threads', '2'),
            ('--runtime-blocking-threads', '16'),
            ('--runtime-mode', 'st'),
            ('--loop', 'asyncio'),
            ('--task-impl', 'rust'),
            ('--backlog', '2048'),
            ('--backpressure', '64'),
            '--no-log',
            ('--log-level', 'debug'),
            ('--log-format', 'json'),
            '--access-log',
            ('--access-log-fmt', '%(addr)s'),
            ('--ssl-certificate', str(cert)),
            ('--ssl-keyfile', str(key)),
            ('--ssl-keyfile-password', 'secret'),
            ('--ssl-protocol-min', 'tls1.2'),
            ('--ssl-ca', str(ca)),
            '--ssl-client-verify',
            ('--url-path-prefix', '/api'),
            '--respawn-failed-workers',
            ('--respawn-interval', '1.5'),
            ('--rss-samples', '3'),
            ('--workers-max-rss', '512'),
            '--factory',
            ('--working-dir', str(tmp_path)),
            '--reload',
            ('--reload-tick', '100'),
            '--reload-ignore-worker-failure',
            ('--process-name', 'web'),
            ('--pid-file', str(tmp_path / 'granian.pid')),
        )
    )
    expected = dict(
        DEFAULT_KWARGS,
        address='0.0.0.0',
        port=9000,
        uds=tmp_path / 'sock',
        interface=Interfaces.WSGI,
        http=HTTPModes.http2,
        websockets=False,
        workers=4,
        blocking_threads=8,
        runtime_threads=2,
        runtime_blocking_threads=16,
        runtime_mode=RuntimeModes.st,
        loop=Loops.asyncio,
        task_impl=TaskImpl.rust,
        backlog=2048,
        backpressure=64,
        log_enabled=False,
        log_level=LogLevels.debug,
        log_format=LogFormats.json,
        log_access=True,
        log_access_format='%(addr)s',
        ssl_cert=cert,
        ssl_key=key,
        ssl_key_password='secret',
        ssl_protocol_min=SSLProtocols.tls12,
        ssl_ca=ca,
        ssl_client_verify=True,
        url_path_prefix='/api',
        respawn_failed_workers=True,
        respawn_interval=1.5,
        rss_samples=3,
        workers_max_rss=512,
        factory=True,
        working_dir=tmp_path,
        reload=True,
        reload_tick=100,
        reload_ignore_worker_failure=True,
        process_name='web',
        pid_file=tmp_path / 'granian.pid',
    )
    assert kwargs == expected
    # Paths are handed over as pathlib.Path, enums as the enums of granian.constants.
    assert isinstance(kwargs['ssl_cert'], pathlib.Path)
    assert type(kwargs['interface']) is Interfaces


def test_http_settings_mapping():
    kwargs = parse(
        argv(
            ('--http1-buffer-size', '65536'),
            ('--http1-header-read-timeout', '5000'),
            '--no-http1-keep-alive',
            '--http1-pipeline-flush',
            '--http2-adaptive-window',
            ('--http2-initial-connection-window-size', '2048'),
            ('--http2-initial-stream-window-size', '4096'),
            ('--http2-keep-alive-interval', '1000'),
            ('--http2-keep-alive-timeout', '1m'),
            ('--http2-max-concurrent-streams', '50'),
            ('--http2-max-frame-size', '32768'),
            ('--http2-max-headers-size', '8192'),
            ('--http2-max-send-buffer-size', '2048'),
        )
    )
    assert kwargs['http1_settings'] == HTTP1Settings(
        header_read_timeout=5000, keep_alive=False, max_buffer_size=65536, pipeline_flush=True
    )
    assert kwargs['http2_settings'] == HTTP2Settings(
        adaptive_window=True,
        initial_connection_window_size=2048,
        initial_stream_window_size=4096,
        keep_alive_interval=1000,
        keep_alive_timeout=60,
        max_concurrent_streams=50,
        max_frame_size=32768,
        max_headers_size=8192,
        max_send_buffer_size=2048,
    )


@pytest.mark.parametrize(
    ('value', 'expected'),
    [('asgi', Interfaces.ASGI), ('asginl', Interfaces.ASGINL), ('rsgi', Interfaces.RSGI), ('WSGI', Interfaces.WSGI)],
)
def test_interface_choices(value, expected):
    assert parse(['--interface', value])['interface'] is expected


@pytest.mark.parametrize('level', ['critical', 'error', 'warning', 'warn', 'info', 'debug', 'notset'])
def test_log_levels(level):
    assert parse(['--log-level', level])['log_level'] is LogLevels(level)


@pytest.mark.parametrize('source', ['option', 'environment'])
@pytest.mark.parametrize(('value', 'expected'), [('text', LogFormats.text), ('JSON', LogFormats.json)])
def test_log_formats(source, value, expected):
    if source == 'option':
        assert parse(['--log-format', value])['log_format'] is expected
    else:
        assert parse([], env={'GRANIAN_LOG_FORMAT': value})['log_format'] is expected


# durations


@pytest.mark.parametrize(
    ('text', 'seconds'),
    [
        ('30', 30),
        ('30s', 30),
        ('5m', 300),
        ('2h', 7200),
        ('1d', 86400),
        ('1h30m', 5400),
        ('1m30s', 90),
        ('1d2h3m4s', 93784),
        ('1d4s', 86404),
        ('0', 0),
        ('0s', 0),
        (' 45 ', 45),
        ('2H', 7200),
    ],
)
def test_parse_duration(text, seconds):
    assert granian_cli.parse_duration(text) == seconds


@pytest.mark.parametrize(
    'text', ['', ' ', 'abc', 's', '1w', '-5', '1.5h', '30m1h', '1h1h', '1h 30m', '5 m', '1h30', 'm30', '1hm']
)
def test_parse_duration_malformed(text):
    with pytest.raises(ValueError):
        granian_cli.parse_duration(text)


@pytest.mark.parametrize(
    ('option', 'key', 'value', 'seconds'),
    [
        ('--blocking-threads-idle-timeout', 'blocking_threads_idle_timeout', '10', 10),
        ('--blocking-threads-idle-timeout', 'blocking_threads_idle_timeout', '10m', 600),
        ('--blocking-threads-idle-timeout', 'blocking_threads_idle_timeout', '1m30s', 90),
        ('--rss-sample-interval', 'rss_sample_interval', '5m', 300),
        ('--rss-sample-interval', 'rss_sample_interval', '45s', 45),
        ('--workers-lifetime', 'workers_lifetime', '60', 60),
        ('--workers-lifetime', 'workers_lifetime', '2h', 7200),
        ('--workers-lifetime', 'workers_lifetime', '1d', 86400),
        ('--workers-lifetime', 'workers_lifetime', '1d2h3m4s', 93784),
        ('--workers-kill-timeout', 'workers_kill_timeout', '30m', 1800),
        ('--workers-kill-timeout', 'workers_kill_timeout', '1', 1),
        ('--static-path-expires', 'static_path_expires', '0', 0),
        ('--static-path-expires', 'static_path_expires', '7d', 604800),
    ],
)
def test_duration_options(option, key, value, seconds):
    assert parse([option, value])[key] == seconds


def test_duration_http2_keep_alive_timeout():
    assert parse(['--http2-keep-alive-timeout', '1h'])['http2_settings'].keep_alive_timeout == 3600


# The expected texts below are granian 2.8.7's, as its `granian` prints them.


def test_duration_out_of_range_message():
    result = invoke(['--workers-lifetime', '30', 'main:app'])
    assert_usage_error(
        result,
        "Error: Invalid value for '--workers-lifetime': '30' is less than the minimum allowed value of 60 seconds\n",
    )


@pytest.mark.parametrize(
    ('option', 'value', 'message'),
    [
        ('--blocking-threads-idle-timeout', '4', "'4' is less than the minimum allowed value of 5 seconds"),
        ('--blocking-threads-idle-timeout', '11m', "'11m' is greater than the maximum allowed value of 600 seconds"),
        ('--http2-keep-alive-timeout', '0', "'0' is less than the minimum allowed value of 1 seconds"),
        ('--rss-sample-interval', '0s', "'0s' is less than the minimum allowed value of 1 seconds"),
        ('--rss-sample-interval', '1h', "'1h' is greater than the maximum allowed value of 300 seconds"),
        ('--workers-lifetime', '59s', "'59s' is less than the minimum allowed value of 60 seconds"),
        ('--workers-kill-timeout', '0', "'0' is less than the minimum allowed value of 1 seconds"),
        ('--workers-kill-timeout', '1h', "'1h' is greater than the maximum allowed value of 1800 seconds"),
        ('--metrics-scrape-interval', '61', "'61' is greater than the maximum allowed value of 60 seconds"),
        ('--metrics-scrape-interval', '0', "'0' is less than the minimum allowed value of 1 seconds"),
        ('--workers-lifetime', '', "'' is less than the minimum allowed value of 60 seconds"),
    ],
)
def test_duration_out_of_range(option, value, message):
    result = invoke([option, value, 'main:app'])
    assert_usage_error(result, f"Error: Invalid value for '{option}': {message}\n")


@pytest.mark.parametrize(
    'option',
    [
        '--blocking-threads-idle-timeout',
        '--http2-keep-alive-timeout',
        '--rss-sample-interval',
        '--workers-lifetime',
        '--workers-kill-timeout',
        '--static-path-expires',
        '--metrics-scrape-interval',
    ],
)
@pytest.mark.parametrize('value', ['abc', '1w', '-5', '1.5h', '30m1h', ' '])
def test_duration_malformed(option, value):
    result = invoke([option, value, 'main:app'])
    assert_usage_error(result, f"Error: Invalid value for '{option}': {value!r} is not a valid duration\n")


@pytest.mark.parametrize(
    ('option', 'value', 'seconds'),
    [
        ('--blocking-threads-idle-timeout', '5', 5),
        ('--blocking-threads-idle-timeout', '600', 600),
        ('--rss-sample-interval', '1', 1),
        ('--rss-sample-interval', '5m', 300),
        ('--workers-kill-timeout', '1000', 1000),
        ('--static-path-expires', '', 0),
    ],
)
def test_duration_range_bounds_accepted(option, value, seconds):
    key = option[2:].replace('-', '_')
    assert parse([option, value])[key] == seconds


@pytest.mark.parametrize(
    ('option', 'bounds'),
    [
        ('--blocking-threads-idle-timeout', (5, 600)),
        ('--rss-sample-interval', (1, 300)),
        ('--metrics-scrape-interval', (1, 60)),
        ('--workers-kill-timeout', (1, 1800)),
        ('--workers-lifetime', (60, None)),
        ('--http2-keep-alive-timeout', (1, None)),
        ('--static-path-expires', (0, None)),
    ],
)
def test_duration_ranges(option, bounds):
    param = next(p for p in granian_cli.cli.params if option in p.opts)
    assert isinstance(param.type, granian_cli.Duration)
    assert (param.type.min, param.type.max) == bounds


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--workers', '0'], "Invalid value for '--workers': 0 is not in the range x>=1."),
        (['--runtime-threads', '0'], "Invalid value for '--runtime-threads': 0 is not in the range x>=1."),
        (['--reload-tick', '49'], "Invalid value for '--reload-tick': 49 is not in the range 50<=x<=5000."),
        (
            ['--interface', 'cgi'],
            "Invalid value for '--interface': 'cgi' is not one of 'asgi', 'asginl', 'rsgi', 'wsgi'.",
        ),
        (['--http', '3'], "Invalid value for '--http': '3' is not one of 'auto', '1', '2'."),
        (
            ['--log-level', 'loud'],
            (
                "Invalid value for '--log-level': 'loud' is not one of "
                "'critical', 'error', 'warning', 'warn', 'info', 'debug', 'notset'."
            ),
        ),
        (['--port', 'http'], "Invalid value for '--port': 'http' is not a valid integer."),
        (['--metrics-port', 'abc'], "Invalid value for '--metrics-port': 'abc' is not a valid integer."),
        (['--respawn-interval', 'soon'], "Invalid value for '--respawn-interval': 'soon' is not a valid float."),
        (
            ['--uds-permissions', '0x1ff'],
            "Invalid value for '--uds-permissions': invalid literal for int() with base 8: '0x1ff'",
        ),
        (
            ['--uds-permissions', 'rw'],
            "Invalid value for '--uds-permissions': invalid literal for int() with base 10: 'rw'",
        ),
        (
            ['--ssl-certificate', '/nope/cert.pem'],
            "Invalid value for '--ssl-certificate': File '/nope/cert.pem' does not exist.",
        ),
        (['--zzz-bogus'], "No such option '--zzz-bogus'."),
    ],
)
def test_message_texts(args, message):
    result = invoke([*args, 'main:app'])
    assert_usage_error(result, f'Error: {message}\n')
    assert result.output.startswith("Usage: granian [OPTIONS] APP\nTry 'granian --help' for help.\n\nError: ")


def test_path_kind_messages(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    result = invoke(['--working-dir', str(path), 'main:app'])
    assert_usage_error(result, f"Error: Invalid value for '--working-dir': Directory '{path}' is a file.\n")
    result = invoke(['--env-files', str(tmp_path), 'main:app'])
    assert_usage_error(result, f"Error: Invalid value for '--env-files': File '{tmp_path}' is a directory.\n")


def test_integer_range_error():
    result = invoke(['--backlog', '100', 'main:app'])
    assert_usage_error(result, "Invalid value for '--backlog'", '100 is not in the range x>=128.')


# environment variables


def test_env_port_and_interface():
    kwargs = parse([], env={'GRANIAN_PORT': '9001', 'GRANIAN_INTERFACE': 'asgi'})
    assert kwargs['port'] == 9001
    assert kwargs['interface'] is Interfaces.ASGI


@pytest.mark.parametrize(('value', 'expected'), [('false', False), ('0', False), ('no', False), ('true', True)])
def test_env_boolean_flag(value, expected):
    kwargs = parse([], env={'GRANIAN_HTTP1_KEEP_ALIVE': value})
    assert kwargs['http1_settings'].keep_alive is expected


def test_env_renamed_flags():
    env = {'GRANIAN_WEBSOCKETS': 'false', 'GRANIAN_LOG_ENABLED': 'false', 'GRANIAN_LOG_ACCESS_ENABLED': 'true'}
    kwargs = parse([], env=env)
    assert kwargs['websockets'] is False
    assert kwargs['log_enabled'] is False
    assert kwargs['log_access'] is True


def test_env_static_path_mount_list(tmp_path):
    # Lists of paths are split on os.pathsep (like PATH), lists of words on whitespace.
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.mkdir()
    second.mkdir()
    env = {'GRANIAN_STATIC_PATH_MOUNT': f'{first}{os.pathsep}{second}', 'GRANIAN_STATIC_PATH_ROUTE': '/a /b'}
    kwargs = parse([], env=env)
    assert kwargs['static_path_mount'] == [first, second]
    assert kwargs['static_path_route'] == ['/a', '/b']


def test_env_path_list_keeps_spaces(tmp_path):
    spaced = tmp_path / 'with space'
    spaced.mkdir()
    assert parse([], env={'GRANIAN_RELOAD_PATHS': str(spaced)})['reload_paths'] == [spaced]


def test_env_metrics():
    env = {
        'GRANIAN_METRICS_ENABLED': 'true',
        'GRANIAN_METRICS_SCRAPE_INTERVAL': '1m',
        'GRANIAN_METRICS_ADDRESS': '0.0.0.0',
        'GRANIAN_METRICS_PORT': '9100',
    }
    kwargs = parse([], env=env)
    assert kwargs['metrics_enabled'] is True
    assert kwargs['metrics_scrape_interval'] == 60
    assert kwargs['metrics_address'] == '0.0.0.0'
    assert kwargs['metrics_port'] == 9100


def test_metrics_options():
    args = ['--metrics', '--metrics-scrape-interval', '30s', '--metrics-address', '::', '--metrics-port', '1']
    kwargs = parse(args)
    assert (kwargs['metrics_enabled'], kwargs['metrics_scrape_interval']) == (True, 30)
    assert (kwargs['metrics_address'], kwargs['metrics_port']) == ('::', 1)


def test_no_metrics_wins_over_env():
    assert parse(['--no-metrics'], env={'GRANIAN_METRICS_ENABLED': '1'})['metrics_enabled'] is False


def test_env_metrics_is_not_the_flag_name():
    # The flag's variable is GRANIAN_METRICS_ENABLED, as --log's is GRANIAN_LOG_ENABLED.
    assert parse([], env={'GRANIAN_METRICS': 'true'})['metrics_enabled'] is False


def test_env_text_lists():
    env = {'GRANIAN_RELOAD_IGNORE_DIRS': 'node_modules  .venv', 'GRANIAN_RELOAD_IGNORE_PATTERNS': r'.*\.tmp$'}
    kwargs = parse([], env=env)
    assert kwargs['reload_ignore_dirs'] == ['node_modules', '.venv']
    assert kwargs['reload_ignore_patterns'] == [r'.*\.tmp$']


def test_env_durations():
    kwargs = parse([], env={'GRANIAN_WORKERS_LIFETIME': '1h30m', 'GRANIAN_HTTP2_KEEP_ALIVE_TIMEOUT': '45s'})
    assert kwargs['workers_lifetime'] == 5400
    assert kwargs['http2_settings'].keep_alive_timeout == 45


def test_command_line_wins_over_env():
    assert parse(['--port', '7000'], env={'GRANIAN_PORT': '9001'})['port'] == 7000


def test_env_invalid_value_names_option_and_variable():
    result = invoke(['main:app'], env={'GRANIAN_WORKERS_LIFETIME': '10'})
    assert_usage_error(
        result,
        "Error: Invalid value for '--workers-lifetime' (env var: 'GRANIAN_WORKERS_LIFETIME'): "
        "'10' is less than the minimum allowed value of 60 seconds\n",
    )


def test_command_line_error_does_not_name_the_variable():
    # The variable is set but the bad value was typed: the message is about the option only.
    result = invoke(['--workers', '0', 'main:app'], env={'GRANIAN_WORKERS': '2'})
    assert_usage_error(result, "Error: Invalid value for '--workers': 0 is not in the range x>=1.\n")


def test_env_invalid_choice():
    result = invoke(['main:app'], env={'GRANIAN_INTERFACE': 'cgi'})
    assert_usage_error(result, "'--interface'", 'cgi')


# options given several times


def test_repeated_options(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.mkdir()
    second.mkdir()
    crl1, crl2 = tmp_path / '1.crl', tmp_path / '2.crl'
    env1, env2 = tmp_path / '1.env', tmp_path / '2.env'
    for path in (crl1, crl2, env1, env2):
        path.write_text('x')
    kwargs = parse(
        argv(
            ('--static-path-route', '/a'),
            ('--static-path-route', '/b'),
            ('--static-path-mount', str(first)),
            ('--static-path-mount', str(second)),
            ('--ssl-crl', str(crl1)),
            ('--ssl-crl', str(crl2)),
            ('--env-files', str(env1)),
            ('--env-files', str(env2)),
            ('--reload-paths', str(first)),
            ('--reload-paths', str(second)),
            ('--reload-ignore-dirs', 'x'),
            ('--reload-ignore-dirs', 'y'),
            ('--reload-ignore-patterns', 'p1'),
            ('--reload-ignore-patterns', 'p2'),
            ('--reload-ignore-paths', '/nope/1'),
            ('--reload-ignore-paths', '/nope/2'),
        )
    )
    assert kwargs['static_path_route'] == ['/a', '/b']
    assert kwargs['static_path_mount'] == [first, second]
    assert kwargs['ssl_crl'] == [crl1, crl2]
    assert kwargs['env_files'] == [env1, env2]
    assert kwargs['reload_paths'] == [first, second]
    assert kwargs['reload_ignore_dirs'] == ['x', 'y']
    assert kwargs['reload_ignore_patterns'] == ['p1', 'p2']
    assert kwargs['reload_ignore_paths'] == [pathlib.Path('/nope/1'), pathlib.Path('/nope/2')]
    assert all(isinstance(path, pathlib.Path) for path in kwargs['static_path_mount'])


def test_single_value_option_repeated_keeps_last():
    assert parse(['--port', '1', '--port', '2'])['port'] == 2


# other parameter types


@pytest.mark.parametrize(
    ('value', 'mode'),
    [
        ('0660', 0o660),
        ('0o660', 0o660),
        ('0O660', 0o660),
        ('00', 0),
        ('0', 0),
        ('660', 660),
        ('8', 8),
        ('4095', 0o7777),
    ],
)
def test_uds_permissions(value, mode):
    # A leading zero makes the digits octal; without it they are decimal.
    assert parse(['--uds-permissions', value])['uds_permissions'] == mode


@pytest.mark.parametrize(('value', 'mode'), [('0600', 0o600), ('600', 600)])
def test_uds_permissions_env(value, mode):
    assert parse([], env={'GRANIAN_UDS_PERMISSIONS': value})['uds_permissions'] == mode


@pytest.mark.parametrize('value', ['08', '0999', 'rw', '0x1ff', '', '-1', '4096', '077777'])
def test_uds_permissions_invalid(value):
    assert_usage_error(invoke(['--uds-permissions', value, 'main:app']), "Invalid value for '--uds-permissions'")


def test_uds_permissions_out_of_range_message():
    result = invoke(['--uds-permissions', '010000', 'main:app'])
    assert_usage_error(
        result, "Error: Invalid value for '--uds-permissions': '010000' is not a valid permission mode (0 to 0o7777)\n"
    )


@pytest.mark.parametrize('option', ['--uds', '--pid-file'])
def test_writable_path_types(option):
    param = next(p for p in granian_cli.cli.params if option in p.opts)
    assert param.type.writable


def test_writable_paths(tmp_path):
    read_only = tmp_path / 'ro'
    read_only.write_text('')
    read_only.chmod(0o400)
    if os.access(read_only, os.W_OK):
        pytest.skip('running as a user that can write anything')
    for option in ('--uds', '--pid-file'):
        result = invoke([option, str(read_only), 'main:app'])
        assert_usage_error(result, f"Error: Invalid value for '{option}': ", 'is not writable.')


def test_log_config_json(tmp_path):
    config = {'version': 1, 'loggers': {'_granian': {'level': 'DEBUG'}}}
    path = tmp_path / 'log.json'
    path.write_text(json.dumps(config))
    assert parse(['--log-config', str(path)])['log_dictconfig'] == config


@pytest.mark.parametrize('content', ['{not json', '[1, 2]', ''])
def test_log_config_bad_json(tmp_path, content):
    path = tmp_path / 'log.json'
    path.write_text(content)
    assert_usage_error(
        invoke(['--log-config', str(path), 'main:app']),
        "Error: Invalid value for '--log-config': Unable to parse provided logging config (",
    )


def test_missing_files_are_usage_errors(tmp_path):
    missing = str(tmp_path / 'missing.pem')
    for option in ('--log-config', '--ssl-certificate', '--ssl-keyfile', '--ssl-ca', '--ssl-crl', '--env-files'):
        assert_usage_error(invoke([option, missing, 'main:app']), f"Invalid value for '{option}'")


def test_directory_options_reject_files(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    for option in ('--working-dir', '--static-path-mount'):
        assert_usage_error(invoke([option, str(path), 'main:app']), f"Invalid value for '{option}'")


# usage errors


def test_missing_app():
    assert_usage_error(invoke([]), "Missing argument 'APP'")


@pytest.mark.parametrize(
    'args',
    [
        ['--interface', 'cgi'],
        ['--http', '3'],
        ['--loop', 'trio'],
        ['--runtime-mode', 'xx'],
        ['--task-impl', 'go'],
        ['--ssl-protocol-min', 'tls1.1'],
        ['--log-level', 'loud'],
        ['--port', 'http'],
        ['--workers', '0'],
        ['--http1-buffer-size', '1024'],
        ['--http1-header-read-timeout', '60001'],
        ['--http2-keep-alive-interval', '0'],
        ['--http2-max-concurrent-streams', '9'],
        ['--reload-tick', '49'],
        ['--reload-tick', '5001'],
        ['--respawn-interval', 'soon'],
        ['--no-such-option'],
    ],
)
def test_invalid_values(args):
    assert_usage_error(invoke([*args, 'main:app']), args[0])


def test_configuration_error_is_usage_error(fake_server):
    fake_server.raise_on_init = ConfigurationError('--ssl-keyfile is required with --ssl-certificate')
    result = invoke(['main:app'])
    assert result.exit_code == 2, result.output
    assert 'Error: --ssl-keyfile is required with --ssl-certificate' in result.output
    assert 'Traceback' not in result.output


def test_fatal_error_exits_non_zero(fake_server):
    fake_server.raise_on_serve = FatalError('cannot bind 127.0.0.1:8000')
    result = invoke(['main:app'])
    assert result.exit_code == 1, result.output
    assert 'Error: cannot bind 127.0.0.1:8000' in result.output


# --version and --help


def test_version():
    from granian import __version__

    result = invoke(['--version'])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f'granian {__version__}'
    assert not FakeGranian.calls


def test_help_layout():
    result = invoke(['--help'])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:4] == ['Usage: granian [OPTIONS] APP', '', '  APP  Application target to serve.  [required]', '']
    assert lines[4] == 'Options:'
    assert not FakeGranian.calls


def test_help_lists_every_seed_option():
    # Wide enough that no help record wraps, then whitespace-normalised: the check is on
    # the content of each record, not on click's line breaking.
    result = invoke(['--help'], terminal_width=1000, max_content_width=1000)
    assert result.exit_code == 0, result.output
    text = ' '.join(result.output.split())
    for decl, help_text, extras in SEED_OPTIONS:
        assert f'{decl} {help_text} [{extras}]' in text
    assert '--version Show the version and exit.' in text
    assert '--help Show this message and exit.' in text


def test_help_option_order_matches_seed():
    result = invoke(['--help'], terminal_width=1000, max_content_width=1000)
    positions = [result.output.index(f'  {decl}') for decl, _, _ in SEED_OPTIONS]
    assert positions == sorted(positions)


# the module's helpers: EnumType, OctalIntType, Duration, option


@pytest.mark.parametrize(
    ('option', 'default'),
    [
        ('--interface', Interfaces.RSGI),
        ('--http', HTTPModes.auto),
        ('--runtime-mode', RuntimeModes.auto),
        ('--loop', Loops.auto),
        ('--task-impl', TaskImpl.asyncio),
        ('--log-level', LogLevels.info),
        ('--log-format', LogFormats.text),
        ('--ssl-protocol-min', SSLProtocols.tls13),
    ],
)
def test_enum_option_defaults_are_members(option, default):
    param = next(p for p in granian_cli.cli.params if option in p.opts)
    assert isinstance(param.type, granian_cli.EnumType)
    assert param.default is default
    assert list(param.type.choices) == [member.value for member in type(default)]


@pytest.mark.parametrize('option', ['--uds-permissions', '--http2-keep-alive-interval', '--static-path-dir-to-file'])
def test_defaults_that_are_none(option):
    param = next(p for p in granian_cli.cli.params if option in p.opts)
    assert param.default is None


def test_version_flag_default_is_unset():
    param = next(p for p in granian_cli.cli.params if '--version' in p.opts)
    assert param.is_flag
    assert repr(param.default) == 'Sentinel.UNSET'
    assert parse([])  # an unset --version does not print the version


def test_enum_type():
    enum_type = granian_cli.EnumType(Interfaces)
    assert enum_type.name == 'choice'
    assert enum_type.convert('ASGI', None, None) is Interfaces.ASGI
    assert enum_type.convert(Interfaces.WSGI, None, None) is Interfaces.WSGI
    assert enum_type.convert(None, None, None) is None
    with pytest.raises(click.BadParameter, match="'cgi' is not one of 'asgi', 'asginl', 'rsgi', 'wsgi'."):
        enum_type.convert('cgi', None, None)


def test_enum_type_case_sensitive():
    enum_type = granian_cli.EnumType(HTTPModes, case_sensitive=True)
    assert enum_type.convert('auto', None, None) is HTTPModes.auto
    with pytest.raises(click.BadParameter):
        enum_type.convert('AUTO', None, None)


def test_octal_int_type():
    octal = granian_cli.OctalIntType()
    assert octal.name == 'Octal integer'
    assert octal.convert('0755', None, None) == 0o755
    assert octal.convert('0o755', None, None) == 0o755
    assert octal.convert('493', None, None) == 0o755
    assert octal.convert(0o600, None, None) == 0o600
    assert octal.convert(None, None, None) is None
    with pytest.raises(click.BadParameter, match=r"invalid literal for int\(\) with base 8: '0o9'"):
        octal.convert('0o9', None, None)


def test_duration_type():
    duration = granian_cli.Duration(5, 600)
    assert duration.name == 'duration'
    assert (duration.min, duration.max, duration.min_open, duration.max_open, duration.clamp) == (
        5,
        600,
        False,
        False,
        False,
    )
    assert duration.convert('1m30s', None, None) == 90
    assert duration.convert(30, None, None) == 30
    assert duration.convert(None, None, None) is None
    with pytest.raises(click.BadParameter, match='^4 is less than the minimum allowed value of 5 seconds$'):
        duration.convert(4, None, None)
    assert granian_cli.Duration().convert('7d', None, None) == 604800


def test_option_helper_conventions():
    @click.command()
    @granian_cli.option('--mode', type=granian_cli.EnumType(HTTPModes), default=HTTPModes.http2, help='Mode')
    @granian_cli.option('--fast/--no-fast', default=True, help='Fast')
    @granian_cli.option('--name', default='web', help='Name')
    @granian_cli.option('--count', type=int, help='Count', show_envvar=False)
    def command(mode, fast, name, count):
        click.echo(f'{mode!r} {fast} {name} {count}')

    params = {param.name: param for param in command.params}
    assert all(param.show_envvar for param in params.values())
    assert params['mode'].show_default == '2'
    assert params['fast'].show_default == 'enabled'
    assert params['name'].show_default == 'web'
    assert params['count'].show_default is None
    assert params['mode'].envvar is None  # named by the command's auto_envvar_prefix

    runner = CliRunner()
    result = runner.invoke(command, [], env={'APP_MODE': '1', 'APP_COUNT': '3'}, auto_envvar_prefix='APP')
    assert result.output == "<HTTPModes.http1: '1'> True web 3\n"
    text = ' '.join(runner.invoke(command, ['--help'], auto_envvar_prefix='APP', terminal_width=1000).output.split())
    assert 'Mode [env var: APP_MODE; default: (2)]' in text
    assert 'Fast [env var: APP_FAST; default: (enabled)]' in text
    assert 'Count [env var: APP_COUNT]' in text


def test_option_helper_cls():
    class Marked(click.Option):
        pass

    @click.command()
    @granian_cli.option('--x', cls=Marked, default=1)
    def command(x):
        pass

    assert type(command.params[0]) is Marked


def test_python_dash_m_names_the_program():
    import subprocess
    import sys

    from granian import __version__

    out = subprocess.run(
        [sys.executable, '-m', 'granian', '--version'], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout == f'python -m granian {__version__}\n'
