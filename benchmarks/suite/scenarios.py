"""The scenario table: what each scenario loads, with which app and load generator, which servers take part;
the `--quick` subset; the rows a scenario measures."""

import fnmatch
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .config import DEFAULT_LOOPS, KIB, LOOPS, STATIC_FILES, VARIANT_SCENARIOS
from .servers import OURS_BASELINE, SERVERS, Row


@dataclass
class Scenario:
    name: str
    interface: str
    app: str
    description: str
    load: str = 'wrk'  # wrk | h2load | h3load | ws
    path: str = '/'
    connections: int = 64
    script: str = ''  # a wrk Lua script beside run.py
    headers: tuple = ()
    tls: bool = False
    static: bool = False
    ceiling: bool = False  # the hyper ceiling takes part (it only answers 'Hello, world!')
    needs: frozenset = frozenset()
    probe_body: Optional[bytes] = None  # POST this in the readiness probe
    expect: object = b'Hello, world!'  # the probe's expected body, or its length
    streams: int = 1  # h2load and h3load: streams (requests in flight) per connection
    # ws_load.py's messages: --payload, --size, --compression (see its docstring)
    ws_payload: str = 'x'
    ws_size: int = 64
    ws_compression: str = 'none'
    servers: List[str] = field(default_factory=list)

    @property
    def http3(self) -> bool:
        """Served over HTTP/3 (the feature `http3`): the servers add their QUIC listener, the probe checks it."""
        return 'http3' in self.needs


def multiplexed(name: str, interface: str, app: str, what: str, protocol: str, **options) -> Scenario:
    """A scenario of 16 connections x 16 streams over `protocol` (h2: h2load, http3: granian-bench-h3load)."""
    return Scenario(
        name,
        interface,
        app,
        f'{what} 16 connections x 16 streams',
        load='h3load' if protocol == 'http3' else 'h2load',
        connections=16,
        streams=16,
        needs=frozenset({protocol}),
        **options,
    )


def build_scenarios() -> Dict[str, Scenario]:
    scenarios = []
    apps = {
        'hello': {i: f'apps.{i}_hello:app' for i in ('rsgi', 'asgi', 'wsgi')},
        'echo': {'rsgi': 'apps.rsgi_echo:app', 'asgi': 'apps.asgi_echo:app', 'wsgi': 'apps.wsgi_suite:echo'},
    }
    echo_1k, upload_64k = b'x' * KIB, b'x' * 64 * KIB
    for i in ('rsgi', 'asgi', 'wsgi'):
        hello = apps['hello'][i]
        suite = f'apps.{i}_suite'
        scenarios += [
            Scenario(f'{i}-hello', i, hello, 'GET, 13-byte text, 64 connections', ceiling=True),
            Scenario(f'{i}-hello-c1', i, hello, 'concurrency sweep: 1 connection', connections=1, ceiling=True),
            Scenario(f'{i}-hello-c512', i, hello, 'concurrency sweep: 512 connections', connections=512, ceiling=True),
            Scenario(
                f'{i}-conn-close',
                i,
                hello,
                'keep-alive off: Connection: close, a new connection per request',
                headers=('Connection: close',),
                ceiling=True,
            ),
            Scenario(f'{i}-10k', i, f'{suite}:body_10k', 'GET, 10 KiB response', expect=10 * KIB),
            Scenario(f'{i}-1m', i, f'{suite}:body_1m', 'GET, 1 MiB response', expect=1024 * KIB),
            Scenario(
                f'{i}-echo-1k',
                i,
                apps['echo'][i],
                'POST 1 KiB, echoed back',
                script='post_1k.lua',
                probe_body=echo_1k,
                expect=echo_1k,
            ),
            Scenario(
                f'{i}-upload-64k',
                i,
                f'{suite}:upload',
                'POST 64 KiB, the app reads it and answers its size',
                script='post_64k.lua',
                probe_body=upload_64k,
                expect=str(len(upload_64k)).encode(),
            ),
            Scenario(f'{i}-stream', i, f'{suite}:stream', 'streamed response: 32 chunks of 1 KiB', expect=32 * KIB),
            multiplexed(f'{i}-h2', i, hello, 'HTTP/2 cleartext (prior knowledge), h2load', 'h2', ceiling=True),
            Scenario(f'{i}-https', i, hello, 'HTTPS (TLS 1.3, keep-alive), 64 connections', tls=True),
        ]
        if i != 'wsgi':
            # HTTP/3 beside HTTP/2 on TLS, the same shape as `I-h2` (16 connections x 16 streams): what QUIC costs
            # against TCP + TLS with the same multiplexing.
            scenarios += [
                multiplexed(f'{i}-h2-tls', i, hello, 'HTTP/2 over TLS 1.3 (ALPN h2), h2load', 'h2', tls=True),
                multiplexed(f'{i}-h3', i, hello, 'HTTP/3 (QUIC, TLS 1.3), granian-bench-h3load', 'http3', tls=True),
            ]
        if i == 'rsgi':
            scenarios.append(
                Scenario(
                    'rsgi-https-conn-close',
                    i,
                    hello,
                    'HTTPS, a new connection (TLS 1.3 handshake) per request: handshakes/s',
                    tls=True,
                    headers=('Connection: close',),
                )
            )
        if i != 'wsgi':
            ws_echo = f'{suite}:ws_echo'
            scenarios += [
                Scenario(
                    f'{i}-ws',
                    i,
                    ws_echo,
                    'websocket echo: 64 clients, 64-byte text messages, messages/s',
                    load='ws',
                    connections=64,
                    needs=frozenset({'ws'}),
                ),
                # The same 1 KiB JSON messages without and with permessage-deflate: what compression costs (or
                # saves) on one payload. Uncompressed, every websocket server takes part (and the ratio to granian
                # exists); compressed, only those that negotiate it (granian 2.8.7 does not: no row, no ratio).
                Scenario(
                    f'{i}-ws-1k',
                    i,
                    ws_echo,
                    'websocket echo: 64 clients, 1 KiB JSON text messages, no compression, messages/s',
                    load='ws',
                    connections=64,
                    needs=frozenset({'ws'}),
                    ws_payload='json',
                    ws_size=KIB,
                ),
                Scenario(
                    f'{i}-ws-deflate',
                    i,
                    ws_echo,
                    'websocket echo: 64 clients, 1 KiB JSON text messages, permessage-deflate negotiated, messages/s',
                    load='ws',
                    connections=64,
                    needs=frozenset({'ws', 'ws-deflate'}),
                    ws_payload='json',
                    ws_size=KIB,
                    ws_compression='deflate',
                ),
            ]
    for static_file, size in STATIC_FILES.items():
        scenarios.append(
            Scenario(
                f'static-{static_file.split(".")[0]}',
                'rsgi',
                apps['hello']['rsgi'],
                f'static file ({size // KIB} KiB) served by the server itself (--static-path-mount)',
                path=f'/static/{static_file}',
                static=True,
                needs=frozenset({'static'}),
                expect=size,
            )
        )
    for scenario in scenarios:
        if scenario.tls:
            scenario.needs = scenario.needs | {'tls'}
        scenario.servers = [
            name
            for name, server in SERVERS.items()
            if name != OURS_BASELINE  # it joins ours when asked for (rows_of)
            and scenario.interface in server.interfaces
            and scenario.needs <= server.features
            and (scenario.ceiling or not server.ceiling)
            and (not server.variant_of or any(fnmatch.fnmatch(scenario.name, p) for p in VARIANT_SCENARIOS))
        ]
    return {scenario.name: scenario for scenario in scenarios}


