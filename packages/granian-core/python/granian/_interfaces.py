"""Maps an interface name to the distribution that implements it, and runs its hooks.

Core never imports an interface at module level: each implementation module exposes
`IS_ASYNC` (whether the app runs on the event loop) and four calls, in this order:
- `prepare(target, options) -> app`: checks the loaded target and wraps it (`options` is
  the `Granian` object, for settings such as `interface` or `url_path_prefix`);
- `startup(app, loop)`: before serving, the loop not running (RSGI init, ASGI lifespan);
- `serve(app, worker, socket, bridge, loop, logger, on_stopped)`: starts the native worker;
- `shutdown(app, loop)`: after serving, the loop stopped.

A worker owns its loop and calls `startup`/`shutdown` around running it. The embedded server
serves on a loop that is already running, where a hook cannot run the loop: it calls
`startup_on_running_loop`/`shutdown_on_running_loop` below instead. When the work of the hooks
has to run the loop (an ASGI lifespan), the prepared app exposes that work as its `lifespan`
attribute, an object with `async startup()` and `async shutdown()` (None when there is none):
the hooks of such an app only run it to completion, and those two functions await it instead.
The hooks of an app without that attribute do not run the loop, and are called as they are.
"""

import asyncio
import importlib
from types import ModuleType
from typing import Any

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


async def startup_on_running_loop(interface: ModuleType, app: Any, loop: asyncio.AbstractEventLoop) -> None:
    """What `interface.startup(app, loop)` does, for a caller running on `loop` (the embedded server)."""
    if not hasattr(app, 'lifespan'):
        interface.startup(app, loop)
    elif app.lifespan is not None:
        await app.lifespan.startup()


async def shutdown_on_running_loop(interface: ModuleType, app: Any, loop: asyncio.AbstractEventLoop) -> None:
    """What `interface.shutdown(app, loop)` does, for a caller running on `loop` (the embedded server)."""
    if not hasattr(app, 'lifespan'):
        interface.shutdown(app, loop)
    elif app.lifespan is not None:
        await app.lifespan.shutdown()
