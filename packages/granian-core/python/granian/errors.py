class ConfigurationError(ValueError):
    """An option value the server cannot run with."""


class FatalError(RuntimeError):
    """The server cannot go on: it stops with a non-zero exit."""
