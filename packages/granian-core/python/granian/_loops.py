"""Event loop implementations, picked by name (`--loop`).

`loops` maps each name to a builder. A builder registered with `packages` receives those
packages, imported, as keyword arguments; when one of them cannot be imported the name is
not available (`name in loops` is False) and asking for it is refused with the package to
install.
"""

import asyncio
import importlib
import sys
from enum import Enum
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .errors import ConfigurationError

Builder = Callable[..., Any]
LoopBuilder = Callable[..., asyncio.AbstractEventLoop]

# The extra of the `granian` distribution that installs the package a loop needs.
_EXTRAS = {'uvloop': 'uvloop', 'rloop': 'rloop', 'winloop': 'winloop'}
# Loops that exist for one platform only.
_PLATFORMS = {'winloop': ('win32', 'Windows')}


def _name(key: Any) -> str:
    return key.value if isinstance(key, Enum) else str(key)


class Registry:
    """Implementations by name: `@registry.register(name)` adds one, `registry.get(name)` returns it."""

    __slots__ = ('_data',)

    def __init__(self) -> None:
        self._data: Dict[str, Any] = {}

    def __contains__(self, key: str) -> bool:
        return _name(key) in self._data

    def keys(self) -> Iterable[str]:
        return self._data.keys()

    def register(self, key: str) -> Callable[[Builder], Builder]:
        def wrap(builder: Builder) -> Builder:
            self._data[_name(key)] = builder
            return builder

        return wrap

    def get(self, key: str) -> Any:
        try:
            return self._data[_name(key)]
        except KeyError:
            raise ConfigurationError(
                f'unknown implementation {_name(key)!r}: choose one of {", ".join(sorted(self._data))}'
            ) from None


class BuilderRegistry(Registry):
    """Event loop builders: `get(name)` builds a new loop, and sets it as the current one."""

    __slots__ = ('_missing',)

    def __init__(self) -> None:
        super().__init__()
        self._data: Dict[str, Tuple[LoopBuilder, Dict[str, ModuleType]]] = {}
        # Names registered with a package that cannot be imported here -> that package.
        self._missing: Dict[str, str] = {}

    def register(self, key: str, packages: Optional[List[str]] = None) -> Callable[[LoopBuilder], LoopBuilder]:
        name = _name(key)

        def wrap(builder: LoopBuilder) -> LoopBuilder:
            modules: Dict[str, ModuleType] = {}
            for package in packages or ():
                try:
                    modules[package] = importlib.import_module(package)
                except ImportError:
                    if name not in self._data:
                        self._missing[name] = package
                    return builder
            self._data[name] = (builder, modules)
            self._missing.pop(name, None)
            return builder

        return wrap

    def check(self, key: str) -> None:
        """Refuses, with the reason, a loop this machine cannot build."""
        name = _name(key)
        if name not in self._data and name not in self._missing:
            known = ', '.join(sorted({*self._data, *self._missing}))
            raise ConfigurationError(f'unknown event loop {name!r}: choose one of {known}')
        platform = _PLATFORMS.get(name)
        if platform and sys.platform != platform[0]:
            raise ConfigurationError(f'the {name!r} event loop is only available on {platform[1]}')
        if name in self._data:
            return
        package = self._missing[name]
        extra = _EXTRAS.get(name)
        if extra:
            raise ConfigurationError(
                f'the {name!r} event loop needs the {package} package: pip install granian[{extra}]'
            )
        raise ConfigurationError(f'the {name!r} event loop needs the {package} package, which cannot be imported')

    def get(self, key: str) -> asyncio.AbstractEventLoop:
        self.check(key)
        builder, modules = self._data[_name(key)]
        return builder(**modules)


loops = BuilderRegistry()


def _activate(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    asyncio.set_event_loop(loop)
    return loop


@loops.register('asyncio')
def build_asyncio_loop() -> asyncio.AbstractEventLoop:
    return _activate(asyncio.new_event_loop())


@loops.register('uvloop', packages=['uvloop'])
def build_uv_loop(uvloop: ModuleType) -> asyncio.AbstractEventLoop:
    return _activate(uvloop.new_event_loop())


@loops.register('winloop', packages=['winloop'])
def build_winloop(winloop: ModuleType) -> asyncio.AbstractEventLoop:
    return _activate(winloop.new_event_loop())


@loops.register('rloop', packages=['rloop'])
def build_rloop(rloop: ModuleType) -> asyncio.AbstractEventLoop:
    return _activate(rloop.new_event_loop())


# The first of these that is installed; asyncio otherwise.
_AUTO_PREFERENCE = ('rloop', 'uvloop', 'winloop')


@loops.register('auto')
def build_auto_loop() -> asyncio.AbstractEventLoop:
    for name in _AUTO_PREFERENCE:
        if name in loops:
            return loops.get(name)
    return loops.get('asyncio')


def close_active_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Closes a loop that is done with: one still running or already closed is left alone."""
    if loop.is_running() or loop.is_closed():
        return
    loop.close()
