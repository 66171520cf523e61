"""ASGI lifespan: startup and shutdown, failures, apps without lifespan, and `asginl`."""

import signal

import pytest

from .asgi_support import ASGI_APP, assert_still_serving, http_client
from .rsgi_support import wait_for

APPS = 'tests.apps.asgi_app'


def lifespan_warnings(log: str) -> list:
    return [line for line in log.splitlines() if 'lifespan' in line.lower()]


def scope_of(url: str, proto: str) -> dict:
    with http_client(url, proto) as c:
        response = c.get('/scope')
        assert response.status_code == 200
        assert response.http_version == c.expected_version
        return response.json()


def test_startup_state_and_shutdown_at_sigterm(start_server, tmp_path):
    markers = tmp_path / 'markers'
    markers.mkdir()
    srv = start_server(ASGI_APP, interface='asgi', env={'ASGI_TEST_MARKERS': str(markers)})
    wait_for(lambda: (markers / 'startup').exists(), what='the startup marker')
    for proto in ('h1', 'h2'):
        scope = scope_of(srv.url, proto)
        assert scope['state'] == {'resource': {'name': 'database', 'connected': True}, 'counter': 0}
    assert not (markers / 'shutdown').exists()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=20) == 0, srv.log
    assert (markers / 'shutdown').read_text() == 'stopped'
    assert 'Traceback' not in srv.log
    assert not lifespan_warnings(srv.log), srv.log


def test_startup_failed_exits_non_zero_with_message(start_server):
    srv = start_server(f'{APPS}:failing_startup', interface='asgi', ready=None)
    code = srv.wait(timeout=30)
    assert code != 0, srv.log
    assert 'cannot reach the database (marker-4711)' in srv.log


def test_shutdown_failed_is_logged(start_server):
    srv = start_server(f'{APPS}:failing_shutdown', interface='asgi')
    assert_still_serving(srv.url)
    srv.signal(signal.SIGTERM)
    srv.wait(timeout=20)
    assert 'could not flush (marker-0815)' in srv.log


def test_app_without_lifespan_is_served_with_one_warning(start_server):
    srv = start_server(f'{APPS}:no_lifespan', interface='asgi')
    for proto in ('h1', 'h2'):
        scope = scope_of(srv.url, proto)
        assert scope['type'] == 'http'
        assert scope['asgi'] == {'version': '3.0', 'spec_version': '2.3'}
    assert_still_serving(srv.url)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=20) == 0, srv.log
    warnings = lifespan_warnings(srv.log)
    assert len(warnings) == 1, srv.log
    assert 'WARN' in warnings[0].upper()
    assert 'Traceback' not in srv.log


@pytest.mark.parametrize('target', [ASGI_APP, f'{APPS}:no_lifespan'])
def test_asginl_never_calls_lifespan(start_server, tmp_path, target):
    markers = tmp_path / 'markers'
    markers.mkdir()
    srv = start_server(target, interface='asginl', env={'ASGI_TEST_MARKERS': str(markers)})
    for proto in ('h1', 'h2'):
        scope = scope_of(srv.url, proto)
        assert scope['type'] == 'http'
        # Without a lifespan there is no state to copy into the scope.
        assert scope['state'] is None
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=20) == 0, srv.log
    assert not (markers / 'lifespan-called').exists()
    assert not (markers / 'startup').exists()
    assert not (markers / 'shutdown').exists()
    assert not lifespan_warnings(srv.log), srv.log
