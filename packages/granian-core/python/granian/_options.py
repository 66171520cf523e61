"""The one declaration of the server's options, as data.

Each `Option` below is one option of the `granian` command and one keyword argument of
`Granian(...)`: its flag(s), environment variable, kind of value, default, range or
choices and help text are written here only. The command line builds its click options
from these records (`granian.cli`), `tools/gen_options_doc.py` writes docs/OPTIONS.md from
them, and `tests/test_options_doc.py` checks that `Granian.__init__`'s literal defaults
(and those of `HTTP1Settings`/`HTTP2Settings`) are the ones declared here.

Nothing here imports click: granian-core does not depend on it.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, Optional, Tuple, Type

from .constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from .http import HTTP1Settings, HTTP2Settings
from .log import LogFormats, LogLevels

__all__ = ['KINDS', 'NO_DEFAULT', 'OPTIONS', 'PYTHON_ONLY', 'SETTINGS_GROUPS', 'TARGET_HELP', 'Option', 'PythonOnly']


class _NoDefault:
    """The option declares no default: the command line leaves it unset, `Granian` takes None."""

    def __repr__(self) -> str:
        return 'NO_DEFAULT'


NO_DEFAULT: Any = _NoDefault()

# The kinds of value an option takes, with how docs/OPTIONS.md names them.
KINDS = {
    'text': 'text',
    'int': 'integer',
    'float': 'number',
    'flag': 'flag',
    'choice': 'choice',
    # Seconds, written plainly or as `30s`, `5m`, `2h`, `1d`, `1h30m`.
    'duration': 'duration',
    # Unix permission bits: octal with a leading zero (`0660`), decimal otherwise.
    'octal': 'octal integer',
    'path': 'path',
    'file': 'file',
    'dir': 'directory',
    # A JSON file, handed to `Granian` parsed (a dict for logging.config.dictConfig).
    'json_file': 'JSON file',
}

# Keyword arguments of `Granian` that group several options: `http1_settings.keep_alive`
# is the `keep_alive` field of the `HTTP1Settings` passed as `http1_settings`.
SETTINGS_GROUPS: Dict[str, type] = {'http1_settings': HTTP1Settings, 'http2_settings': HTTP2Settings}

TARGET_HELP = 'Application target to serve.'


@dataclass(frozen=True)
class Option:
    """One option: `flags` as the command line spells it (`--ws/--no-ws` for a flag pair),
    `kwarg` the `Granian` keyword argument (or `group.field`, see SETTINGS_GROUPS)."""

    flags: str
    kwarg: str
    envvar: str
    help: str
    kind: str = 'text'
    default: Any = NO_DEFAULT
    min: Optional[int] = None
    max: Optional[int] = None
    enum: Optional[Type[Enum]] = None
    multiple: bool = False
    # Path kinds: the path must exist / be writable.
    exists: bool = False
    writable: bool = False
    # What the help shows as the default when that is not the value itself.
    shown_default: Optional[str] = None

    @property
    def name(self) -> str:
        """The command line's name of the parsed value: `--ws/--no-ws` gives `ws`."""
        return self.flags.split('/')[0].lstrip('-').replace('-', '_')

    @property
    def api_default(self) -> Any:
        """The default `Granian` takes for this keyword (or settings field)."""
        return None if self.default is NO_DEFAULT else self.default


@dataclass(frozen=True)
class PythonOnly:
    """A keyword argument of `Granian` that no command line option sets."""

    kwarg: str
    default: Any
    help: str


def _flag(name: str, kwarg: str, envvar: str, help: str, default: bool) -> Option:
    return Option(f'--{name}/--no-{name}', kwarg, envvar, help, kind='flag', default=default)


