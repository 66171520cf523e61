import copy
import datetime
import json
import logging
import logging.config
import re
import time
from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, Optional

from .constants import StrEnum


class LogLevels(str, Enum):
    critical = 'critical'
    error = 'error'
    warning = 'warning'
    warn = 'warn'
    info = 'info'
    debug = 'debug'
    notset = 'notset'


class LogFormats(StrEnum):
    """`--log-format`: how runtime and access lines are written."""

    text = 'text'
    json = 'json'


log_levels_map = {
    LogLevels.critical: logging.CRITICAL,
    LogLevels.error: logging.ERROR,
    LogLevels.warning: logging.WARNING,
    LogLevels.warn: logging.WARNING,
    LogLevels.info: logging.INFO,
    LogLevels.debug: logging.DEBUG,
    LogLevels.notset: logging.NOTSET,
}

DEFAULT_ACCESSLOG_FMT = '[%(time)s] %(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f'

LOGGING_CONFIG: Dict[str, Any] = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {
        'generic': {
            '()': 'logging.Formatter',
            'fmt': '[%(levelname)s] %(message)s',
            'datefmt': '[%Y-%m-%d %H:%M:%S %z]',
        },
        'access': {'()': 'logging.Formatter', 'fmt': '%(message)s', 'datefmt': '[%Y-%m-%d %H:%M:%S %z]'},
    },
    'handlers': {
        'console': {'formatter': 'generic', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'},
        'access': {'formatter': 'access', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'},
    },
    'loggers': {
        '_granian': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'granian.access': {'handlers': ['access'], 'level': 'INFO', 'propagate': False},
    },
}

logger = logging.getLogger('_granian')
access_logger = logging.getLogger('granian.access')

# What `configure_logging` last selected: the access loggers built after it follow it.
_log_format = LogFormats.text


def _json_line(entry: Dict[str, Any]) -> str:
    # Compact, as serde_json writes the access lines of the Rust core.
    return json.dumps(entry, separators=(',', ':'), default=str)


class JsonFormatter(logging.Formatter):
    """`--log-format json`: each record as one JSON object on one line.

    Keys: `time` (ISO 8601, local time with its UTC offset, milliseconds), `level`, `logger`,
    `message`, and `exc_info` (the formatted traceback) / `stack_info` when the record has one.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc).astimezone()
        entry: Dict[str, Any] = {
            'time': created.isoformat(timespec='milliseconds'),
            'level': record.levelname,
            'logger': record.name,
            'message': record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry['exc_info'] = record.exc_text
        if record.stack_info:
            entry['stack_info'] = self.formatStack(record.stack_info)
        return _json_line(entry)


def configure_logging(
    level: LogLevels,
    config: Optional[Dict[str, Any]] = None,
    enabled: bool = True,
    log_format: LogFormats = LogFormats.text,
) -> None:
    """Sets up `_granian` and `granian.access` (`dictConfig`): our default config, with the
    user's `config` merged over it (its handlers, formatters and loggers win where names clash).

    With `log_format` json, the default `generic` formatter writes JSON objects
    (`JsonFormatter`); access lines are JSON already when they reach `granian.access`
    (`log_request_builder`, and the Rust core), so its `%(message)s` formatter stays.
    """
    global _log_format
    _log_format = LogFormats(log_format)
    log_config = copy.deepcopy(LOGGING_CONFIG)
    if _log_format is LogFormats.json:
        log_config['formatters']['generic'] = {'()': JsonFormatter}
    if config:
        # A user config adds to ours: its loggers and handlers win where names clash.
        for key in ('formatters', 'handlers', 'loggers'):
            log_config[key].update(config.get(key, {}))
        for key, value in config.items():
            if key not in ('formatters', 'handlers', 'loggers'):
                log_config[key] = value
    if '_granian' not in (config or {}).get('loggers', {}):
        log_config['loggers']['_granian']['level'] = logging.getLevelName(log_levels_map[LogLevels(level)])
    logging.config.dictConfig(log_config)
    user = config or {}
    if 'access' not in user.get('handlers', {}) and 'access' not in user.get('formatters', {}):
        for handler in access_logger.handlers:
            if handler.get_name() == 'access':
                handler._granian_plain = True
    if not enabled:
        logger.disabled = True
        access_logger.disabled = True


def direct_access_fd() -> Optional[int]:
    """The descriptor the worker may write access lines to itself, bypassing `logging`.

    Only while `granian.access` is as `configure_logging` left it by default: one plain
    `%(message)s` handler on a real file or pipe, no filters, not propagating. Any other
    setup (a `--log-config` handler or formatter, a filter, a raised level) goes through
    `logging` line by line.
    """
    log = access_logger
    if log.disabled or log.filters or log.propagate or not log.isEnabledFor(logging.INFO) or len(log.handlers) != 1:
        return None
    (handler,) = log.handlers
    if not getattr(handler, '_granian_plain', False) or handler.filters or handler.level > logging.INFO:
        return None
    try:
        handler.flush()
        return handler.stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


# `%(header{User-Agent})s`: a request header by name (any case); `-` when the request has none.
_HEADER_ATOM = re.compile(r'%\(header\{([^}]+)\}\)s')
# Each `%` of a format and what follows: `%%` is a literal, `%(` names an atom, anything else names none.
_CONVERSION = re.compile(r'%(%|\()?')

RequestLogger = Callable[[float, float, Mapping[str, Any], int], None]


def log_request_builder(fmt: Optional[str], log_format: Optional[LogFormats] = None) -> RequestLogger:
    """The access logger of a Python interface: `log(rtime, mtime, req, status)` logs one line
    of `fmt` (DEFAULT_ACCESSLOG_FMT when None) to `granian.access`.

    With `log_format` json (None: what `configure_logging` last selected), the line logged is
    one JSON object, the same the Rust core writes: `time`, `level`, `logger`, `message` (the
    line of `fmt`), then `addr`, `method`, `path`, `query_string`, `status`, `dt_ms`,
    `protocol`, `scheme` and, when `fmt` shows headers, `header` (name to value or null).

    `rtime` is when the request arrived (`time.time()`), `mtime` the same instant by
    `time.perf_counter()`, and `req` a mapping with `addr_remote`, `path`, `qs`, `method`,
    `scheme` and `protocol`. When the format shows headers (the returned callable's
    `parse_headers` is True), `req['headers']` is also needed: a function from a lower-case
    header name to its value or None.
    """
    header_names: List[str] = []

    def header_slot(match: 're.Match[str]') -> str:
        header_names.append(match.group(1).strip().lower())
        return f'%(_header_{len(header_names) - 1})s'

    line_fmt = _HEADER_ATOM.sub(header_slot, DEFAULT_ACCESSLOG_FMT if fmt is None else fmt)
    slots = [(f'_header_{index}', name) for index, name in enumerate(header_names)]
    as_json = LogFormats(log_format or _log_format) is LogFormats.json
    # The offset of the local time zone, fixed when the logger is built.
    zone = datetime.datetime.now().astimezone().tzinfo

    def atoms(rtime: float, mtime: float, req: Mapping[str, Any], status: int) -> Dict[str, Any]:
        values = {
            'addr': req['addr_remote'],
            'time': datetime.datetime.fromtimestamp(rtime, tz=zone).strftime('%Y-%m-%d %H:%M:%S %z'),
            'dt_ms': (time.perf_counter() - mtime) * 1000,
            'status': status,
            'path': req['path'],
            'query_string': req['qs'],
            'method': req['method'],
            'scheme': req['scheme'],
            'protocol': req['protocol'],
        }
        if slots:
            lookup = req['headers']
            for slot, name in slots:
                values[slot] = lookup(name) or '-'
        return values

    # A format that cannot render (an unknown atom, a bad conversion) fails here, not on each request.
    if any(match.group(1) is None for match in _CONVERSION.finditer(line_fmt)):
        # `100% sure` reads as the conversion `% s` of the whole mapping.
        raise ValueError(f'invalid access log format {fmt!r}: a % that is neither %(atom)... nor %%')
    sample: Dict[str, Any] = {'addr_remote': '', 'path': '', 'qs': '', 'method': '', 'scheme': '', 'protocol': ''}
    sample['headers'] = lambda name: None
    try:
        line_fmt % atoms(time.time(), time.perf_counter(), sample, 200)
    except KeyError as exc:
        raise ValueError(f'invalid access log format {fmt!r}: unknown atom {exc.args[0]!r}') from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f'invalid access log format {fmt!r}: {exc}') from None

    def json_request_line(rtime: float, mtime: float, req: Mapping[str, Any], status: int) -> str:
        values = atoms(rtime, mtime, req, status)
        entry: Dict[str, Any] = {
            'time': datetime.datetime.fromtimestamp(rtime, tz=zone).isoformat(timespec='milliseconds'),
            'level': 'INFO',
            'logger': access_logger.name,
            'message': line_fmt % values,
            'addr': values['addr'],
            'method': values['method'],
            'path': values['path'],
            'query_string': values['query_string'],
            'status': values['status'],
            'dt_ms': round(values['dt_ms'], 3),
            'protocol': values['protocol'],
            'scheme': values['scheme'],
        }
        if slots:
            lookup = req['headers']
            entry['header'] = {name: lookup(name) or None for name in header_names}
        return _json_line(entry)

    def log_request(rtime: float, mtime: float, req: Mapping[str, Any], res_code: int) -> None:
        if access_logger.isEnabledFor(logging.INFO):
            if as_json:
                access_logger.info(json_request_line(rtime, mtime, req, res_code))
            else:
                access_logger.info(line_fmt, atoms(rtime, mtime, req, res_code))

    log_request.parse_headers = bool(slots)  # type: ignore[attr-defined]
    return log_request
