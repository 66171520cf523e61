"""The `granian` command: parses and validates options, then hands them to `granian.server.Granian`.

Nothing here runs server logic: every option ends up as a keyword argument of `Granian`
(names as in docs/API.md), so the CLI and the Python API cannot drift apart.
"""

import json
import os
import pathlib
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from granian.errors import ConfigurationError, FatalError
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server import Granian

__all__ = ['Duration', 'OctalInt', 'build_kwargs', 'cli', 'entrypoint', 'parse_duration']


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
    """A number of seconds, written plainly or as a human-readable duration.

    Subclassing IntRange makes click render and enforce the range exactly as it does for
    INTEGER RANGE options (`10<=x<=600` in the help, the same out-of-range message).
    """

    name = 'duration'

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        # Defaults are already ints; bool is excluded because it is an int subclass.
        if isinstance(value, int) and not isinstance(value, bool):
            return super().convert(value, param, ctx)
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            self.fail(
                f'{value!r} is not a valid duration (use seconds or units like 30s, 5m, 2h, 1d, 1h30m); '
                f'allowed range: {self._describe_range()}.',
                param,
                ctx,
            )
        return super().convert(seconds, param, ctx)


class OctalInt(click.ParamType):
    """File permission bits, always read as octal: `660`, `0660` and `0o660` are the same."""

    name = 'octal integer'

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        text = text.removeprefix('0o')
        try:
            rv = int(text, 8)
        except ValueError:
            self.fail(f'{value!r} is not a valid octal integer.', param, ctx)
        if not 0 <= rv <= 0o7777:
            self.fail(f'{value!r} is not a valid permission mode (0 to 7777 octal).', param, ctx)
        return rv


class _Path(click.Path):
    # Click splits env vars of path lists on os.pathsep; ours are whitespace-separated
    # like every other multi-value GRANIAN_* variable.
    envvar_list_splitter = None


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
    def get_error_hint(self, ctx: Optional[click.Context]) -> str:
        # Click names the env var in every error of an option that shows it, even when the
        # bad value was typed on the command line; name it only when it is actually set.
        hint = click.Parameter.get_error_hint(self, ctx)
        if isinstance(self.envvar, str) and os.environ.get(self.envvar):
            hint += f" (env var: '{self.envvar}')"
        return hint


def _load_log_config(ctx: click.Context, param: click.Parameter, value: Optional[pathlib.Path]) -> Optional[dict]:
    if value is None:
        return None
    try:
        with open(value, encoding='utf-8') as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f'cannot load JSON from {str(value)!r}: {exc}', ctx=ctx, param=param) from None
    # logging.config.dictConfig needs a mapping: catch a list or a scalar here, not at startup.
    if not isinstance(data, dict):
        raise click.BadParameter(f'{str(value)!r} must contain a JSON object.', ctx=ctx, param=param)
    return data


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # Imported here so the version is read only when asked for.
    from granian import __version__

    click.echo(f'{ctx.find_root().info_name} {__version__}')
    ctx.exit()


def _opt(decls: str, envvar: Optional[str], help: str, **kwargs: Any) -> click.Option:
    """An option with the `[env var: ...; default: ...]` help suffix the README shows."""
    kwargs.setdefault('show_default', True)
    if envvar is not None:
        kwargs['envvar'] = envvar
        kwargs['show_envvar'] = True
    return _Option(decls.split(), help=help, **kwargs)


def _flag(name: str, envvar: str, help: str, default: bool) -> click.Option:
    return _opt(
        f'--{name}/--no-{name}',
        envvar,
        help,
        default=default,
        show_default='enabled' if default else 'disabled',
    )


def _choice(values: Sequence[str]) -> click.Choice:
    return click.Choice(list(values), case_sensitive=False)


def _file(**kwargs: Any) -> _Path:
    return _Path(dir_okay=False, path_type=pathlib.Path, **kwargs)


def _dir(**kwargs: Any) -> _Path:
    return _Path(file_okay=False, path_type=pathlib.Path, **kwargs)


_PARAMS: List[click.Parameter] = [
    _Argument(['app'], required=True, help='Application target to serve.'),
    _opt('--host', 'GRANIAN_HOST', 'Host address to bind to', default='127.0.0.1', show_default='127.0.0.1'),
    _opt('--port', 'GRANIAN_PORT', 'Port to bind to.', type=click.INT, default=8000),
    _opt('--uds', 'GRANIAN_UDS', 'Unix Domain Socket to bind to.', type=_Path(path_type=pathlib.Path)),
    _opt('--uds-permissions', 'GRANIAN_UDS_PERMISSIONS', 'Unix Domain Socket file permissions', type=OctalInt()),
    _opt(
        '--interface',
        'GRANIAN_INTERFACE',
        'Application interface type',
        type=_choice([item.value for item in Interfaces]),
        default=Interfaces.RSGI.value,
        show_default=Interfaces.RSGI.value,
    ),
    _opt(
        '--http',
        'GRANIAN_HTTP',
        'HTTP version',
        type=_choice([item.value for item in HTTPModes]),
        default=HTTPModes.auto.value,
        show_default=HTTPModes.auto.value,
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
        type=Duration(10, 600),
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
        type=_choice([item.value for item in RuntimeModes]),
        default=RuntimeModes.auto.value,
        show_default=RuntimeModes.auto.value,
    ),
    _opt(
        '--loop',
        'GRANIAN_LOOP',
        'Event loop implementation',
        type=_choice([item.value for item in Loops]),
        default=Loops.auto.value,
        show_default=Loops.auto.value,
    ),
    _opt(
        '--task-impl',
        'GRANIAN_TASK_IMPL',
        'Async task implementation to use',
        type=_choice([item.value for item in TaskImpl]),
        default=TaskImpl.asyncio.value,
        show_default=TaskImpl.asyncio.value,
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
        type=_choice([item.value for item in LogLevels]),
        default=LogLevels.info.value,
        show_default=LogLevels.info.value,
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
        type=_choice([item.value for item in SSLProtocols]),
        default=SSLProtocols.tls13.value,
        show_default=SSLProtocols.tls13.value,
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
        type=Duration(10, 300),
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
        '--static-path-expires',
        'GRANIAN_STATIC_PATH_EXPIRES',
        'Cache headers expiration (in seconds or a human-readable duration) for static file serving. 0 to disable.',
        type=Duration(min=0),
        default=86_400,
    ),
    _opt(
        '--static-path-dir-to-file',
        'GRANIAN_STATIC_PATH_DIR_TO_FILE',
        'File to serve when a static path is a directory (e.g. index.html)',
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
        type=_Path(exists=True, path_type=pathlib.Path),
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
        type=_Path(path_type=pathlib.Path),
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
    _opt('--pid-file', 'GRANIAN_PID_FILE', 'A path to write the PID file to', type=_file()),
    click.Option(
        ['--version'],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_show_version,
        help='Show the version and exit.',
    ),
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
