"""Idle websockets cost little memory: a worker holding many open, silent websockets grows by
less than a stated budget per connection, and keeps answering HTTP meanwhile.

(benchmarks/ws_idle_memory.py measures 10,000 against granian and uvicorn; this test holds
1,000, enough to see the per-connection cost above the noise.)"""

import asyncio
import resource
from pathlib import Path

import httpx
import pytest
import websockets

from tests.server_support import HOST, wait_for

CONNECTIONS = 1000
# Measured about 20 KiB per idle websocket (an 8 KiB read buffer, the tasks, the socket's
# state); tungstenite's default 128 KiB read buffer made it 140 KiB.
BUDGET_KIB = 48


def _rss_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise AssertionError(f'no VmRSS for {pid}')


def _worker(main_pid: int) -> int:
    children = Path(f'/proc/{main_pid}/task/{main_pid}/children').read_text().split()
    assert len(children) == 1, children
    return int(children[0])


async def _hold(port: int, pid: int, url: str) -> tuple:
    sockets = []
    for _ in range(CONNECTIONS // 100):
        batch = [websockets.connect(f'ws://{HOST}:{port}/echo', ping_interval=None, max_queue=1) for _ in range(100)]
        sockets.extend(await asyncio.gather(*batch))
    for ws in sockets[::50]:
        await ws.send('x')
        assert await ws.recv() == 'x'
    await asyncio.sleep(1)
    after = _rss_kib(pid)
    status = (await asyncio.to_thread(httpx.get, f'{url}/', timeout=10)).status_code
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return after, status


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='reads /proc')
def test_idle_websockets_stay_within_the_memory_budget(start_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * CONNECTIONS:
        pytest.skip(f'needs {4 * CONNECTIONS} file descriptors')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4 * CONNECTIONS), hard))
    try:
        server = start_server('tests.apps.ws_apps:rsgi_app', interface='rsgi', ready='is serving')
        worker = wait_for(lambda: _worker(server.pid), what='the worker process')
        before = _rss_kib(worker)
        after, status = asyncio.run(_hold(server.port, worker, server.url))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert status in (200, 404)  # answered (the app's HTTP route) while the websockets are held
    per_connection = (after - before) / CONNECTIONS
    assert per_connection < BUDGET_KIB, f'{per_connection:.1f} KiB per idle websocket'
