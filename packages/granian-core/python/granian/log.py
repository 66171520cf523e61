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
    if not enabled:
        logger.disabled = True
        access_logger.disabled = True
