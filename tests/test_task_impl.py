"""`--task-impl asyncio|rust`: asyncio semantics inside handlers, whichever runs the app."""

import httpx
import pytest

from .rsgi_support import wait_for
from .server_support import ServerPool

IMPLS = ['asyncio', 'rust']


@pytest.fixture(
    scope='module', params=[(impl, iface) for impl in IMPLS for iface in ('rsgi', 'asgi')], ids=lambda p: '-'.join(p)
)
def server(request, tmp_path_factory):
    impl, iface = request.param
    with ServerPool(tmp_path_factory.mktemp(f'{impl}-{iface}')) as pool:
        yield pool.start(f'tests.apps.task_apps:{iface}_app', '--task-impl', impl, interface=iface)


def probe(client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_current_task_is_stable_across_awaits(client):
    assert probe(client, '/current-task') == {'present': True, 'same': True, 'done': False}


def test_sniffio_detects_asyncio(client):
    assert probe(client, '/sniffio') == {'library': 'asyncio'}


def test_wait_for_times_out(client):
    assert probe(client, '/wait-for') == {'timed_out': True}


def test_asyncio_timeout_context(client):
    # The timeout's own cancel request is taken back (uncancel), so nothing is left pending.
    assert probe(client, '/timeout') == {'timed_out': True, 'cancelling': 0}


def test_cancel_while_suspended_delivers_message(client):
    assert probe(client, '/self-cancel') == {'cancelled': True, 'message': 'stop it'}


def test_cancel_while_running_hits_next_await(client):
    assert probe(client, '/cancel-while-running') == {'cancelled': True}


def test_child_tasks_and_gather(client):
    assert probe(client, '/children') == {'gathered': [0, 1, 2, 3, 4], 'child': 'child'}


def test_shield(client):
    assert probe(client, '/shield') == {'value': 'shielded'}


def test_context_variables_do_not_leak_between_requests(client):
    for _ in range(3):
        assert probe(client, '/contextvar') == {'seen': None, 'kept': 'set-by-an-earlier-request'}


def test_done_callbacks_run_after_the_handler(client):
    assert probe(client, '/done-callback') == {'registered': True}
    wait_for(lambda: probe(client, '/recorded').get('done_callback'), what='the done callback')
    assert probe(client, '/recorded')['done_callback'] == {'done': True}


def test_app_exception_is_a_500_and_a_log_line(server, client):
    # The server is the module's: only what it logs after this request counts.
    mark = server.mark()
    assert client.get('/boom').status_code == 500
    server.wait_log('boom from the app', since=mark)
    assert probe(client, '/still-serving') == {'path': '/still-serving'}


def test_starlette_with_anyio_threads_under_rust_tasks(start_server):
    # anyio reaches into the current task (its loop, callbacks, cancel state) for thread offload.
    server = start_server('tests.apps.starlette_app:app', '--task-impl', 'rust', interface='asgi')
    data = b'x' * (256 * 1024)
    files = {'file': ('blob.bin', data, 'application/octet-stream')}
    response = httpx.post(f'{server.url}/upload', data={'field': 'value'}, files=files, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()['size'] == len(data)