SCENARIOS = build_scenarios()
# `--quick`: every load generator, every server and each kind of option at least once; the granian family on the
# default loop (auto: uvloop) everywhere, on asyncio too for two hello scenarios. `--loops` replaces these loops.
QUICK = {
    'rsgi-hello': ['auto', 'asyncio'],
    'asgi-hello': ['auto', 'asyncio'],
    'wsgi-hello': ['auto'],
    'rsgi-conn-close': ['auto'],
    'rsgi-stream': ['auto'],
    'wsgi-upload-64k': ['auto'],
    'rsgi-h2': ['auto'],
    'asgi-ws': ['auto'],
    'asgi-https': ['auto'],
    'asgi-h3': ['auto'],
    'static-10k': ['auto'],
}


def rows_of(scenario: Scenario, servers_filter: Optional[set], loops: List[str], baseline: bool = False) -> List[Row]:
    """The rows a scenario measures: the granian family once per loop (loop by loop), then the others. With
    `baseline` (`--baseline`), ours-baseline follows ours wherever ours takes part, and a `--servers` that names
    ours names it too."""
    names = list(scenario.servers)
    wanted = set(servers_filter) if servers_filter else None
    if baseline and 'ours' in names:
        names.insert(names.index('ours') + 1, OURS_BASELINE)
        if wanted and 'ours' in wanted:
            wanted.add(OURS_BASELINE)
    names = [s for s in names if not wanted or s in wanted]
    rows = [Row(SERVERS[name], loop) for loop in LOOPS if loop in loops for name in names if SERVERS[name].granian]
    return rows + [Row(SERVERS[name]) for name in names if not SERVERS[name].granian]


def select(args) -> List[Scenario]:
    if args.only:
        names = [n for n in SCENARIOS if any(fnmatch.fnmatch(n, pattern) for pattern in args.only)]
        unknown = [p for p in args.only if not any(fnmatch.fnmatch(n, p) for n in SCENARIOS)]
        if unknown:
            sys.exit(f'no scenario matches {unknown}; see --list')
    elif args.quick:
        names = list(QUICK)
    else:
        names = list(SCENARIOS)
    if args.interfaces:
        names = [n for n in names if SCENARIOS[n].interface in args.interfaces]
    return [SCENARIOS[n] for n in names]


def scenario_loops(scenario: Scenario, args) -> List[str]:
    """The loops the granian family runs `scenario` on: `--loops`, else those of --quick, else the default."""
    if args.loops:
        return args.loops
    if args.quick and scenario.name in QUICK:
        return QUICK[scenario.name]
    return DEFAULT_LOOPS
