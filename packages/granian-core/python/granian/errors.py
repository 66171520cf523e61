class FatalError(Exception):
    """The server cannot go on: it stops with a non-zero exit."""


class ConfigurationError(FatalError):
    """An option value the server cannot run with."""


class PidFileError(FatalError):
    """The PID file names another server that is still running: this one does not start."""
