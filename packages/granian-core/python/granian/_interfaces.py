"""Maps an interface name to the distribution that implements it.

Core never imports an interface at module level: each implementation module exposes
`IS_ASYNC` and four calls, in this order:
- `prepare(target, options) -> app`: checks the loaded target and wraps it (`options` is
  the `Granian` object, for settings such as `interface` or `url_path_prefix`);
- `startup(app, loop)`: before serving, the loop not running (RSGI init, ASGI lifespan);
- `serve(app, worker, socket, bridge, loop, logger, on_stopped)`: starts the native worker;
- `shutdown(app, loop)`: after serving, the loop stopped.
"""

import importlib
from types import ModuleType

from .errors import ConfigurationError

_IMPLEMENTATIONS = {
    'rsgi': ('granian.rsgi', 'granian-rsgi'),
    'asgi': ('granian.asgi', 'granian-asgi'),
    'asginl': ('granian.asgi', 'granian-asgi'),
    'wsgi': ('granian.wsgi', 'granian-wsgi'),
}


def load_interface(name: str) -> ModuleType:
    try:
        module_name, distribution = _IMPLEMENTATIONS[str(name)]
    except KeyError:
        raise ConfigurationError(f'unknown interface {name!r}: choose one of {", ".join(_IMPLEMENTATIONS)}') from None
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigurationError(
            f'the {name} interface needs the {distribution} package: pip install {distribution}'
        ) from None
