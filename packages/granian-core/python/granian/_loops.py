import asyncio
import importlib.util
import sys
from typing import Callable, Dict

from .errors import ConfigurationError

LoopBuilder = Callable[[], asyncio.AbstractEventLoop]

# Loop name -> (module it needs, extra that installs it)
_PACKAGES = {'uvloop': 'uvloop', 'rloop': 'rloop', 'winloop': 'winloop'}


class LoopRegistry:
    def __init__(self) -> None:
        self._builders: Dict[str, LoopBuilder] = {}

    def register(self, name: str) -> Callable[[LoopBuilder], LoopBuilder]:
        def wrap(builder: LoopBuilder) -> LoopBuilder:
            self._builders[name] = builder
            return builder

        return wrap

    def check(self, name: str) -> None:
        """Refuses, with the reason, a loop this machine cannot build."""
        name = str(name)
        if name not in self._builders:
            raise ConfigurationError(f'unknown event loop {name!r}: choose one of {", ".join(sorted(self._builders))}')
        if name == 'winloop' and sys.platform != 'win32':
            raise ConfigurationError("the 'winloop' event loop is only available on Windows")
        package = _PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigurationError(
                f'the {name!r} event loop needs the {package} package: pip install granian[{package}]'
            )

    def get(self, name: str) -> asyncio.AbstractEventLoop:
        self.check(name)
        return self._builders[str(name)]()


loops = LoopRegistry()


@loops.register('asyncio')
def build_asyncio_loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


@loops.register('uvloop')
def build_uv_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


@loops.register('rloop')
def build_rloop() -> asyncio.AbstractEventLoop:
    import rloop

    return rloop.new_event_loop()


@loops.register('winloop')
def build_winloop() -> asyncio.AbstractEventLoop:
    import winloop

    return winloop.new_event_loop()


@loops.register('auto')
def build_auto_loop() -> asyncio.AbstractEventLoop:
    if importlib.util.find_spec('uvloop') is not None:
        return build_uv_loop()
    return build_asyncio_loop()
