"""Idle websockets cost little memory: a worker holding many open, silent websockets grows by
less than a stated budget per connection, and keeps answering HTTP meanwhile. The `websockets`
client offers compression, so a websocket that sent a message has had a compressor (about
200 KiB): the worker frees it when the websocket rests and gives the pages back.

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
# (every n-th websocket sends a message, how long they all rest after, budget in KiB per websocket.)
# Measured about 20 KiB when few sent (an 8 KiB read buffer, the tasks, the socket's state;
# tungstenite's default 128 KiB read buffer made it 140 KiB), and about 54 KiB when all did (the
# inflater's window and the app's state for a websocket it has served; 157 KiB while the
# compressors' pages stayed in the worker's heap).
CASES = {'few-sent': (50, 1.0, 48), 'all-sent': (1, 4.5, 96)}


def _rss_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise AssertionError(f'no VmRSS for {pid}')


def _worker(main_pid: int) -> int:
    children = Path(f'/proc/{main_pid}/task/{main_pid}/children').read_text().split()
    assert len(children) == 1, children
    return int(children[0])


async def _hold(port: int, pid: int, url: str, every: int, rest: float) -> tuple:
    sockets = []
    for _ in range(CONNECTIONS // 100):
        batch = [websockets.connect(f'ws://{HOST}:{port}/echo', ping_interval=None, max_queue=1) for _ in range(100)]
        sockets.extend(await asyncio.gather(*batch))
    for ws in sockets[::every]:
        await ws.send('{"event": "joined", "room": "lobby"}')
        assert await ws.recv() == '{"event": "joined", "room": "lobby"}'
    await asyncio.sleep(rest)
    after = _rss_kib(pid)
    status = (await asyncio.to_thread(httpx.get, f'{url}/', timeout=10)).status_code
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return after, status


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='reads /proc')
@pytest.mark.parametrize('case', sorted(CASES))
def test_idle_websockets_stay_within_the_memory_budget(start_server, case):
    every, rest, budget_kib = CASES[case]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * CONNECTIONS:
        pytest.skip(f'needs {4 * CONNECTIONS} file descriptors')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4 * CONNECTIONS), hard))
    try:
        server = start_server('tests.apps.ws_apps:rsgi_app', interface='rsgi', ready='is serving')
        worker = wait_for(lambda: _worker(server.pid), what='the worker process')
        before = _rss_kib(worker)
        after, status = asyncio.run(_hold(server.port, worker, server.url, every, rest))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert status in (200, 404)  # answered (the app's HTTP route) while the websockets are held
    per_connection = (after - before) / CONNECTIONS
    assert per_connection < budget_kib, f'{per_connection:.1f} KiB per idle websocket'
