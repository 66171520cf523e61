"""Websocket load client: N clients, each sending M messages and awaiting each echo.

    python ws_load.py --url ws://127.0.0.1:8000/ [--clients 16] [--messages 1000] [--size 64]
                      [--payload x|json] [--compression none|deflate]

Every client connects first; once all are connected they start together, each sending a
text message and waiting for its echo before sending the next one. Prints one JSON object:
the messages echoed per second over the whole run (from the common start to the last echo),
the round-trip latency percentiles, the errors (failed connections, wrong or missing echoes),
and the close handshakes slower than 1 s (timed apart, not in the rate). Runs in the suite's tools env (`websockets`, and uvloop when installed). The run is
bounded by --timeout: clients still running then are cancelled and counted as errors.

Payloads: `x` (the default) is --size times 'x', one message for every send; `json` is a pool of
distinct JSON texts of exactly --size bytes each (a page of events as an API pushes them: the same
field names in every record, values from small vocabularies), deterministic, which each client
cycles through from an offset of its own, so compression meets realistic, not identical, messages.
`--compression deflate` offers permessage-deflate (RFC 7692) with the client's default settings; a
connection on which the server did not accept it sends nothing and counts as an error, and so does
one on which it was accepted but no echo came back compressed; `uncompressed` in the output says on
how many connections either happened (the suite fails such a run), `compressed_replies` how many
echoes came compressed: a server that silently does not compress cannot post a rate for compressed
messages.
"""

import argparse
import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect

CLOSE_TIMEOUT = 2.0  # seconds the client waits for the server to end the connection after the close frames
SLOW_CLOSE = 1.0  # a close handshake slower than this is counted
DEFLATE = 'permessage-deflate'
# Distinct `json` messages: a client sends 63 others before one comes again, more than a deflate window (at most
# 32 KiB) holds, so no message is compressed against an exact copy of itself.
JSON_POOL = 64


def percentile(sorted_values: list, fraction: float) -> float:
    if not sorted_values:
        return float('nan')
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def token(seed: int, length: int) -> str:
    """An opaque token (a pagination cursor, a session id): pseudo-random characters, the least compressible part."""
    alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    state, chars = seed, []
    for _ in range(length):
        state = (state * 1103515245 + 12345) % 2**31  # a fixed LCG: the same messages on every run
        chars.append(alphabet[state >> 16 & 63])
    return ''.join(chars)


def json_messages(size: int, count: int) -> list:
    """`count` distinct JSON texts of exactly `size` bytes (ASCII): a page of events with the same fields and values
    from small vocabularies, as a feed, a chat or a dashboard pushes them, an opaque cursor, and a note of words
    that pads each text to `size`."""
    kinds = ('page_view', 'click', 'add_to_cart', 'search', 'login', 'checkout')
    paths = ('/home', '/products', '/products/item', '/cart', '/search', '/account/orders')
    agents = ('Mozilla/5.0 (X11; Linux x86_64)', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)', 'okhttp/4.12.0')
    words = ('the', 'order', 'was', 'shipped', 'to', 'your', 'address', 'and', 'will', 'arrive', 'soon', 'today')
    messages = []
    for m in range(count):
        page, n = {'page': m, 'more': True, 'cursor': token(m + 1, 24), 'note': '', 'events': []}, m * 7
        while True:
            event = {
                'id': 100000 + n,
                'type': kinds[n % len(kinds)],
                'ts': f'2026-11-28T12:{n // 60 % 60:02d}:{n % 60:02d}.{n * 37 % 1000:03d}Z',
                'user': {'id': 4000 + n * 13 % 97, 'name': f'user{n * 13 % 97:03d}', 'premium': n % 5 == 0},
                'path': f'{paths[n % len(paths)]}/{n * 31 % 500}',
                'agent': agents[n % len(agents)],
                'duration_ms': n * 53 % 900,
            }
            if len(json.dumps({**page, 'events': [*page['events'], event]}, separators=(',', ':'))) > size:
                break
            page['events'].append(event)
            n += 1
        pad = size - len(json.dumps(page, separators=(',', ':')))
        if pad < 0:
            raise ValueError(f'--payload json needs --size of at least {size - pad}')
        note = ' '.join(words[(m + i) % len(words)] for i in range(pad))
        page['note'] = note[:pad]
        text = json.dumps(page, separators=(',', ':'))
        assert len(text) == size
        messages.append(text)
    return messages


def payloads(kind: str, size: int) -> list:
    """The messages each client sends in turn."""
    return json_messages(size, JSON_POOL) if kind == 'json' else ['x' * size]


def count_compressed(extension, stats: dict) -> list:
    """Counts the messages that arrive compressed (RSV1 set on their first frame) on one connection, in the returned
    one-item list and in stats['compressed_replies']: websockets decodes them and keeps no count. A server may send
    any message uncompressed, so a negotiated extension alone does not show that it compresses."""
    decode, counted = extension.decode, [0]

    def counting(frame, *, max_size=None):
        if frame.rsv1:
            counted[0] += 1
            stats['compressed_replies'] += 1
        return decode(frame, max_size=max_size)

    extension.decode = counting
    return counted


async def client(
    url: str, messages: int, pool: list, offset: int, compression, start: asyncio.Event, ready, stats: dict
) -> None:
    counted = False
    try:
        ws = await connect(url, compression=compression, max_size=None, open_timeout=10, close_timeout=CLOSE_TIMEOUT)
        try:
            counted = True
            ready()
            compressed = None
            if compression:
                deflate = [ext for ext in ws.protocol.extensions if ext.name == DEFLATE]
                # Asked for, not negotiated: this connection sends nothing and counts as an error.
                if not deflate:
                    stats['uncompressed'] += 1
                    raise RuntimeError(f'{DEFLATE} offered, the server did not accept it')
                compressed = count_compressed(deflate[0], stats)
            await start.wait()
            latencies = stats['latencies']
            for seq in range(messages):
                payload = pool[(offset + seq) % len(pool)]
                sent = time.perf_counter()
                await ws.send(payload)
                reply = await ws.recv()
                latencies.append(time.perf_counter() - sent)
                if reply != payload:
                    stats['errors'] += 1
                stats['echoed'] += 1
            stats['last_echo'] = max(stats['last_echo'], time.perf_counter())
            # Negotiated, never used: as good as not negotiated.
            if compressed is not None and messages and not compressed[0]:
                stats['uncompressed'] += 1
                raise RuntimeError(f'{DEFLATE} negotiated, no echo came compressed')
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
    stats['uncompressed'], stats['compressed_replies'] = 0, 0
    start = asyncio.Event()
    connected = 0
    all_connected = asyncio.Event()

    def ready() -> None:
        nonlocal connected
        connected += 1
        if connected == args.clients:
            all_connected.set()

    pool = payloads(args.payload, args.size)
    compression = 'deflate' if args.compression == 'deflate' else None
    tasks = [
        asyncio.ensure_future(client(args.url, args.messages, pool, i, compression, start, ready, stats))
        for i in range(args.clients)
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
        'payload': args.payload,
        'compression': args.compression,
        'uncompressed': stats['uncompressed'],
        'compressed_replies': stats['compressed_replies'],
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
    parser.add_argument(
        '--payload', choices=['x', 'json'], default='x', help="x: --size times 'x'; json: compressible JSON texts"
    )
    parser.add_argument(
        '--compression',
        choices=['none', 'deflate'],
        default='none',
        help='deflate: offer permessage-deflate, and count a connection where the server did not accept it as an error',
    )
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
