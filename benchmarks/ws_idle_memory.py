"""Memory of idle websockets: one worker holds N open, silent websockets; how much each costs.

Starts a server (ours, granian from PyPI, or uvicorn, from the envs the suite installs under
benchmarks/.envs) with the ASGI websocket echo app of the suite, reads the worker's resident
memory, opens N websockets from this process (asyncio, the `websockets` client), waits for the
memory to settle, reads it again, checks that the worker still answers HTTP, and prints
(RSS after - RSS before) / N. Clients offer permessage-deflate (the `websockets` default; ours
and uvicorn take it, granian 2.8.7 does not). One connection in a hundred sends a message before
resting; `--all-send` makes every one send one (with compression, what a websocket costs at rest
after it was used). Run with this repository's env:

    uv run --no-sync python benchmarks/ws_idle_memory.py --server ours --connections 10000 [--all-send]
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets

HERE = Path(__file__).resolve().parent
ENVS = HERE / '.envs'
APP = 'apps.asgi_suite:ws_echo'


def command(server: str, port: int) -> list:
    if server == 'uvicorn':
        return [str(ENVS / 'uvicorn' / 'bin' / 'uvicorn'), '--port', str(port), '--log-level', 'warning', APP]
    env = {'ours': 'ours', 'granian': 'granian-pypi'}[server]
    return [str(ENVS / env / 'bin' / 'granian'), '--interface', 'asgi', '--port', str(port), APP]


def rss_kib(pid: int) -> int:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError(f'no VmRSS for {pid}')


def worker_of(pid: int) -> int:
    """The process serving: a granian worker (the main process's child), or uvicorn itself."""
    children = Path(f'/proc/{pid}/task/{pid}/children').read_text().split()
    return int(children[0]) if children else pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_http(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('the server did not answer')


async def measure(port: int, worker: int, count: int, settle: float, every: int) -> dict:
    before = rss_kib(worker)
    sockets = []
    for start in range(0, count, 500):
        batch = [
            websockets.connect(f'ws://127.0.0.1:{port}/', ping_interval=None, open_timeout=60, max_queue=1)
            for _ in range(min(500, count - start))
        ]
        sockets.extend(await asyncio.gather(*batch))
    # Some of them (every `every`-th) send a message: the app ran for those, then every connection rests.
    for ws in sockets[::every]:
        await ws.send('{"event": "joined", "room": "lobby"}')
        await ws.recv()
    await asyncio.sleep(settle)
    after = rss_kib(worker)
    started = time.monotonic()
    await asyncio.to_thread(lambda: urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=10).read())
    http_ms = (time.monotonic() - started) * 1000
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        'connections': len(sockets),
        'rss_before_mib': round(before / 1024, 1),
        'rss_after_mib': round(after / 1024, 1),
        'kib_per_connection': round((after - before) / len(sockets), 2),
        'http_answer_ms_while_held': round(http_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--server', choices=['ours', 'granian', 'uvicorn'], required=True)
    parser.add_argument('--connections', type=int, default=10_000)
    parser.add_argument('--settle', type=float, default=3.0)
    parser.add_argument('--all-send', action='store_true', help='every connection sends a message before resting')
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections * 2 + 1024), hard))
    port = free_port()
    proc = subprocess.Popen(
        command(args.server, port), cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )
    try:
        wait_http(port)
        worker = worker_of(proc.pid)
        time.sleep(1)
        result = {
            'server': args.server,
            'all_send': args.all_send,
            **asyncio.run(
                measure(
                    port, worker, args.connections, args.settle, 1 if args.all_send else max(1, args.connections // 100)
                )
            ),
        }
        print(json.dumps(result))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == '__main__':
    sys.exit(main())
