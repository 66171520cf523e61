import copy
import logging
import logging.config
from typing import Any, Dict, Optional

from .constants import StrEnum


class LogLevels(StrEnum):
    critical = 'critical'
    error = 'error'
    warning = 'warning'
    warn = 'warn'
    info = 'info'
    debug = 'debug'
    notset = 'notset'


_LEVELS = {
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
    'root': {'level': 'INFO', 'handlers': ['console']},
    'formatters': {
        'generic': {
            '()': 'logging.Formatter',
            'fmt': '[%(levelname)s] %(message)s',
            'datefmt': '[%Y-%m-%d %H:%M:%S %z]',
        },
        'access': {'()': 'logging.Formatter', 'fmt': '%(message)s'},
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


def configure_logging(
    level: LogLevels = LogLevels.info, config: Optional[Dict[str, Any]] = None, enabled: bool = True
) -> None:
    log_config = copy.deepcopy(LOGGING_CONFIG)
    if config:
        # A user config adds to ours: its loggers and handlers win where names clash.
        for key in ('formatters', 'handlers', 'loggers'):
            log_config[key].update(config.get(key, {}))
        for key, value in config.items():
            if key not in ('formatters', 'handlers', 'loggers'):
                log_config[key] = value
    if '_granian' not in (config or {}).get('loggers', {}):
        log_config['loggers']['_granian']['level'] = logging.getLevelName(_LEVELS[LogLevels(level)])
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
