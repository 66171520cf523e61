"""The `granian` command: parses and validates options, then hands them to `granian.server.Granian`.

Nothing here runs server logic: every option ends up as a keyword argument of `Granian`
(names as in docs/API.md), so the CLI and the Python API cannot drift apart.
"""

import json
import pathlib
import re
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

import click
from click._utils import UNSET
from click.core import ParameterSource
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from granian.errors import ConfigurationError, FatalError
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server import Granian

__all__ = [
    'Duration',
    'EnumType',
    'OctalIntType',
    'build_kwargs',
    'cli',
    'entrypoint',
    'option',
    'parse_duration',
]

_Decorated = TypeVar('_Decorated', bound=Callable[..., Any])


# Units in the only order accepted: each at most once, largest first, so `1h30m` reads
# unambiguously and `30m1h` is rejected rather than guessed at.
_DURATION_RE = re.compile(r'(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?')
_DURATION_UNITS = {'d': 86_400, 'h': 3_600, 'm': 60, 's': 1}


def parse_duration(value: str) -> int:
    """Turn `30`, `30s`, `5m`, `2h`, `1d` or a combination like `1h30m` into seconds.

    Raises ValueError on anything else.
    """
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION_RE.fullmatch(text)
    # The regex matches the empty string too: a duration needs at least one part.
    if not text or match is None:
        raise ValueError(value)
    return sum(int(amount) * _DURATION_UNITS[unit] for unit, amount in match.groupdict().items() if amount)


class Duration(click.IntRange):
    """A number of seconds, written plainly or as a human-readable duration, within `min`..`max`.

    Subclassing IntRange makes click render the bounds in the help as it does for INTEGER
    RANGE options (`5<=x<=600`); the messages name the value as it was given.
    """

    name = 'duration'

    def __init__(self, min: Optional[int] = None, max: Optional[int] = None) -> None:
        super().__init__(min, max)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        # Defaults are already ints; bool is excluded because it is an int subclass.
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif value == '':
            # An empty value is zero seconds, as granian 2.8.7 reads it.
            seconds = 0
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError:
                self.fail(f'{value!r} is not a valid duration', param, ctx)
        if self.min is not None and seconds < self.min:
            self.fail(f'{value!r} is less than the minimum allowed value of {self.min} seconds', param, ctx)
        if self.max is not None and seconds > self.max:
            self.fail(f'{value!r} is greater than the maximum allowed value of {self.max} seconds', param, ctx)
        return seconds


class EnumType(click.Choice):
    """A case-insensitive choice among the values of `enum`, converted to its member."""

    def __init__(self, enum: Type[Enum], case_sensitive: bool = False) -> None:
        self._enum = enum
        super().__init__([member.value for member in enum], case_sensitive=case_sensitive)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        # Defaults are members already.
        if value is None or isinstance(value, self._enum):
            return value
        return self._enum(super().convert(value, param, ctx))


class OctalIntType(click.ParamType):
    """Unix permission bits: octal when written with a leading zero (`0660`, `0o660`), decimal otherwise.

    The same reading as granian 2.8.7, so that one configuration means the same mode on both;
    a mode outside 0..0o7777 is refused rather than handed to chmod.
    """

    name = 'Octal integer'

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str):
            try:
                mode = int(value, 8 if value.startswith('0') else 10)
            except ValueError as exc:
                # Python's own wording (`invalid literal for int() with base 8: '0x1ff'`).
                self.fail(str(exc), param, ctx)
        else:
            self.fail(f'{value!r} is not a valid integer', param, ctx)
        if not 0 <= mode <= 0o7777:
            self.fail(f'{value!r} is not a valid permission mode (0 to 0o7777)', param, ctx)
        return mode


def _shown_default(value: Any) -> Any:
    """What the help prints as an option's default: flags as enabled/disabled, enums by value."""
    if isinstance(value, bool):
        return 'enabled' if value else 'disabled'
    if isinstance(value, Enum):
        return value.value
    return value


