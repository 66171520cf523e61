"""`granian._loops`: the event loop registry (`granian.loops`), its builders and refusals."""

import asyncio
import importlib.util
import sys

import granian
import pytest
from granian._loops import BuilderRegistry, Registry, build_auto_loop, close_active_loop, loops
from granian.constants import Loops
from granian.errors import ConfigurationError, FatalError

MISSING = 'granian_tests_no_such_package'


@pytest.fixture
def restore_loops():
    """Tests may register on the global `loops`: put back what was there."""
    data, missing = dict(loops._data), dict(loops._missing)
    yield loops
    loops._data.clear()
    loops._data.update(data)
    loops._missing.clear()
    loops._missing.update(missing)


@pytest.fixture
def fresh_loop():
    """Closes and unsets whatever loop a test built."""
    built = []
    yield built.append
    for loop in built:
        if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed():
            loop.close()
    asyncio.set_event_loop(None)


def test_the_registry_is_exported_and_builds_loops():
    assert granian.loops is loops
    assert isinstance(loops, BuilderRegistry)
    assert isinstance(loops, Registry)
    assert 'asyncio' in loops
    assert 'auto' in loops
    assert {'asyncio', 'auto'} <= set(loops.keys())


def test_get_builds_a_new_loop_and_makes_it_current(fresh_loop):
    first = loops.get('asyncio')
    fresh_loop(first)
    second = loops.get(Loops.asyncio)
    fresh_loop(second)
    assert isinstance(first, asyncio.AbstractEventLoop)
    assert first is not second
    assert asyncio.get_event_loop() is second
    assert not second.is_closed()


def test_register_hands_the_imported_packages_to_the_builder():
    registry = BuilderRegistry()
    received = {}

    @registry.register('stdlib', packages=['json', 'string'])
    def build(json, string):
        received.update(json=json, string=string)
        return 'a loop'

    assert build.__name__ == 'build'  # the decorator returns the builder itself
    assert 'stdlib' in registry
    assert list(registry.keys()) == ['stdlib']
    assert registry.get('stdlib') == 'a loop'
    assert received == {'json': sys.modules['json'], 'string': sys.modules['string']}


def test_a_builder_whose_package_is_missing_is_not_available():
    registry = BuilderRegistry()

    @registry.register('custom', packages=['json', MISSING])
    def build(**packages):
        raise AssertionError('never called')

    assert 'custom' not in registry
    assert list(registry.keys()) == []
    with pytest.raises(ConfigurationError, match=f"the 'custom' event loop needs the {MISSING} package"):
        registry.get('custom')


def test_registering_again_replaces_the_builder():
    registry = BuilderRegistry()
    registry.register('x')(lambda: 'old')
    registry.register('x')(lambda: 'new')
    assert registry.get('x') == 'new'


@pytest.mark.parametrize('name', ['uvloop', 'rloop'])
def test_a_loop_without_its_package_is_refused_with_the_extra(name):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f'{name} is installed here')
    assert name not in loops
    with pytest.raises(ConfigurationError) as info:
        loops.get(name)
    assert str(info.value) == f'the {name!r} event loop needs the {name} package: pip install granian[{name}]'
    with pytest.raises(ConfigurationError):
        loops.check(name)


@pytest.mark.skipif(sys.platform == 'win32', reason='winloop is available on Windows')
def test_winloop_is_refused_off_windows():
    with pytest.raises(ConfigurationError, match="the 'winloop' event loop is only available on Windows"):
        loops.get('winloop')


def test_an_unknown_loop_is_refused_with_the_choices():
    with pytest.raises(FatalError) as info:
        loops.get('nope')
    assert isinstance(info.value, ConfigurationError)
    assert str(info.value) == "unknown event loop 'nope': choose one of asyncio, auto, rloop, uvloop, winloop"


def test_auto_prefers_rloop_then_uvloop_then_asyncio(restore_loops, fresh_loop):
    auto = build_auto_loop()
    fresh_loop(auto)
    if not ({'rloop', 'uvloop', 'winloop'} & set(loops.keys())):
        assert type(auto).__module__.startswith('asyncio.')
    uv_marker, r_marker = object(), object()
    loops.register('uvloop', packages=['json'])(lambda json: uv_marker)
    assert loops.get('auto') is uv_marker
    loops.register('rloop', packages=['json'])(lambda json: r_marker)
    assert loops.get('auto') is r_marker


def test_auto_can_be_replaced(restore_loops, fresh_loop):
    # As the README shows: the policy behind `--loop auto` is the user's to change.
    built = []

    @loops.register('auto')
    def build_loop():
        loop = asyncio.new_event_loop()
        built.append(loop)
        return loop

    loop = loops.get('auto')
    fresh_loop(loop)
    assert built == [loop]


def test_the_plain_registry():
    registry = Registry()

    @registry.register('thing')
    def thing():
        return 1

    assert 'thing' in registry
    assert 'other' not in registry
    assert list(registry.keys()) == ['thing']
    assert registry.get('thing') is thing
    with pytest.raises(ConfigurationError, match="'other'"):
        registry.get('other')


def test_close_active_loop():
    loop = asyncio.new_event_loop()
    close_active_loop(loop)
    assert loop.is_closed()
    close_active_loop(loop)  # already closed: nothing to do

    running = asyncio.new_event_loop()

    async def close_while_running():
        close_active_loop(running)
        return running.is_closed()

    try:
        assert running.run_until_complete(close_while_running()) is False
    finally:
        running.close()