OPTIONS: Tuple[Option, ...] = (
    Option('--host', 'address', 'GRANIAN_HOST', 'Host address to bind to', default='127.0.0.1'),
    Option('--port', 'port', 'GRANIAN_PORT', 'Port to bind to.', kind='int', default=8000),
    Option('--uds', 'uds', 'GRANIAN_UDS', 'Unix Domain Socket to bind to.', kind='path', writable=True),
    Option(
        '--uds-permissions',
        'uds_permissions',
        'GRANIAN_UDS_PERMISSIONS',
        'Unix Domain Socket file permissions',
        kind='octal',
        default=None,
    ),
    Option(
        '--fd',
        'fd',
        'GRANIAN_FD',
        'Serve the listening socket inherited as this file descriptor (TCP or Unix) instead of binding one; '
        '--host, --port and --uds do not apply',
        kind='int',
        min=0,
    ),
    _flag(
        'reuse-port',
        'reuse_port',
        'GRANIAN_REUSE_PORT',
        'Each worker listens on a socket of its own (SO_REUSEPORT) instead of sharing one accept queue (TCP only)',
        False,
    ),
    Option(
        '--interface',
        'interface',
        'GRANIAN_INTERFACE',
        'Application interface type',
        kind='choice',
        enum=Interfaces,
        default=Interfaces.RSGI,
    ),
    Option('--http', 'http', 'GRANIAN_HTTP', 'HTTP version', kind='choice', enum=HTTPModes, default=HTTPModes.auto),
    _flag('ws', 'websockets', 'GRANIAN_WEBSOCKETS', 'Enable websockets handling', True),
    Option('--workers', 'workers', 'GRANIAN_WORKERS', 'Number of worker processes', kind='int', min=1, default=1),
    Option(
        '--blocking-threads',
        'blocking_threads',
        'GRANIAN_BLOCKING_THREADS',
        'Number of blocking threads (per worker)',
        kind='int',
        min=1,
    ),
    Option(
        '--blocking-threads-idle-timeout',
        'blocking_threads_idle_timeout',
        'GRANIAN_BLOCKING_THREADS_IDLE_TIMEOUT',
        'The maximum amount of time in seconds (or a human-readable duration) an idle blocking thread will be '
        'kept alive',
        kind='duration',
        min=5,
        max=600,
        default=30,
    ),
    Option(
        '--runtime-threads',
        'runtime_threads',
        'GRANIAN_RUNTIME_THREADS',
        'Number of runtime threads (per worker)',
        kind='int',
        min=1,
        default=1,
    ),
    Option(
        '--runtime-blocking-threads',
        'runtime_blocking_threads',
        'GRANIAN_RUNTIME_BLOCKING_THREADS',
        'Number of runtime I/O blocking threads (per worker)',
        kind='int',
        min=1,
    ),
    Option(
        '--runtime-mode',
        'runtime_mode',
        'GRANIAN_RUNTIME_MODE',
        'Runtime mode to use (single/multi threaded)',
        kind='choice',
        enum=RuntimeModes,
        default=RuntimeModes.auto,
    ),
    Option(
        '--loop', 'loop', 'GRANIAN_LOOP', 'Event loop implementation', kind='choice', enum=Loops, default=Loops.auto
    ),
    Option(
        '--task-impl',
        'task_impl',
        'GRANIAN_TASK_IMPL',
        'Async task implementation to use',
        kind='choice',
        enum=TaskImpl,
        default=TaskImpl.asyncio,
    ),
    Option(
        '--backlog',
        'backlog',
        'GRANIAN_BACKLOG',
        'Maximum number of connections to hold in backlog (globally)',
        kind='int',
        min=128,
        default=1024,
    ),
    Option(
        '--backpressure',
        'backpressure',
        'GRANIAN_BACKPRESSURE',
        'Maximum number of requests to process concurrently (per worker)',
        kind='int',
        min=1,
        shown_default='backlog/workers',
    ),
    Option(
        '--http1-buffer-size',
        'http1_settings.max_buffer_size',
        'GRANIAN_HTTP1_BUFFER_SIZE',
        'Sets the maximum buffer size for HTTP/1 connections',
        kind='int',
        min=8192,
        default=417_792,
    ),
    Option(
        '--http1-header-read-timeout',
        'http1_settings.header_read_timeout',
        'GRANIAN_HTTP1_HEADER_READ_TIMEOUT',
        'Sets a timeout (in milliseconds) to read headers',
        kind='int',
        min=1,
        max=60_000,
        default=30_000,
    ),
    _flag(
        'http1-keep-alive',
        'http1_settings.keep_alive',
        'GRANIAN_HTTP1_KEEP_ALIVE',
        'Enables or disables HTTP/1 keep-alive',
        True,
    ),
    _flag(
        'http1-pipeline-flush',
        'http1_settings.pipeline_flush',
        'GRANIAN_HTTP1_PIPELINE_FLUSH',
        'Aggregates HTTP/1 flushes to better support pipelined responses (experimental)',
        False,
    ),
    _flag(
        'http2-adaptive-window',
        'http2_settings.adaptive_window',
        'GRANIAN_HTTP2_ADAPTIVE_WINDOW',
        'Sets whether to use an adaptive flow control for HTTP2',
        False,
    ),
    Option(
        '--http2-initial-connection-window-size',
        'http2_settings.initial_connection_window_size',
        'GRANIAN_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE',
        'Sets the max connection-level flow control for HTTP2',
        kind='int',
        min=1024,
        default=1_048_576,
    ),
    Option(
        '--http2-initial-stream-window-size',
        'http2_settings.initial_stream_window_size',
        'GRANIAN_HTTP2_INITIAL_STREAM_WINDOW_SIZE',
        'Sets the `SETTINGS_INITIAL_WINDOW_SIZE` option for HTTP2 stream-level flow control',
        kind='int',
        min=1024,
        default=1_048_576,
    ),
    Option(
        '--http2-keep-alive-interval',
        'http2_settings.keep_alive_interval',
        'GRANIAN_HTTP2_KEEP_ALIVE_INTERVAL',
        'Sets an interval (in milliseconds) for HTTP2 Ping frames should be sent to keep a connection alive',
        kind='int',
        min=1,
        max=60_000,
        default=None,
    ),
    Option(
        '--http2-keep-alive-timeout',
        'http2_settings.keep_alive_timeout',
        'GRANIAN_HTTP2_KEEP_ALIVE_TIMEOUT',
        'Sets a timeout (in seconds or a human-readable duration) for receiving an acknowledgement of the HTTP2 '
        'keep-alive ping',
        kind='duration',
        min=1,
        default=20,
    ),
    Option(
        '--http2-max-concurrent-streams',
        'http2_settings.max_concurrent_streams',
        'GRANIAN_HTTP2_MAX_CONCURRENT_STREAMS',
        'Sets the SETTINGS_MAX_CONCURRENT_STREAMS option for HTTP2 connections',
        kind='int',
        min=10,
        default=200,
    ),
    Option(
        '--http2-max-frame-size',
        'http2_settings.max_frame_size',
        'GRANIAN_HTTP2_MAX_FRAME_SIZE',
        'Sets the maximum frame size to use for HTTP2',
        kind='int',
        min=1024,
        default=16_384,
    ),
    Option(
        '--http2-max-headers-size',
        'http2_settings.max_headers_size',
        'GRANIAN_HTTP2_MAX_HEADERS_SIZE',
        'Sets the max size of received header frames',
        kind='int',
        min=1,
        default=16_777_216,
    ),
    Option(
        '--http2-max-send-buffer-size',
        'http2_settings.max_send_buffer_size',
        'GRANIAN_HTTP2_MAX_SEND_BUFFER_SIZE',
        'Set the maximum write buffer size for each HTTP/2 stream',
        kind='int',
        min=1024,
        default=409_600,
    ),
    _flag('log', 'log_enabled', 'GRANIAN_LOG_ENABLED', 'Enable logging', True),
    Option(
        '--log-level',
        'log_level',
        'GRANIAN_LOG_LEVEL',
        'Log level',
        kind='choice',
        enum=LogLevels,
        default=LogLevels.info,
    ),
    Option(
        '--log-config',
        'log_dictconfig',
        'GRANIAN_LOG_CONFIG',
        'Logging configuration file (json)',
        kind='json_file',
        exists=True,
    ),
    Option(
        '--log-format',
        'log_format',
        'GRANIAN_LOG_FORMAT',
        'Log format: plain text, or one JSON object per line (runtime and access lines)',
        kind='choice',
        enum=LogFormats,
        default=LogFormats.text,
    ),
    _flag('access-log', 'log_access', 'GRANIAN_LOG_ACCESS_ENABLED', 'Enable access log', False),
    Option('--access-log-fmt', 'log_access_format', 'GRANIAN_LOG_ACCESS_FMT', 'Access log format'),
    Option(
        '--ssl-certificate', 'ssl_cert', 'GRANIAN_SSL_CERTIFICATE', 'SSL certificate file', kind='file', exists=True
    ),
    Option('--ssl-keyfile', 'ssl_key', 'GRANIAN_SSL_KEYFILE', 'SSL key file', kind='file', exists=True),
    Option('--ssl-keyfile-password', 'ssl_key_password', 'GRANIAN_SSL_KEYFILE_PASSWORD', 'SSL key password'),
    Option(
        '--ssl-protocol-min',
        'ssl_protocol_min',
        'GRANIAN_SSL_PROTOCOL_MIN',
        'Set the minimum supported protocol for SSL connections.',
        kind='choice',
        enum=SSLProtocols,
        default=SSLProtocols.tls13,
    ),
    # "cerificate" is the reference's spelling: kept so the help text matches it byte for byte.
    Option(
        '--ssl-ca',
        'ssl_ca',
        'GRANIAN_SSL_CA',
        'Root SSL cerificate file for client verification',
        kind='file',
        exists=True,
    ),
    Option('--ssl-crl', 'ssl_crl', 'GRANIAN_SSL_CRL', 'SSL CRL file(s)', kind='file', exists=True, multiple=True),
    _flag(
        'ssl-client-verify', 'ssl_client_verify', 'GRANIAN_SSL_CLIENT_VERIFY', 'Verify clients SSL certificates', False
    ),
    Option('--url-path-prefix', 'url_path_prefix', 'GRANIAN_URL_PATH_PREFIX', 'URL path prefix the app is mounted on'),
    _flag(
        'respawn-failed-workers',
        'respawn_failed_workers',
        'GRANIAN_RESPAWN_FAILED_WORKERS',
        'Enable workers respawn on unexpected exit',
        False,
    ),
    Option(
        '--respawn-interval',
        'respawn_interval',
        'GRANIAN_RESPAWN_INTERVAL',
        'The number of seconds to sleep between workers respawn',
        kind='float',
        default=3.5,
    ),
    Option(
        '--rss-sample-interval',
        'rss_sample_interval',
        'GRANIAN_RSS_SAMPLE_INTERVAL',
        'The sample rate in seconds (or a human-readable duration) for the resource monitor',
        kind='duration',
        min=1,
        max=300,
        default=30,
    ),
    Option(
        '--rss-samples',
        'rss_samples',
        'GRANIAN_RSS_SAMPLES',
        'The number of consecutive samples to consider a worker over resource limit',
        kind='int',
        min=1,
        default=1,
    ),
    Option(
        '--workers-lifetime',
        'workers_lifetime',
        'GRANIAN_WORKERS_LIFETIME',
        'The maximum amount of time in seconds (or a human-readable duration) a worker will be kept alive before '
        'respawn',
        kind='duration',
        min=60,
    ),
    Option(
        '--workers-max-rss',
        'workers_max_rss',
        'GRANIAN_WORKERS_MAX_RSS',
        'The maximum amount of memory (in MiB) a worker can consume before respawn',
        kind='int',
        min=1,
    ),
    Option(
        '--workers-kill-timeout',
        'workers_kill_timeout',
        'GRANIAN_WORKERS_KILL_TIMEOUT',
        'The amount of time in seconds (or a human-readable duration) to wait for killing workers that refused to '
        'gracefully stop',
        kind='duration',
        min=1,
        max=1800,
        shown_default='disabled',
    ),
    _flag(
        'factory',
        'factory',
        'GRANIAN_FACTORY',
        'Treat target as a factory function, that should be invoked to build the actual target',
        False,
    ),
    Option('--working-dir', 'working_dir', 'GRANIAN_WORKING_DIR', 'Set the working directory', kind='dir', exists=True),
    Option(
        '--env-files',
        'env_files',
        'GRANIAN_ENV_FILES',
        'Environment file(s) to load (requires granian[dotenv] extra)',
        kind='file',
        exists=True,
        multiple=True,
    ),
    Option(
        '--static-path-route',
        'static_path_route',
        'GRANIAN_STATIC_PATH_ROUTE',
        'Route for static file serving',
        multiple=True,
        shown_default='/static',
    ),
    Option(
        '--static-path-mount',
        'static_path_mount',
        'GRANIAN_STATIC_PATH_MOUNT',
        'Path to mount for static file serving',
        kind='dir',
        exists=True,
        multiple=True,
    ),
    Option(
        '--static-path-dir-to-file',
        'static_path_dir_to_file',
        'GRANIAN_STATIC_PATH_DIR_TO_FILE',
        'File to serve when a static path is a directory (e.g. index.html)',
        default=None,
    ),
    Option(
        '--static-path-expires',
        'static_path_expires',
        'GRANIAN_STATIC_PATH_EXPIRES',
        'Cache headers expiration (in seconds or a human-readable duration) for static file serving. 0 to disable.',
        kind='duration',
        min=0,
        default=86_400,
    ),
    _flag(
        'metrics',
        'metrics_enabled',
        'GRANIAN_METRICS_ENABLED',
        'Serve Prometheus metrics (every worker, from the main process) on a separate address',
        False,
    ),
    Option(
        '--metrics-scrape-interval',
        'metrics_scrape_interval',
        'GRANIAN_METRICS_SCRAPE_INTERVAL',
        'How often (in seconds or a human-readable duration) the metrics are collected',
        kind='duration',
        min=1,
        max=60,
        default=15,
    ),
    Option(
        '--metrics-address',
        'metrics_address',
        'GRANIAN_METRICS_ADDRESS',
        'Address the metrics exporter listens on',
        default='127.0.0.1',
    ),
    Option(
        '--metrics-port',
        'metrics_port',
        'GRANIAN_METRICS_PORT',
        'Port the metrics exporter listens on',
        kind='int',
        default=9090,
    ),
    _flag(
        'reload',
        'reload',
        'GRANIAN_RELOAD',
        "Enable auto reload on application's files changes (requires granian[reload] extra)",
        False,
    ),
    Option(
        '--reload-paths',
        'reload_paths',
        'GRANIAN_RELOAD_PATHS',
        'Paths to watch for changes',
        kind='path',
        exists=True,
        multiple=True,
        shown_default='Working directory',
    ),
    Option(
        '--reload-ignore-dirs',
        'reload_ignore_dirs',
        'GRANIAN_RELOAD_IGNORE_DIRS',
        'Names of directories to ignore changes for. Extends the default list of directories to ignore in '
        "watchfiles' default filter",
        multiple=True,
    ),
    Option(
        '--reload-ignore-patterns',
        'reload_ignore_patterns',
        'GRANIAN_RELOAD_IGNORE_PATTERNS',
        'File/directory name patterns (regex) to ignore changes for. Extends the default list of patterns to '
        "ignore in watchfiles' default filter",
        multiple=True,
    ),
    Option(
        '--reload-ignore-paths',
        'reload_ignore_paths',
        'GRANIAN_RELOAD_IGNORE_PATHS',
        'Absolute paths to ignore changes for',
        kind='path',
        multiple=True,
    ),
    Option(
        '--reload-tick',
        'reload_tick',
        'GRANIAN_RELOAD_TICK',
        'The tick frequency (in milliseconds) the reloader watch for changes',
        kind='int',
        min=50,
        max=5000,
        default=50,
    ),
    _flag(
        'reload-ignore-worker-failure',
        'reload_ignore_worker_failure',
        'GRANIAN_RELOAD_IGNORE_WORKER_FAILURE',
        'Ignore worker failures when auto reload is enabled',
        False,
    ),
    Option(
        '--process-name',
        'process_name',
        'GRANIAN_PROCESS_NAME',
        'Set a custom name for processes (requires granian[pname] extra)',
    ),
    Option('--pid-file', 'pid_file', 'GRANIAN_PID_FILE', 'A path to write the PID file to', kind='file', writable=True),
)

PYTHON_ONLY: Tuple[PythonOnly, ...] = (
    PythonOnly(
        'http1_settings',
        None,
        'An `HTTP1Settings`; its fields are the `--http1-*` options (`None`: their defaults)',
    ),
    PythonOnly(
        'http2_settings',
        None,
        'An `HTTP2Settings`; its fields are the `--http2-*` options (`None`: their defaults)',
    ),
    PythonOnly(
        'reload_filter',
        None,
        "The reloader's watch filter: a `watchfiles.BaseFilter` subclass (extended with the `--reload-ignore-*` "
        'options) or a ready filter callable; `None` for `watchfiles.DefaultFilter`',
    ),
)