def _help_conventions(attrs: Dict[str, Any]) -> Dict[str, Any]:
    # Every option shows its env var; one with a default shows it in the form above.
    attrs['show_envvar'] = True
    if 'default' in attrs:
        attrs['show_default'] = _shown_default(attrs['default'])
    return attrs


def option(
    *param_decls: str, cls: Optional[Type[click.Option]] = None, **attrs: Any
) -> Callable[[_Decorated], _Decorated]:
    """`click.option` with the help conventions of the `granian` command.

    The env var is always shown, and a default as `enabled`/`disabled` for flags, by value
    for enums. The env var's name comes from the `auto_envvar_prefix` the command is run
    with, unless `envvar=` names one.
    """
    return click.option(*param_decls, cls=cls, **_help_conventions(attrs))


class _Argument(click.Argument):
    """A positional argument that carries a help text (click arguments have none)."""

    def __init__(self, *args: Any, help: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = help


class GranianCommand(click.Command):
    """Prints the positional arguments' help between the usage line and the options."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        rows = []
        for param in self.get_params(ctx):
            if isinstance(param, _Argument) and param.help:
                text = param.help + ('  [required]' if param.required else '')
                rows.append((param.human_readable_name, text))
        if rows:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_dl(rows)


class _Option(click.Option):
    """Names its env var in an error only when the bad value came from that variable.

    Click names it in every error of an option that shows it, even for a value typed on
    the command line.
    """

    def consume_value(self, ctx: click.Context, opts: Any) -> Tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f'granian.cli.source.{self.name}'] = source
        return value, source

    def get_error_hint(self, ctx: Optional[click.Context]) -> str:
        hint = click.Parameter.get_error_hint(self, ctx)
        if ctx is not None and ctx.meta.get(f'granian.cli.source.{self.name}') is ParameterSource.ENVIRONMENT:
            hint += f" (env var: '{self.envvar}')"
        return hint


class _VersionOption(click.Option):
    def __init__(self) -> None:
        super().__init__(
            ['--version'],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_show_version,
            help='Show the version and exit.',
        )
        # Click 8.5 leaves a flag declared without a default unset (read as off) where 8.4
        # stores False; unset is what the option table of granian 2.8.7 shows.
        self.default = UNSET


def _load_log_config(ctx: click.Context, param: click.Parameter, value: Optional[pathlib.Path]) -> Optional[dict]:
    if value is None:
        return None
    try:
        with open(value, encoding='utf-8') as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        problem = f'cannot load JSON from {str(value)!r}: {exc}'
    else:
        # logging.config.dictConfig needs a mapping: catch a list or a scalar here, not at startup.
        if isinstance(data, dict):
            return data
        problem = f'{str(value)!r} must contain a JSON object'
    raise click.BadParameter(f'Unable to parse provided logging config ({problem}).', ctx=ctx, param=param)


def _show_version(ctx: click.Context, param: click.Parameter, value: Optional[bool]) -> None:
    if not value or ctx.resilient_parsing:
        return
    # Imported here so the version is read only when asked for.
    from granian import __version__

    click.echo(f'{ctx.find_root().info_name} {__version__}')
    ctx.exit()


def _opt(decls: str, envvar: str, help: str, **kwargs: Any) -> click.Option:
    """An option with the `[env var: ...; default: ...]` help suffix of `option`, under its env var."""
    kwargs.setdefault('show_default', True)
    return _Option(decls.split(), help=help, envvar=envvar, **_help_conventions(kwargs))


def _flag(name: str, envvar: str, help: str, default: bool) -> click.Option:
    return _opt(f'--{name}/--no-{name}', envvar, help, default=default)


def _file(**kwargs: Any) -> click.Path:
    return click.Path(dir_okay=False, path_type=pathlib.Path, **kwargs)


def _dir(**kwargs: Any) -> click.Path:
    return click.Path(file_okay=False, path_type=pathlib.Path, **kwargs)


_PARAMS: List[click.Parameter] = [
    _Argument(['app'], required=True, help='Application target to serve.'),
    _opt('--host', 'GRANIAN_HOST', 'Host address to bind to', default='127.0.0.1'),
    _opt('--port', 'GRANIAN_PORT', 'Port to bind to.', type=click.INT, default=8000),
    _opt(
        '--uds', 'GRANIAN_UDS', 'Unix Domain Socket to bind to.', type=click.Path(writable=True, path_type=pathlib.Path)
    ),
    _opt(
        '--uds-permissions',
        'GRANIAN_UDS_PERMISSIONS',
        'Unix Domain Socket file permissions',
        type=OctalIntType(),
        default=None,
    ),
    _opt(
        '--interface',
        'GRANIAN_INTERFACE',
        'Application interface type',
        type=EnumType(Interfaces),
        default=Interfaces.RSGI,
    ),
    _opt(
        '--http',
        'GRANIAN_HTTP',
        'HTTP version',
        type=EnumType(HTTPModes),
        default=HTTPModes.auto,
    ),
    _flag('ws', 'GRANIAN_WEBSOCKETS', 'Enable websockets handling', True),
    _opt('--workers', 'GRANIAN_WORKERS', 'Number of worker processes', type=click.IntRange(min=1), default=1),
    _opt(
        '--blocking-threads',
        'GRANIAN_BLOCKING_THREADS',
        'Number of blocking threads (per worker)',
        type=click.IntRange(min=1),
    ),
    _opt(
        '--blocking-threads-idle-timeout',
        'GRANIAN_BLOCKING_THREADS_IDLE_TIMEOUT',
        'The maximum amount of time in seconds (or a human-readable duration) an idle blocking thread will be '
        'kept alive',
        type=Duration(5, 600),
        default=30,
    ),
    _opt(
        '--runtime-threads',
        'GRANIAN_RUNTIME_THREADS',
        'Number of runtime threads (per worker)',
        type=click.IntRange(min=1),
        default=1,
    ),
    _opt(
        '--runtime-blocking-threads',
        'GRANIAN_RUNTIME_BLOCKING_THREADS',
        'Number of runtime I/O blocking threads (per worker)',
        type=click.IntRange(min=1),
    ),
    _opt(
        '--runtime-mode',
        'GRANIAN_RUNTIME_MODE',
        'Runtime mode to use (single/multi threaded)',
        type=EnumType(RuntimeModes),
        default=RuntimeModes.auto,
    ),
    _opt(
        '--loop',
        'GRANIAN_LOOP',
        'Event loop implementation',
        type=EnumType(Loops),
        default=Loops.auto,
    ),
    _opt(
        '--task-impl',
        'GRANIAN_TASK_IMPL',
        'Async task implementation to use',
        type=EnumType(TaskImpl),
        default=TaskImpl.asyncio,
    ),
    _opt(
        '--backlog',
        'GRANIAN_BACKLOG',
        'Maximum number of connections to hold in backlog (globally)',
        type=click.IntRange(min=128),
        default=1024,
    ),
    _opt(
        '--backpressure',
        'GRANIAN_BACKPRESSURE',
        'Maximum number of requests to process concurrently (per worker)',
        type=click.IntRange(min=1),
        show_default='backlog/workers',
    ),
    _opt(
        '--http1-buffer-size',
        'GRANIAN_HTTP1_BUFFER_SIZE',
        'Sets the maximum buffer size for HTTP/1 connections',
        type=click.IntRange(min=8192),
        default=417_792,
    ),
    _opt(
        '--http1-header-read-timeout',
        'GRANIAN_HTTP1_HEADER_READ_TIMEOUT',
        'Sets a timeout (in milliseconds) to read headers',
        type=click.IntRange(1, 60_000),
        default=30_000,
    ),
    _flag('http1-keep-alive', 'GRANIAN_HTTP1_KEEP_ALIVE', 'Enables or disables HTTP/1 keep-alive', True),
    _flag(
        'http1-pipeline-flush',
        'GRANIAN_HTTP1_PIPELINE_FLUSH',
        'Aggregates HTTP/1 flushes to better support pipelined responses (experimental)',
        False,
    ),
    _flag(
        'http2-adaptive-window',
        'GRANIAN_HTTP2_ADAPTIVE_WINDOW',
        'Sets whether to use an adaptive flow control for HTTP2',
        False,
    ),
    _opt(
        '--http2-initial-connection-window-size',
        'GRANIAN_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE',
        'Sets the max connection-level flow control for HTTP2',
        type=click.IntRange(min=1024),
        default=1_048_576,
    ),
    _opt(
        '--http2-initial-stream-window-size',
        'GRANIAN_HTTP2_INITIAL_STREAM_WINDOW_SIZE',
        'Sets the `SETTINGS_INITIAL_WINDOW_SIZE` option for HTTP2 stream-level flow control',
        type=click.IntRange(min=1024),
        default=1_048_576,
    ),
    _opt(
        '--http2-keep-alive-interval',
        'GRANIAN_HTTP2_KEEP_ALIVE_INTERVAL',
        'Sets an interval (in milliseconds) for HTTP2 Ping frames should be sent to keep a connection alive',
        type=click.IntRange(1, 60_000),
        default=None,
    ),
    _opt(
        '--http2-keep-alive-timeout',
        'GRANIAN_HTTP2_KEEP_ALIVE_TIMEOUT',
        'Sets a timeout (in seconds or a human-readable duration) for receiving an acknowledgement of the HTTP2 '
        'keep-alive ping',
        type=Duration(min=1),
        default=20,
    ),
    _opt(
        '--http2-max-concurrent-streams',
        'GRANIAN_HTTP2_MAX_CONCURRENT_STREAMS',
        'Sets the SETTINGS_MAX_CONCURRENT_STREAMS option for HTTP2 connections',
        type=click.IntRange(min=10),
        default=200,
    ),
    _opt(
        '--http2-max-frame-size',
        'GRANIAN_HTTP2_MAX_FRAME_SIZE',
        'Sets the maximum frame size to use for HTTP2',
        type=click.IntRange(min=1024),
        default=16_384,
    ),
    _opt(
        '--http2-max-headers-size',
        'GRANIAN_HTTP2_MAX_HEADERS_SIZE',
        'Sets the max size of received header frames',
        type=click.IntRange(min=1),
        default=16_777_216,
    ),
    _opt(
        '--http2-max-send-buffer-size',
        'GRANIAN_HTTP2_MAX_SEND_BUFFER_SIZE',
        'Set the maximum write buffer size for each HTTP/2 stream',
        type=click.IntRange(min=1024),
        default=409_600,
    ),
    _flag('log', 'GRANIAN_LOG_ENABLED', 'Enable logging', True),
    _opt(
        '--log-level',
        'GRANIAN_LOG_LEVEL',
        'Log level',
        type=EnumType(LogLevels),
        default=LogLevels.info,
    ),
    _opt(
        '--log-config',
        'GRANIAN_LOG_CONFIG',
        'Logging configuration file (json)',
        type=_file(exists=True),
        callback=_load_log_config,
    ),
    _flag('access-log', 'GRANIAN_LOG_ACCESS_ENABLED', 'Enable access log', False),
    _opt('--access-log-fmt', 'GRANIAN_LOG_ACCESS_FMT', 'Access log format'),
    _opt('--ssl-certificate', 'GRANIAN_SSL_CERTIFICATE', 'SSL certificate file', type=_file(exists=True)),
    _opt('--ssl-keyfile', 'GRANIAN_SSL_KEYFILE', 'SSL key file', type=_file(exists=True)),
    _opt('--ssl-keyfile-password', 'GRANIAN_SSL_KEYFILE_PASSWORD', 'SSL key password'),
    _opt(
        '--ssl-protocol-min',
        'GRANIAN_SSL_PROTOCOL_MIN',
        'Set the minimum supported protocol for SSL connections.',
        type=EnumType(SSLProtocols),
        default=SSLProtocols.tls13,
    ),
    # "cerificate" is the README's spelling: kept so the help text matches it byte for byte.
    _opt('--ssl-ca', 'GRANIAN_SSL_CA', 'Root SSL cerificate file for client verification', type=_file(exists=True)),
    _opt('--ssl-crl', 'GRANIAN_SSL_CRL', 'SSL CRL file(s)', type=_file(exists=True), multiple=True),
    _flag('ssl-client-verify', 'GRANIAN_SSL_CLIENT_VERIFY', 'Verify clients SSL certificates', False),
    _opt('--url-path-prefix', 'GRANIAN_URL_PATH_PREFIX', 'URL path prefix the app is mounted on'),
    _flag(
        'respawn-failed-workers',
        'GRANIAN_RESPAWN_FAILED_WORKERS',
        'Enable workers respawn on unexpected exit',
        False,
    ),
    _opt(
        '--respawn-interval',
        'GRANIAN_RESPAWN_INTERVAL',
        'The number of seconds to sleep between workers respawn',
        type=click.FLOAT,
        default=3.5,
    ),
    _opt(
        '--rss-sample-interval',
        'GRANIAN_RSS_SAMPLE_INTERVAL',
        'The sample rate in seconds (or a human-readable duration) for the resource monitor',
        type=Duration(1, 300),
        default=30,
    ),
    _opt(
        '--rss-samples',
        'GRANIAN_RSS_SAMPLES',
        'The number of consecutive samples to consider a worker over resource limit',
        type=click.IntRange(min=1),
        default=1,
    ),
    _opt(
        '--workers-lifetime',
        'GRANIAN_WORKERS_LIFETIME',
        'The maximum amount of time in seconds (or a human-readable duration) a worker will be kept alive before '
        'respawn',
        type=Duration(min=60),
    ),
    _opt(
        '--workers-max-rss',
        'GRANIAN_WORKERS_MAX_RSS',
        'The maximum amount of memory (in MiB) a worker can consume before respawn',
        type=click.IntRange(min=1),
    ),
    _opt(
        '--workers-kill-timeout',
        'GRANIAN_WORKERS_KILL_TIMEOUT',
        'The amount of time in seconds (or a human-readable duration) to wait for killing workers that refused to '
        'gracefully stop',
        type=Duration(1, 1800),
        show_default='disabled',
    ),
    _flag(
        'factory',
        'GRANIAN_FACTORY',
        'Treat target as a factory function, that should be invoked to build the actual target',
        False,
    ),
    _opt('--working-dir', 'GRANIAN_WORKING_DIR', 'Set the working directory', type=_dir(exists=True)),
    _opt(
        '--env-files',
        'GRANIAN_ENV_FILES',
        'Environment file(s) to load (requires granian[dotenv] extra)',
        type=_file(exists=True),
        multiple=True,
    ),
    _opt(
        '--static-path-route',
        'GRANIAN_STATIC_PATH_ROUTE',
        'Route for static file serving',
        multiple=True,
        show_default='/static',
    ),
    _opt(
        '--static-path-mount',
        'GRANIAN_STATIC_PATH_MOUNT',
        'Path to mount for static file serving',
        type=_dir(exists=True),
        multiple=True,
    ),
    _opt(
        '--static-path-dir-to-file',
        'GRANIAN_STATIC_PATH_DIR_TO_FILE',
        'File to serve when a static path is a directory (e.g. index.html)',
        default=None,
    ),
    _opt(
        '--static-path-expires',
        'GRANIAN_STATIC_PATH_EXPIRES',
        'Cache headers expiration (in seconds or a human-readable duration) for static file serving. 0 to disable.',
        type=Duration(min=0),
        default=86_400,
    ),
    _opt(
        '--metrics/--no-metrics',
        'GRANIAN_METRICS_ENABLED',
        'Serve Prometheus metrics on a separate address (not supported yet: refused at startup)',
        default=False,
    ),
    _opt(
        '--metrics-scrape-interval',
        'GRANIAN_METRICS_SCRAPE_INTERVAL',
        'How often (in seconds or a human-readable duration) the metrics are collected',
        type=Duration(1, 60),
        default=15,
    ),
    _opt(
        '--metrics-address',
        'GRANIAN_METRICS_ADDRESS',
        'Address the metrics exporter listens on',
        default='127.0.0.1',
    ),
    _opt(
        '--metrics-port', 'GRANIAN_METRICS_PORT', 'Port the metrics exporter listens on', type=click.INT, default=9090
    ),
    _flag(
        'reload',
        'GRANIAN_RELOAD',
        "Enable auto reload on application's files changes (requires granian[reload] extra)",
        False,
    ),
    _opt(
        '--reload-paths',
        'GRANIAN_RELOAD_PATHS',
        'Paths to watch for changes',
        type=click.Path(exists=True, path_type=pathlib.Path),
        multiple=True,
        show_default='Working directory',
    ),
    _opt(
        '--reload-ignore-dirs',
        'GRANIAN_RELOAD_IGNORE_DIRS',
        'Names of directories to ignore changes for. Extends the default list of directories to ignore in '
        "watchfiles' default filter",
        multiple=True,
    ),
    _opt(
        '--reload-ignore-patterns',
        'GRANIAN_RELOAD_IGNORE_PATTERNS',
        'File/directory name patterns (regex) to ignore changes for. Extends the default list of patterns to '
        "ignore in watchfiles' default filter",
        multiple=True,
    ),
    _opt(
        '--reload-ignore-paths',
        'GRANIAN_RELOAD_IGNORE_PATHS',
        'Absolute paths to ignore changes for',
        type=click.Path(path_type=pathlib.Path),
        multiple=True,
    ),
    _opt(
        '--reload-tick',
        'GRANIAN_RELOAD_TICK',
        'The tick frequency (in milliseconds) the reloader watch for changes',
        type=click.IntRange(50, 5000),
        default=50,
    ),
    _flag(
        'reload-ignore-worker-failure',
        'GRANIAN_RELOAD_IGNORE_WORKER_FAILURE',
        'Ignore worker failures when auto reload is enabled',
        False,
    ),
    _opt(
        '--process-name',
        'GRANIAN_PROCESS_NAME',
        'Set a custom name for processes (requires granian[pname] extra)',
    ),
    _opt('--pid-file', 'GRANIAN_PID_FILE', 'A path to write the PID file to', type=_file(writable=True)),
    _VersionOption(),
]


def _list(values: Optional[Tuple[Any, ...]]) -> Optional[List[Any]]:
    # An option never given is None for the server, which then applies its own default.
    return list(values) if values else None


def build_kwargs(**params: Any) -> Dict[str, Any]:
    """Map the parsed CLI values (click parameter names, without `app`) to `Granian` keyword arguments."""
    return {
        'address': params['host'],
        'port': params['port'],
        'uds': params['uds'],
        'uds_permissions': params['uds_permissions'],
        'interface': Interfaces(params['interface']),
        'workers': params['workers'],
        'blocking_threads': params['blocking_threads'],
        'blocking_threads_idle_timeout': params['blocking_threads_idle_timeout'],
        'runtime_threads': params['runtime_threads'],
        'runtime_blocking_threads': params['runtime_blocking_threads'],
        'runtime_mode': RuntimeModes(params['runtime_mode']),
        'loop': Loops(params['loop']),
        'task_impl': TaskImpl(params['task_impl']),
        'http': HTTPModes(params['http']),
        'websockets': params['ws'],
        'backlog': params['backlog'],
        'backpressure': params['backpressure'],
        'http1_settings': HTTP1Settings(
            header_read_timeout=params['http1_header_read_timeout'],
            keep_alive=params['http1_keep_alive'],
            max_buffer_size=params['http1_buffer_size'],
            pipeline_flush=params['http1_pipeline_flush'],
        ),
        'http2_settings': HTTP2Settings(
            adaptive_window=params['http2_adaptive_window'],
            initial_connection_window_size=params['http2_initial_connection_window_size'],
            initial_stream_window_size=params['http2_initial_stream_window_size'],
            keep_alive_interval=params['http2_keep_alive_interval'],
            keep_alive_timeout=params['http2_keep_alive_timeout'],
            max_concurrent_streams=params['http2_max_concurrent_streams'],
            max_frame_size=params['http2_max_frame_size'],
            max_headers_size=params['http2_max_headers_size'],
            max_send_buffer_size=params['http2_max_send_buffer_size'],
        ),
        'log_enabled': params['log'],
        'log_level': LogLevels(params['log_level']),
        'log_dictconfig': params['log_config'],
        'log_access': params['access_log'],
        'log_access_format': params['access_log_fmt'],
        'ssl_cert': params['ssl_certificate'],
        'ssl_key': params['ssl_keyfile'],
        'ssl_key_password': params['ssl_keyfile_password'],
        'ssl_protocol_min': SSLProtocols(params['ssl_protocol_min']),
        'ssl_ca': params['ssl_ca'],
        'ssl_crl': _list(params['ssl_crl']),
        'ssl_client_verify': params['ssl_client_verify'],
        'url_path_prefix': params['url_path_prefix'],
        'respawn_failed_workers': params['respawn_failed_workers'],
        'respawn_interval': params['respawn_interval'],
        'rss_sample_interval': params['rss_sample_interval'],
        'rss_samples': params['rss_samples'],
        'workers_lifetime': params['workers_lifetime'],
        'workers_max_rss': params['workers_max_rss'],
        'workers_kill_timeout': params['workers_kill_timeout'],
        'factory': params['factory'],
        'working_dir': params['working_dir'],
        'env_files': _list(params['env_files']),
        'static_path_route': _list(params['static_path_route']),
        'static_path_mount': _list(params['static_path_mount']),
        'static_path_expires': params['static_path_expires'],
        'static_path_dir_to_file': params['static_path_dir_to_file'],
        'metrics_enabled': params['metrics'],
        'metrics_scrape_interval': params['metrics_scrape_interval'],
        'metrics_address': params['metrics_address'],
        'metrics_port': params['metrics_port'],
        'reload': params['reload'],
        'reload_paths': _list(params['reload_paths']),
        'reload_ignore_dirs': _list(params['reload_ignore_dirs']),
        'reload_ignore_patterns': _list(params['reload_ignore_patterns']),
        'reload_ignore_paths': _list(params['reload_ignore_paths']),
        'reload_tick': params['reload_tick'],
        'reload_ignore_worker_failure': params['reload_ignore_worker_failure'],
        'process_name': params['process_name'],
        'pid_file': params['pid_file'],
    }


@click.command(
    'granian',
    cls=GranianCommand,
    params=_PARAMS,
    # Env vars are all declared explicitly: no derived names that the README does not list.
    context_settings={'auto_envvar_prefix': None},
)
def cli(app: str, **params: Any) -> None:
    kwargs = build_kwargs(**params)
    try:
        server = Granian(app, **kwargs)
        server.serve()
    except ConfigurationError as exc:
        # A bad combination of options is the user's input error: one line, exit code 2.
        raise click.UsageError(str(exc)) from None
    except FatalError as exc:
        raise click.ClickException(str(exc)) from None


def entrypoint() -> None:
    cli()
