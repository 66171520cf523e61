"""Websocket load client: N clients, each sending M messages and awaiting each echo.

    python ws_load.py --url ws://127.0.0.1:8000/ [--clients 16] [--messages 1000] [--size 64]

Every client connects first; once all are connected they start together, each sending a
text message and waiting for its echo before sending the next one. Prints one JSON object:
the messages echoed per second over the whole run (from the common start to the last echo),
the round-trip latency percentiles, the errors (failed connections, wrong or missing echoes),
and the close handshakes slower than 1 s (timed apart, not in the rate). Runs in the suite's tools env (`websockets`, and uvloop when installed). The run is
bounded by --timeout: clients still running then are cancelled and counted as errors.
"""

import argparse
import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect

CLOSE_TIMEOUT = 2.0  # seconds the client waits for the server to end the connection after the close frames
SLOW_CLOSE = 1.0  # a close handshake slower than this is counted


def percentile(sorted_values: list, fraction: float) -> float:
    if not sorted_values:
        return float('nan')
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def client(url: str, messages: int, payload: str, start: asyncio.Event, ready, stats: dict) -> None:
    counted = False
    try:
        ws = await connect(url, compression=None, max_size=None, open_timeout=10, close_timeout=CLOSE_TIMEOUT)
        try:
            counted = True
            ready()
            await start.wait()
            latencies = stats['latencies']
            for _ in range(messages):
                sent = time.perf_counter()
                await ws.send(payload)
                reply = await ws.recv()
                latencies.append(time.perf_counter() - sent)
                if reply != payload:
                    stats['errors'] += 1
                stats['echoed'] += 1
            stats['last_echo'] = max(stats['last_echo'], time.perf_counter())
        finally:
            # The client starts the close handshake; the server answers and closes the TCP connection.
            closing = time.perf_counter()
            await ws.close()
            took = time.perf_counter() - closing
            stats['close_max'] = max(stats['close_max'], took)
            if took > SLOW_CLOSE:
                stats['slow_closes'] += 1
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
        stats['errors'] += 1
        stats['failures'].append(f'{type(exc).__name__}: {exc}'[:200])
        if not counted:
            ready()  # a client that could not connect does not hold the others back


async def run(args) -> dict:
    stats = {'latencies': [], 'echoed': 0, 'errors': 0, 'failures': [], 'last_echo': 0.0, 'close_max': 0.0}
    stats['slow_closes'] = 0
    start = asyncio.Event()
    connected = 0
    all_connected = asyncio.Event()

    def ready() -> None:
        nonlocal connected
        connected += 1
        if connected == args.clients:
            all_connected.set()

    payload = 'x' * args.size
    tasks = [
        asyncio.ensure_future(client(args.url, args.messages, payload, start, ready, stats))
        for _ in range(args.clients)
    ]
    began = time.perf_counter()
    try:
        await asyncio.wait_for(all_connected.wait(), timeout=args.timeout)
        began = time.perf_counter()
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.timeout)
    except asyncio.TimeoutError:
        stats['failures'].append(f'timed out after {args.timeout} s')
        stats['errors'] += sum(1 for task in tasks if not task.done())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Messages/s from the common start to the last echo: the close handshakes are timed apart.
    elapsed = (stats['last_echo'] or time.perf_counter()) - began
    latencies = sorted(stats['latencies'])
    return {
        'clients': args.clients,
        'messages_per_client': args.messages,
        'size': args.size,
        'echoed': stats['echoed'],
        'seconds': round(elapsed, 4),
        'rate': stats['echoed'] / elapsed if elapsed > 0 else 0.0,
        'p50_ms': percentile(latencies, 0.50) * 1000,
        'p99_ms': percentile(latencies, 0.99) * 1000,
        'max_ms': (latencies[-1] if latencies else float('nan')) * 1000,
        'errors': stats['errors'],
        'slow_closes': stats['slow_closes'],
        'close_max_ms': stats['close_max'] * 1000,
        'failures': stats['failures'][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', required=True, help='ws://127.0.0.1:PORT/PATH (loopback only)')
    parser.add_argument('--clients', type=int, default=16)
    parser.add_argument('--messages', type=int, default=1000, help='messages per client')
    parser.add_argument('--size', type=int, default=64, help='bytes per message (text)')
    parser.add_argument('--timeout', type=float, default=120, help='bound of the whole run, in seconds')
    args = parser.parse_args()
    if not args.url.startswith(('ws://127.', 'ws://localhost', 'ws://[::1]')):
        sys.exit('ws_load.py talks to loopback addresses only')
    try:
        import uvloop  # an optional speed-up of the client

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(run(args))))


if __name__ == '__main__':
    main()
