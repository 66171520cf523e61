"""Benchmark suite: this server against the `granian` release, uvicorn, hypercorn, gunicorn and a
no-Python hyper ceiling, per interface (RSGI, ASGI, WSGI) and scenario.

Every server runs from its own virtual env under benchmarks/.envs (ours as a release build of
packages/*, the peers pinned from PyPI), 1 worker, pinned to one CPU with `taskset`; the load
generator (wrk for HTTP/1.1, h2load for HTTP/2, ws_load.py for websockets) is pinned to another.
Each run starts a fresh server, warms it up, measures, reads the peak RSS of the server's process
tree and stops it. Rounds are interleaved (A B C A B C ...), the median of each row is quoted
and ratios to the `granian` release are computed within each round.

Loops: the granian family (ours, the release and their variants) runs each scenario once per loop
of `--loops` (default `auto asyncio`), both servers on the same loop, one row each (`ours@auto`,
`granian@auto`, `ours@asyncio`, ...); ratios are between rows of the same loop. `auto` is
`--loop auto` in envs that hold uvloop and not rloop, so it runs uvloop, as `granian[uvloop]`
users do: the headline. `asyncio` is `--loop asyncio` in the same envs; `rloop` is `--loop rloop`
in envs of their own (.envs/ours-rloop, .envs/granian-pypi-rloop). LOOPS is the one place that
maps a loop to its `--loop` argument and env. The other servers run once, on their own loop
(uvicorn: uvloop, hypercorn: asyncio). Our build is made once, as wheels in .envs/ours-wheels,
and installed into each env of ours.

    python benchmarks/run.py                  # everything, 3 rounds of 10 s, auto + asyncio (about 2.5 h)
    python benchmarks/run.py --quick          # smoke check: a subset, 1 round of 2 s (about 3 min)
    python benchmarks/run.py --list           # the scenarios, their servers, the loops of --quick
    python benchmarks/run.py --only 'asgi-*' --servers ours granian --rounds 5 --loops auto
    python benchmarks/run.py --from-json benchmarks/results/X.json   # README table and chart again

Results: benchmarks/results/<date>.json (every run records its loop) and <date>.png; the table
between the bench markers of benchmarks/README.md, one section per loop, auto (uvloop) first (a
quick run never replaces the table of a full run). Results files from before the loop dimension
have no loop: their granian rows ran asyncio and render as such.
"""

import argparse
import atexit
import contextlib
import fnmatch
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENVS = HERE / '.envs'
LOGS = ENVS / 'logs'
OURS_WHEELS = ENVS / 'ours-wheels'
RESULTS = HERE / 'results'
README = HERE / 'README.md'
CEILING_BIN = ROOT / 'target' / 'release' / 'granian-bench-ceiling'
MARK_START = '<!-- bench:start -->'
MARK_END = '<!-- bench:end -->'

PEER_VERSION = '2.8.7'
UVLOOP, RLOOP = 'uvloop==0.23.0', 'rloop==0.5.0'  # the pins of the `uvloop` and `rloop` extras of our pyproject.toml
# Pinned peers, each in its own env. The versions are recorded in the results (`uv pip freeze`).
PEER_ENVS = {
    'granian-pypi': [f'granian=={PEER_VERSION}'],
    'uvicorn': ['uvicorn==0.54.0', UVLOOP, 'httptools==0.9.0', 'websockets==15.0.1'],
    'hypercorn': ['hypercorn==0.18.0'],
    'gunicorn': ['gunicorn==27.0.1'],
}
# The suite's own tools: the websocket load client, certificates, the chart.
TOOLS_ENV = ['websockets==15.0.1', UVLOOP, 'trustme==1.2.1', 'matplotlib==3.11.2']
OUR_PACKAGES = ['granian-core', 'granian-rsgi', 'granian-asgi', 'granian-wsgi', 'granian-cli']
GUNICORN_THREADS = 8
CARGO_NAMES = {'cargo', 'rustc', 'cargo-clippy', 'clippy-driver', 'rustdoc', 'maturin'}

KIB = 1024
STATIC_FILES = {'10k.bin': 10 * KIB, '100k.bin': 100 * KIB}
# Variants of a server (an option switched on) take part only in the hello-world scenarios.
VARIANT_SCENARIOS = ('*-hello',)


@dataclass(frozen=True)
class Loop:
    """An event loop the granian family runs on (`--loops`)."""

    arg: str  # granian's `--loop`
    env_suffix: str  # the env it runs in: the server's env name + this suffix (a key of LOOP_ENV_PACKAGES)
    title: str  # of its section in the README table


# The one place that knows what a loop means: granian's `--loop` argument and the env it runs in. Every server
# of the granian family (ours, the release, their variants) runs each scenario once per loop of `--loops`, in
# this order (the README's sections too). `auto` is what a `granian[uvloop]` user runs: granian's `auto` takes
# rloop first when it is installed, then uvloop, so its envs hold uvloop and never rloop. `asyncio` runs in the
# same envs (both granians import the loop packages they find at start, and use only the one asked for); `rloop`
# has envs of its own, the same plus rloop.
LOOPS = {
    'auto': Loop('auto', '', 'Default loop: `--loop auto` with uvloop installed (runs uvloop), as `granian[uvloop]`'),
    'asyncio': Loop('asyncio', '', '`--loop asyncio`'),
    'rloop': Loop('rloop', '-rloop', '`--loop rloop` (rloop installed)'),
}
# What the granian-family envs hold besides the server, by env suffix.
LOOP_ENV_PACKAGES = {'': [UVLOOP], '-rloop': [RLOOP]}
DEFAULT_LOOPS = ['auto', 'asyncio']
# Results files from before the loop dimension ran the granian family with `--loop asyncio` only.
LEGACY_LOOP = 'asyncio'


# -- servers ----------------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a server command needs besides the scenario: the port, the certificates, the static dir."""

    port: int
    cert: Path
    key: Path
    static_dir: Path


@dataclass
class Server:
    name: str
    env: str  # env dir under .envs ('' for the ceiling); the granian family's envs per loop add LOOPS' env_suffix
    interfaces: frozenset
    features: frozenset  # h2, ws, tls, static
    command: Callable  # (Row, Scenario, Ctx) -> argv, without the taskset prefix
    label: str = ''
    ceiling: bool = False
    extra_args: tuple = ()  # a variant: the same server with these options
    variant_of: str = ''
    granian: bool = False  # of the granian family: one row per loop of `--loops`
    loop: Optional[str] = None  # the others: the loop they always run, as recorded in the results


@dataclass(frozen=True)
class Row:
    """What one line of the results measures: a server, and for the granian family the loop it runs."""

    server: Server
    loop: str = ''  # a key of LOOPS for the granian family, '' for the others

    @property
    def key(self) -> str:
        """Its name in the results: `ours@auto`, `granian@asyncio`, `uvicorn`."""
        return f'{self.server.name}@{self.loop}' if self.loop else self.server.name

    @property
    def env(self) -> str:
        return self.server.env + LOOPS[self.loop].env_suffix if self.loop else self.server.env

    @property
    def env_packages(self) -> List[str]:
        """What its env holds besides the server's own packages."""
        return LOOP_ENV_PACKAGES[LOOPS[self.loop].env_suffix] if self.loop else []

    @property
    def loop_run(self) -> Optional[str]:
        """The loop recorded with each run."""
        return self.loop or self.server.loop

    def bin(self, name: str) -> str:
        return str(ENVS / self.env / 'bin' / name)


def parse_key(key: str) -> tuple:
    """(server, loop) of a row's name; the granian family of an older results file ran asyncio."""
    name, _, loop = key.partition('@')
    if not loop and name in SERVERS and SERVERS[name].granian:
        loop = LEGACY_LOOP
    return name, loop


def _granian_cmd(row: Row, scenario: 'Scenario', ctx: Ctx) -> list:
    cmd = [
        row.bin('granian'), '--interface', scenario.interface, '--host', '127.0.0.1', '--port', str(ctx.port),
        '--loop', LOOPS[row.loop].arg, '--workers', '1', '--log-level', 'warning', '--no-access-log',
    ]  # fmt: skip
    if scenario.tls:
        cmd += ['--ssl-certificate', str(ctx.cert), '--ssl-keyfile', str(ctx.key)]
    if scenario.static:
        cmd += ['--static-path-mount', str(ctx.static_dir)]
    return [*cmd, *row.server.extra_args, scenario.app]


def _uvicorn_cmd(row: Row, scenario: 'Scenario', ctx: Ctx) -> list:
    cmd = [
        row.bin('uvicorn'), '--host', '127.0.0.1', '--port', str(ctx.port), '--loop', 'uvloop',
        '--http', 'httptools', '--log-level', 'warning', '--no-access-log', '--lifespan', 'off',
    ]  # fmt: skip
    if scenario.tls:
        cmd += ['--ssl-certfile', str(ctx.cert), '--ssl-keyfile', str(ctx.key)]
    return [*cmd, scenario.app]


def _hypercorn_cmd(row: Row, scenario: 'Scenario', ctx: Ctx) -> list:
    cmd = [row.bin('hypercorn'), '--bind', f'127.0.0.1:{ctx.port}', '--workers', '1', '--worker-class', 'asyncio']
    cmd += ['--log-level', 'WARNING']
    if scenario.tls:
        cmd += ['--certfile', str(ctx.cert), '--keyfile', str(ctx.key)]
    return [*cmd, scenario.app]


def _gunicorn_cmd(worker: str) -> Callable:
    def command(row: Row, scenario: 'Scenario', ctx: Ctx) -> list:
        cmd = [
            row.bin('gunicorn'), '--bind', f'127.0.0.1:{ctx.port}', '--workers', '1', '--worker-class', worker,
            '--log-level', 'warning',
        ]  # fmt: skip
        if worker == 'gthread':
            cmd += ['--threads', str(GUNICORN_THREADS)]
        if scenario.tls:
            cmd += ['--certfile', str(ctx.cert), '--keyfile', str(ctx.key)]
        return [*cmd, scenario.app]

    return command


def _ceiling_cmd(row: Row, scenario: 'Scenario', ctx: Ctx) -> list:
    return [str(CEILING_BIN), str(ctx.port)]


def pinned(package: str) -> str:
    """The version a peer env pins `package` to."""
    for requirements in PEER_ENVS.values():
        for requirement in requirements:
            name, _, version = requirement.partition('==')
            if name == package:
                return version
    return '?'


ALL_INTERFACES = frozenset({'rsgi', 'asgi', 'wsgi'})
SERVERS = {
    server.name: server
    for server in [
        Server('ours', 'ours', ALL_INTERFACES, frozenset({'h2', 'ws', 'tls', 'static'}), _granian_cmd, granian=True),
        Server(
            'granian',
            'granian-pypi',
            ALL_INTERFACES,
            frozenset({'h2', 'ws', 'tls', 'static'}),
            _granian_cmd,
            label=f'granian {PEER_VERSION}',
            granian=True,
        ),
        Server(
            'uvicorn',
            'uvicorn',
            frozenset({'asgi'}),
            frozenset({'ws', 'tls'}),
            _uvicorn_cmd,
            label=f'uvicorn {pinned("uvicorn")}',
            loop='uvloop',
        ),
        Server(
            'hypercorn',
            'hypercorn',
            frozenset({'asgi'}),
            frozenset({'h2', 'ws', 'tls'}),
            _hypercorn_cmd,
            label=f'hypercorn {pinned("hypercorn")}',
            loop='asyncio',
        ),
        Server(
            'gunicorn-sync',
            'gunicorn',
            frozenset({'wsgi'}),
            frozenset({'tls'}),
            _gunicorn_cmd('sync'),
            label=f'gunicorn {pinned("gunicorn")} sync',
        ),
        Server(
            'gunicorn-gthread',
            'gunicorn',
            frozenset({'wsgi'}),
            frozenset({'tls'}),
            _gunicorn_cmd('gthread'),
            label=f'gunicorn {pinned("gunicorn")} gthread ({GUNICORN_THREADS} threads)',
        ),
        Server('ceiling', '', ALL_INTERFACES, frozenset({'h2'}), _ceiling_cmd, label='ceiling (hyper)', ceiling=True),
        Server(
            'ours-rust-tasks',
            'ours',
            frozenset({'rsgi', 'asgi'}),
            frozenset(),
            _granian_cmd,
            label='ours --task-impl rust',
            extra_args=('--task-impl', 'rust'),
            variant_of='ours',
            granian=True,
        ),
        Server(
            'granian-rust-tasks',
            'granian-pypi',
            frozenset({'rsgi', 'asgi'}),
            frozenset(),
            _granian_cmd,
            label=f'granian {PEER_VERSION} --task-impl rust',
            extra_args=('--task-impl', 'rust'),
            variant_of='granian',
            granian=True,
        ),
        Server(
            'ours-access-log',
            'ours',
            ALL_INTERFACES,
            frozenset(),
            _granian_cmd,
            label='ours --access-log',
            extra_args=('--access-log',),
            variant_of='ours',
            granian=True,
        ),
    ]
}
BASELINE = 'granian'


def label(name: str) -> str:
    server = SERVERS.get(name)
    return (server.label or server.name) if server else name


# -- scenarios --------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    interface: str
    app: str
    description: str
    load: str = 'wrk'  # wrk | h2load | ws
    path: str = '/'
    connections: int = 64
    script: str = ''  # a wrk Lua script beside this file
    headers: tuple = ()
    tls: bool = False
    static: bool = False
    ceiling: bool = False  # the hyper ceiling takes part (it only answers 'Hello, world!')
    needs: frozenset = frozenset()
    probe_body: Optional[bytes] = None  # POST this in the readiness probe
    expect: object = b'Hello, world!'  # the probe's expected body, or its length
    streams: int = 1  # h2load streams per connection
    servers: List[str] = field(default_factory=list)


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
            Scenario(
                f'{i}-h2',
                i,
                hello,
                'HTTP/2 cleartext (prior knowledge), h2load 16 connections x 16 streams',
                load='h2load',
                connections=16,
                streams=16,
                needs=frozenset({'h2'}),
                ceiling=True,
            ),
            Scenario(f'{i}-https', i, hello, 'HTTPS (TLS 1.3, keep-alive), 64 connections', tls=True),
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
            scenarios.append(
                Scenario(
                    f'{i}-ws',
                    i,
                    f'{suite}:ws_echo',
                    'websocket echo: 64 clients, 64-byte text messages, messages/s',
                    load='ws',
                    connections=64,
                    needs=frozenset({'ws'}),
                )
            )
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
            if scenario.interface in server.interfaces
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
    'static-10k': ['auto'],
}


def rows_of(scenario: Scenario, servers_filter: Optional[set], loops: List[str]) -> List[Row]:
    """The rows a scenario measures: the granian family once per loop (loop by loop), then the others."""
    names = [s for s in scenario.servers if not servers_filter or s in servers_filter]
    rows = [Row(SERVERS[name], loop) for loop in LOOPS if loop in loops for name in names if SERVERS[name].granian]
    return rows + [Row(SERVERS[name]) for name in names if not SERVERS[name].granian]


# -- processes --------------------------------------------------------------------------------------------------

LIVE: Dict[int, subprocess.Popen] = {}  # servers started and not yet stopped, by pid


def sh(*cmd, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, timeout=timeout, **kwargs)


def descendants(pid: int) -> List[int]:
    """The pids of the processes below `pid` (children, grandchildren, ...)."""
    children: Dict[int, List[int]] = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss(pid: int) -> Dict[int, int]:
    """VmHWM (KiB) of a process and of each of its descendants."""
    peaks = {}
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            match = re.search(r'^VmHWM:\s+(\d+) kB', Path(f'/proc/{each}/status').read_text(), re.MULTILINE)
            if match:
                peaks[each] = int(match.group(1))
    return peaks


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    ticks = 0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f'/proc/{each}/stat').read_text().rsplit(')', 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf('SC_CLK_TCK')


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL after 10 s;
    then SIGKILL to any descendant that left the group and still runs."""
    below = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    for pid in below:
        while Path(f'/proc/{pid}').exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group
    LIVE.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(LIVE.values()):
        with contextlib.suppress(Exception):
            stop(proc)


def _on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that stop the servers


def cargo_running() -> List[str]:
    running = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / 'comm').read_text().strip() in CARGO_NAMES:
                    running.append(entry.name)
    return running


def wait_for_cargo_idle(limit: float = 3600) -> None:
    """One cargo build at a time on this machine: wait until no cargo/rustc runs."""
    deadline = time.monotonic() + limit
    said = 0.0
    while running := cargo_running():
        if time.monotonic() > deadline:
            raise RuntimeError(f'cargo still running after {limit:.0f} s (pids {running})')
        if time.monotonic() - said > 60:
            print(f'  waiting for other cargo builds to finish (pids {" ".join(running)}) ...', flush=True)
            said = time.monotonic()
        time.sleep(5)


# -- environments -----------------------------------------------------------------------------------------------


def ensure_tools() -> None:
    wanted = {'wrk': 'wrk', 'h2load': 'nghttp2-client', 'taskset': 'util-linux'}
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if missing:
        print(f'installing {" ".join(missing)} with apt-get', flush=True)
        sh('apt-get', 'update', '-qq', timeout=600)
        sh(
            'apt-get',
            'install',
            '-y',
            '-qq',
            *missing,
            timeout=900,
            env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'},
        )


def venv(name: str) -> Path:
    path = ENVS / name
    if not (path / 'bin' / 'python').exists():
        sh('uv', 'venv', '-q', '-p', sys.executable, str(path), timeout=300)
    return path


def pip_install(target: Path, *requirements: str, **kwargs) -> None:
    sh('uv', 'pip', 'install', '-q', '-p', str(target / 'bin' / 'python'), *requirements, **kwargs)


def source_fingerprint(root: Path) -> str:
    """A hash of the sources our build is made of, to tell a stale build."""
    digest = hashlib.sha256()
    for package in OUR_PACKAGES:
        for path in sorted((root / 'packages' / package).rglob('*')):
            if path.suffix in {'.rs', '.py', '.pyi', '.toml'} and path.is_file() and '__pycache__' not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    for name in ('Cargo.lock',):
        if (root / name).exists():
            digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def git_describe() -> str:
    try:
        rev = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, check=False, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--', 'packages'],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return f'{rev}{"+dirty" if dirty else ""}'


def install_ours(names: List[str], rebuild: bool, ref: str) -> dict:
    """Our release build (LTO, as users get it; not the editable dev build) into the envs `names` (.envs/ours and,
    for rloop, .envs/ours-rloop): built once as wheels into .envs/ours-wheels, installed into each env. An env that
    holds a build is kept unless the wheels are of another build or were just built (--rebuild, --ref)."""
    if ref:
        revision = subprocess.run(
            ['git', 'rev-parse', '--short', ref], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        source = ENVS / f'src-{revision}'
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        archive = subprocess.run(['git', 'archive', ref], cwd=ROOT, capture_output=True, check=True, timeout=120)
        subprocess.run(['tar', '-x', '-C', str(source)], input=archive.stdout, check=True, timeout=120)
        rebuild = True
    else:
        source, revision = ROOT, git_describe()
    wheels_stamp = OURS_WHEELS / '.source'
    try:
        fingerprint = source_fingerprint(source)
        missing = [name for name in names if not (ENVS / name / 'bin' / 'granian').exists()]
        built_now = rebuild or bool(missing and not wheels_stamp.exists())
        if built_now:
            build_ours(source, revision, fingerprint)
    finally:
        if ref:
            shutil.rmtree(source, ignore_errors=True)
    wheels_build = wheels_stamp.read_text() if wheels_stamp.exists() else None
    for name in names:
        env, stamp = venv(name), ENVS / name / '.source'
        env_build = stamp.read_text() if stamp.exists() else None
        if wheels_build is not None and (built_now or env_build != wheels_build):
            wheels = sorted(str(path) for path in OURS_WHEELS.glob('*.whl'))
            pip_install(env, '--reinstall', '--no-sources', *wheels, timeout=900)
            stamp.write_text(wheels_build)
    stamp = ENVS / names[0] / '.source'
    built = json.loads(stamp.read_text()) if stamp.exists() else {'revision': 'unknown', 'fingerprint': ''}
    built['stale'] = not ref and built.get('fingerprint') != fingerprint
    if built['stale']:
        print(
            f'WARNING: our build ({built["revision"]}) differs from the sources in the working tree: --rebuild builds them',
            flush=True,
        )
    return built


def build_ours(source: Path, revision: str, fingerprint: str) -> None:
    print(f'building ours ({revision}) in release mode into {OURS_WHEELS} ...', flush=True)
    wait_for_cargo_idle()
    started = time.monotonic()
    shutil.rmtree(OURS_WHEELS, ignore_errors=True)
    build_env = {**os.environ, 'MATURIN_PEP517_ARGS': '--profile release', 'CARGO_TARGET_DIR': str(ROOT / 'target')}
    for package in OUR_PACKAGES:
        sh(
            'uv', 'build', '-q', '--wheel', '--no-sources', '-p', sys.executable, '--out-dir', str(OURS_WHEELS),
            str(source / 'packages' / package), env=build_env, timeout=3600,
        )  # fmt: skip
    (OURS_WHEELS / '.source').write_text(json.dumps({'revision': revision, 'fingerprint': fingerprint}))
    print(f'  built in {time.monotonic() - started:.0f} s', flush=True)


def ensure_ceiling() -> None:
    """The no-Python ceiling, built when missing or older than its sources."""
    sources = [*(HERE / 'ceiling').rglob('*.rs'), HERE / 'ceiling' / 'Cargo.toml']
    if CEILING_BIN.exists() and CEILING_BIN.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    print('building the ceiling: cargo build --release -p granian-bench-ceiling ...', flush=True)
    wait_for_cargo_idle()
    sh('cargo', 'build', '--release', '--quiet', '-p', 'granian-bench-ceiling', cwd=ROOT, timeout=3600)


def install_envs(rows: List[Row], args) -> dict:
    """Creates and fills the envs the chosen rows need; returns {'envs': env -> `uv pip freeze`, 'ours': build}."""
    wanted = {row.env: row for row in rows if row.server.env}  # one row per env tells what it holds
    ours = sorted(name for name, row in wanted.items() if row.server.env == 'ours')
    installed = {'envs': {}, 'ours': install_ours(ours, args.rebuild, args.ref) if ours else {}}
    for name, row in sorted(wanted.items()):
        env = venv(name)
        pip_install(env, *PEER_ENVS.get(row.server.env, []), *row.env_packages, timeout=900)
        if row.loop:
            drop_other_loops(env, row.env_packages)
        installed['envs'][name] = freeze(env)
    if any(row.server.ceiling for row in rows):
        ensure_ceiling()
    tools = venv('tools')
    pip_install(tools, *TOOLS_ENV, timeout=900)
    return installed


def drop_other_loops(env: Path, packages: List[str]) -> None:
    """Uninstalls from a granian-family env the loop packages it must not hold (rloop in the env of `auto` would
    make it run rloop)."""
    others = {req.partition('==')[0] for reqs in LOOP_ENV_PACKAGES.values() for req in reqs if req not in packages}
    present = [req.partition('==')[0] for req in freeze(env) if req.partition('==')[0] in others]
    if present:
        sh('uv', 'pip', 'uninstall', '-q', '-p', str(env / 'bin' / 'python'), *present, timeout=300)


def freeze(env: Path) -> List[str]:
    out = subprocess.run(
        ['uv', 'pip', 'freeze', '-p', str(env / 'bin' / 'python')],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.split()


def ensure_fixtures() -> Ctx:
    """Certificates from trustme (a local CA, a leaf for 127.0.0.1) and the static file."""
    certs = ENVS / 'certs'
    cert, key, ca = certs / 'cert.pem', certs / 'key.pem', certs / 'ca.pem'
    if not (cert.exists() and key.exists() and ca.exists()):
        certs.mkdir(parents=True, exist_ok=True)
        code = (
            'import sys, trustme\n'
            'ca = trustme.CA()\n'
            "leaf = ca.issue_cert('127.0.0.1', 'localhost')\n"
            "open(sys.argv[1], 'wb').write(b''.join(pem.bytes() for pem in leaf.cert_chain_pems))\n"
            "open(sys.argv[2], 'wb').write(leaf.private_key_pem.bytes())\n"
            "open(sys.argv[3], 'wb').write(ca.cert_pem.bytes())\n"
        )
        sh(str(ENVS / 'tools' / 'bin' / 'python'), '-c', code, str(cert), str(key), str(ca), timeout=120)
    static_dir = ENVS / 'static'
    static_dir.mkdir(parents=True, exist_ok=True)
    for name, size in STATIC_FILES.items():
        if not (static_dir / name).exists():
            (static_dir / name).write_bytes(b'x' * size)
    return Ctx(port=0, cert=cert, key=key, static_dir=static_dir)


# -- one run ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def probe(scenario: Scenario, port: int, ca: Path) -> Optional[str]:
    """One request as the load will make it; None when the answer is right, else what is wrong."""
    if scenario.tls:
        context = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection('127.0.0.1', port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
    try:
        method = 'GET' if scenario.probe_body is None else 'POST'
        conn.request(method, scenario.path, body=scenario.probe_body)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    expected_len = scenario.expect if isinstance(scenario.expect, int) else len(scenario.expect)
    if response.status != 200:
        return f'status {response.status}'
    if len(body) != expected_len or (isinstance(scenario.expect, bytes) and body != scenario.expect):
        return f'unexpected body ({len(body)} bytes: {body[:40]!r})'
    return None


def start(row: Row, scenario: Scenario, ctx: Ctx, cpus: str, log: Path) -> subprocess.Popen:
    cmd = ['taskset', '-c', cpus, *row.server.command(row, scenario, ctx)]
    env = {**os.environ, 'PYTHONPATH': str(HERE), 'PYTHONDONTWRITEBYTECODE': '1'}
    env.pop('VIRTUAL_ENV', None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open('w') as out:
        out.write(f'$ {shlex.join(cmd)}\n')
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    LIVE[proc.pid] = proc
    deadline = time.monotonic() + 30
    problem = 'no answer'
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f'exited with {proc.returncode} at start: {tail(log)}')
        try:
            problem = probe(scenario, ctx.port, ctx.cert.parent / 'ca.pem')
        except (OSError, http.client.HTTPException) as exc:
            problem = f'{type(exc).__name__}: {exc}'
            time.sleep(0.2)
            continue
        if problem is None:
            return proc
        break
    stop(proc)
    raise RuntimeError(f'not ready in 30 s or wrong answer ({problem}): {tail(log)}')


def tail(log: Path, lines: int = 6) -> str:
    with contextlib.suppress(OSError):
        return ' | '.join(log.read_text(errors='replace').strip().splitlines()[-lines:])
    return ''


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r'([\d.]+)(us|ms|s|m|h)', value).groups()
    return float(number) * {'us': 0.001, 'ms': 1.0, 's': 1000.0, 'm': 60000.0, 'h': 3600000.0}[unit]


def load_wrk(scenario: Scenario, port: int, duration: int, cpus: str) -> dict:
    scheme = 'https' if scenario.tls else 'http'
    cmd = ['taskset', '-c', cpus, 'wrk', '-t1', f'-c{scenario.connections}', f'-d{duration}s', '--latency']
    cmd += ['--timeout', '5s']
    if scenario.script:
        cmd += ['-s', str(HERE / scenario.script)]
    for header in scenario.headers:
        cmd += ['-H', header]
    cmd.append(f'{scheme}://127.0.0.1:{port}{scenario.path}')
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    socket_errors = {}
    if match := re.search(r'Socket errors: (.*)', out):
        socket_errors = {k: int(v) for k, v in re.findall(r'(\w+) (\d+)', match.group(1))}
    requests = re.search(r'(\d+) requests in', out)
    result = {
        'rps': float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)),
        'requests': int(requests.group(1)) if requests else 0,
        'p50_ms': to_ms(re.search(r'^\s+50%\s+(\S+)', out, re.MULTILINE).group(1)),
        'p99_ms': to_ms(re.search(r'^\s+99%\s+(\S+)', out, re.MULTILINE).group(1)),
        'non2xx': int(non2xx.group(1)) if non2xx else 0,
        'socket_errors': socket_errors,
    }
    result['errors'] = result['non2xx'] + sum(socket_errors.values())
    return result


def load_h2load(scenario: Scenario, port: int, duration: int, cpus: str) -> dict:
    with tempfile.TemporaryDirectory(prefix='bench-h2load-') as tmp:
        log = Path(tmp) / 'requests.tsv'
        cmd = [
            'taskset', '-c', cpus, 'h2load', '-t1', f'-c{scenario.connections}', f'-m{scenario.streams}',
            f'-D{max(1, duration)}', f'--log-file={log}', f'http://127.0.0.1:{port}{scenario.path}',
        ]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
        latencies = []
        with log.open() as rows:
            for row in rows:
                parts = row.split('\t')
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    counts = re.search(r'requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed', out)
    if not counts:
        raise RuntimeError(f'h2load: no result in {out[-300:]!r}')
    codes = re.search(r'status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx', out)
    return {
        'rps': float(re.search(r'finished in [\d.]+\w+, ([\d.]+) req/s', out).group(1)),
        'requests': int(counts.group(3)),
        'p50_ms': percentile(latencies, 0.50),
        'p99_ms': percentile(latencies, 0.99),
        'non2xx': int(codes.group(3)) + int(codes.group(4)) if codes else 0,
        'errors': int(counts.group(5)),
    }


def load_ws(scenario: Scenario, port: int, duration: int, cpus: str, messages: int) -> dict:
    timeout = max(30.0, duration * 10)
    cmd = [
        'taskset', '-c', cpus, str(ENVS / 'tools' / 'bin' / 'python'), str(HERE / 'ws_load.py'),
        '--url', f'ws://127.0.0.1:{port}{scenario.path}', '--clients', str(scenario.connections),
        '--messages', str(messages), '--timeout', str(timeout),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout + 30).stdout
    result = json.loads(out)
    return {
        'rps': result['rate'],
        'requests': result['echoed'],
        'p50_ms': result['p50_ms'],
        'p99_ms': result['p99_ms'],
        'errors': result['errors'] + result['slow_closes'],
        'slow_closes': result['slow_closes'],
        'close_max_ms': result['close_max_ms'],
        'failures': result['failures'],
        'seconds': result['seconds'],
    }


def percentile(values: list, fraction: float) -> float:
    if not values:
        return float('nan')
    return values[min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))]


def measure(row: Row, scenario: Scenario, ctx: Ctx, args, round_no: int) -> dict:
    ctx.port = free_port()
    log = LOGS / f'{scenario.name}--{row.key}--r{round_no}.log'
    proc = start(row, scenario, ctx, args.server_cpus, log)
    try:
        if args.warmup > 0:
            if scenario.load == 'wrk':
                load_wrk(scenario, ctx.port, args.warmup, args.load_cpus)
            elif scenario.load == 'h2load':
                load_h2load(scenario, ctx.port, args.warmup, args.load_cpus)
            else:
                load_ws(scenario, ctx.port, args.warmup, args.load_cpus, max(20, args.ws_messages // 10))
        # CPU time per request: what a request costs the server, whatever the load generator did.
        cpu_before = cpu_seconds(proc.pid)
        if scenario.load == 'wrk':
            run = load_wrk(scenario, ctx.port, args.duration, args.load_cpus)
        elif scenario.load == 'h2load':
            run = load_h2load(scenario, ctx.port, args.duration, args.load_cpus)
        else:
            run = load_ws(scenario, ctx.port, args.duration, args.load_cpus, args.ws_messages)
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        served = run.get('requests') or run['rps'] * args.duration
        if served:
            run['cpu_us_per_req'] = round(cpu_used * 1e6 / served, 2)
        peaks = peak_rss(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with {proc.returncode} during the run: {tail(log)}')
    finally:
        stop(proc)
    run['rss_kib'] = sum(peaks.values())
    run['rss_processes_kib'] = sorted(peaks.values(), reverse=True)
    return run


# -- the suite --------------------------------------------------------------------------------------------------


def summarize(scenario: Scenario, rows: List[Row], runs: Dict[str, List[dict]]) -> dict:
    ok = {name: [r for r in rs if 'rps' in r] for name, rs in runs.items()}
    loops = [loop for loop in LOOPS if any(row.loop == loop for row in rows)]
    summary = {
        'description': scenario.description,
        'interface': scenario.interface,
        'load': scenario.load,
        'connections': scenario.connections,
        'unit': 'messages/s' if scenario.load == 'ws' else 'requests/s',
        'loops': loops,
        'servers': list(runs),  # the rows: `ours@auto`, `granian@asyncio`, `uvicorn`, ...
        'rows': {row.key: {'server': row.server.name, 'loop': row.loop_run} for row in rows},
        'runs': runs,
        'median_rps': {n: statistics.median(r['rps'] for r in rs) for n, rs in ok.items() if rs},
        'median_p50_ms': {n: statistics.median(r['p50_ms'] for r in rs) for n, rs in ok.items() if rs},
        'median_p99_ms': {n: statistics.median(r['p99_ms'] for r in rs) for n, rs in ok.items() if rs},
        'errors': {n: sum(r['errors'] for r in rs) for n, rs in ok.items() if rs},
        'peak_rss_kib': {n: max(r['rss_kib'] for r in rs) for n, rs in ok.items() if rs},
        'median_cpu_us_per_req': {
            n: statistics.median(r['cpu_us_per_req'] for r in rs if 'cpu_us_per_req' in r)
            for n, rs in ok.items()
            if any('cpu_us_per_req' in r for r in rs)
        },
        'failed_runs': {n: sum(1 for r in rs if 'rps' not in r) for n, rs in runs.items()},
        'baseline': {},
        'ratios': {},
        'median_ratio': {},
    }
    # Ratios to the granian release within each round: of the same loop for the granian family, of the first loop
    # (the README's headline section) for the others.
    for row in rows:
        base_key = Row(SERVERS[BASELINE], row.loop or (loops[0] if loops else '')).key
        if row.key == base_key or base_key not in runs:
            continue
        ratios = [
            r['rps'] / b['rps']
            for r, b in zip(runs[row.key], runs[base_key], strict=False)
            if 'rps' in r and 'rps' in b and b['rps'] > 0 and r['round'] == b['round']
        ]
        summary['baseline'][row.key] = base_key
        summary['ratios'][row.key] = [round(x, 4) for x in ratios]
        if ratios:
            summary['median_ratio'][row.key] = statistics.median(ratios)
    return summary


def run_suite(plan: List[tuple], args, ctx: Ctx) -> Dict[str, dict]:
    """`plan`: (scenario, its rows) pairs."""
    results = {}
    total = sum(len(rows) for _, rows in plan) * args.rounds
    done, began = 0, time.monotonic()
    for scenario, rows in plan:
        runs: Dict[str, List[dict]] = {row.key: [] for row in rows}
        for round_no in range(1, args.rounds + 1):
            for row in rows:  # interleaved: A B C, A B C, ...
                try:
                    run = measure(row, scenario, ctx, args, round_no)
                except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the suite goes on
                    detail = ''
                    if isinstance(exc, subprocess.CalledProcessError):
                        detail = ' '.join(f'{exc.stdout or ""} {exc.stderr or ""}'.split())[-300:]
                    run = {'error': f'{type(exc).__name__}: {exc} {detail}'.strip()[:800]}
                    print(f'  ! {scenario.name} / {row.key} round {round_no}: {run["error"]}', flush=True)
                run['round'] = round_no
                run['loop'] = row.loop_run
                runs[row.key].append(run)
                done += 1
            if args.rounds > 1:
                print(f'  {scenario.name} round {round_no}: {round_line(runs, round_no)}', flush=True)
        results[scenario.name] = summarize(scenario, rows, runs)
        elapsed = time.monotonic() - began
        print(f'{scenario.name}: {scenario_line(results[scenario.name])}  [{done}/{total} runs, {elapsed:.0f} s]')
        sys.stdout.flush()
    return results


def round_line(runs: Dict[str, List[dict]], round_no: int) -> str:
    parts = []
    for name, rs in runs.items():
        r = rs[round_no - 1]
        cpu = f' ({r["cpu_us_per_req"]:.1f} µs)' if 'cpu_us_per_req' in r else ''
        parts.append(f'{name} {r["rps"]:.0f}{cpu}' if 'rps' in r else f'{name} failed')
    return ', '.join(parts)


def ours_ratios(summary: dict) -> Dict[str, float]:
    """ours/granian by loop."""
    ratios = {}
    for key, ratio in summary['median_ratio'].items():
        name, loop = parse_key(key)
        if name == 'ours':
            ratios[loop] = ratio
    return ratios


def scenario_line(summary: dict) -> str:
    parts = []
    for name in summary['servers']:
        if name not in summary['median_rps']:
            parts.append(f'{name} FAILED')
            continue
        text = f'{name} {summary["median_rps"][name]:.0f}'
        text += f' (p99 {summary["median_p99_ms"][name]:.2f} ms, {summary["peak_rss_kib"][name] / 1024:.0f} MiB'
        cpu = summary.get('median_cpu_us_per_req', {}).get(name)
        if cpu is not None:
            text += f', {cpu:.1f} µs CPU/req'
        if summary['errors'][name]:
            text += f', {summary["errors"][name]} errors'
        parts.append(text + ')')
    ratios = ', '.join(f'{loop} {ratio:.3f}' for loop, ratio in ours_ratios(summary).items())
    unit = 'msg/s' if summary['unit'] == 'messages/s' else 'req/s'
    return f'[{unit}] ' + ', '.join(parts) + (f'; ours/granian: {ratios}' if ratios else '')


# -- report -----------------------------------------------------------------------------------------------------


def fmt_int(value: float) -> str:
    return f'{value:,.0f}'.replace(',', ' ')


QUICK_NOTE = (
    '**Quick smoke run**: 1 short round on a shared machine; it shows that every scenario runs, '
    'its numbers are not to be quoted.'
)
LEGEND = (
    'Medians over the rounds. Throughput in requests/s (websockets: messages/s); `ours/granian` is the '
    'median of the per-round ratios; † marks runs with errors (see the JSON), — a server that does not '
    'support the scenario, ✗ a failed run.'
)
LOOPS_NOTE = (
    'The granian family (ours, the release, their variants) runs every scenario on each loop measured, one section '
    'per loop, with both servers on the same loop; ratios are between rows of the same loop. The other servers run '
    'once, on their own loop (uvicorn: uvloop, hypercorn: asyncio), and are in the first section.'
)


def render_markdown(data: dict, chart: Optional[str]) -> str:
    meta, results = data['meta'], data['results']
    lines = [MARK_START, f'<!-- bench:kind={"quick" if meta["quick"] else "full"} -->', '']
    title = 'Suite results'
    if meta['quick']:
        title += ' — quick smoke run, not a measurement'
    lines += [f'## {title} ({meta["date"]})', '']
    setup = (
        f'Command: `{meta["command"]}`. {meta["rounds"]} round(s) of {meta["duration_s"]} s after a '
        f'{meta["warmup_s"]} s warm-up; server on CPU {meta["server_cpus"]}, load on CPU {meta["load_cpus"]}. '
        f'Machine: {meta["machine"]}, CPython {meta["python"]}. Ours: {meta["ours_build"]}. '
        f'Load average at the start: {meta["loadavg_start"]}.'
    )
    lines += [setup, '']
    if meta['quick']:
        lines += [QUICK_NOTE, '']
    if chart:
        lines += [f'![requests/s per scenario and server]({chart})', '']
    keys = [key for r in results.values() for key in r['servers']]
    loops = [loop for loop in LOOPS if any(parse_key(key)[1] == loop for key in keys)]
    lines += [LEGEND + (' ' + LOOPS_NOTE if loops else ''), '']
    for loop in loops or ['']:
        if loop:
            lines += [f'### {LOOPS[loop].title}', '']
        lines += render_section(results, loop, others=loop == (loops or [''])[0])
    errors = [
        f'{n} / {s}: {r["errors"][s]}' for n, r in results.items() for s in r['errors'] if r['errors'][s]
    ]  # fmt: skip
    if errors:
        lines += [
            'Errors (wrk: non-2xx and socket errors; h2load: failed requests; ws: failed echoes and close '
            'handshakes over 1 s): ' + '; '.join(errors),
            '',
        ]
    lines.append(MARK_END)
    return '\n'.join(lines)


def render_section(results: dict, loop: str, others: bool) -> List[str]:
    """The tables of one loop: the rows of the granian family on `loop`, and with `others` the other servers."""
    columns = {}  # scenario -> {server: row key}
    for name, r in results.items():
        for key in r['servers']:
            server, row_loop = parse_key(key)
            if row_loop == loop or (others and not row_loop):
                columns.setdefault(name, {})[server] = key
    groups = {}
    for name in columns:
        groups.setdefault('static' if name.startswith('static') else results[name]['interface'], []).append(name)
    level = '####' if loop else '###'
    lines = []
    for group, names in groups.items():
        present = [s for s in SERVERS if any(s in columns[n] for n in names)]
        lines += [f'{level} {group.upper() if group != "static" else "Static files"}', '']
        lines.append('| scenario | ' + ' | '.join(label(s) for s in present) + ' | ours/granian |')
        lines.append('| --- |' + ' ---: |' * (len(present) + 1))
        for n in names:
            r, keys = results[n], columns[n]
            cells = []
            for s in present:
                if s not in keys:
                    cells.append('—')
                elif keys[s] not in r['median_rps']:
                    cells.append('✗')
                else:
                    cell = fmt_int(r['median_rps'][keys[s]]) + (' †' if r['errors'].get(keys[s]) else '')
                    cells.append(f'**{cell}**' if s == 'ours' else cell)
            ratio = r['median_ratio'].get(keys.get('ours'))
            lines.append(f'| {n} | ' + ' | '.join(cells) + f' | {f"{ratio:.2f}" if ratio else "—"} |')
        lines += [
            '',
            (
                'p50 / p99 latency (ms) · peak RSS (MiB, the server process and its children) · server CPU time '
                'per request (µs, user + system, all its processes):'
            ),
            '',
        ]
        lines.append('| scenario | ' + ' | '.join(label(s) for s in present) + ' |')
        lines.append('| --- |' + ' ---: |' * len(present))
        for n in names:
            r, keys = results[n], columns[n]
            cells = []
            for s in present:
                if keys.get(s) not in r['median_rps']:
                    cells.append('—' if s not in keys else '✗')
                    continue
                key = keys[s]
                p50, p99, rss = r['median_p50_ms'][key], r['median_p99_ms'][key], r['peak_rss_kib'][key] / 1024
                cpu = r.get('median_cpu_us_per_req', {}).get(key)
                cells.append(f'{p50:.2f} / {p99:.2f} · {rss:.0f}' + (f' · {cpu:.1f}' if cpu is not None else ''))
            lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return lines


def update_readme(block: str, quick: bool, policy: str) -> bool:
    text = README.read_text() if README.exists() else '# Benchmarks\n'
    current = ''
    if MARK_START in text and MARK_END in text:
        current = text[text.index(MARK_START) : text.index(MARK_END) + len(MARK_END)]
    if policy == 'never' or (policy == 'auto' and quick and 'bench:kind=full' in current):
        return False
    if current:
        text = text.replace(current, block)
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    README.write_text(text)
    return True


def make_chart(json_path: Path, png_path: Path) -> bool:
    python = ENVS / 'tools' / 'bin' / 'python'
    if not python.exists():
        print('no tools env: no chart (run the suite once)', flush=True)
        return False
    try:
        sh(str(python), str(HERE / 'chart.py'), str(json_path), str(png_path), timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f'chart failed: {exc}', flush=True)
        return False
    return True


def report(json_path: Path, policy: str) -> None:
    data = json.loads(json_path.read_text())
    png = json_path.with_suffix('.png')
    chart = f'results/{png.name}' if make_chart(json_path, png) else None
    block = render_markdown(data, chart)
    if update_readme(block, data['meta']['quick'], policy):
        print(f'README table updated ({README.relative_to(ROOT)})')
    elif policy == 'auto':
        print('README left as it is: a quick run does not replace the table of a full run (--readme always does)')
    if chart:
        print(f'chart written to {png.relative_to(ROOT)}')


# -- main -------------------------------------------------------------------------------------------------------


def tool_version(cmd: list) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    return ''


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


def main() -> None:
    parser = argparse.ArgumentParser(description='The benchmark suite (see benchmarks/README.md).')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--duration', type=int, default=10, help='seconds per measured run')
    parser.add_argument('--warmup', type=int, default=2, help='seconds of warm-up load before each run')
    parser.add_argument('--ws-messages', type=int, default=5000, help='messages per websocket client')
    parser.add_argument('--quick', action='store_true', help='smoke check: a subset, 1 round of 2 s, 1 s warm-up')
    parser.add_argument('--only', nargs='+', metavar='PATTERN', help='scenario names or globs (see --list)')
    parser.add_argument('--interfaces', nargs='+', choices=sorted(ALL_INTERFACES))
    parser.add_argument('--servers', nargs='+', choices=list(SERVERS), help='only these servers')
    parser.add_argument(
        '--loops',
        nargs='+',
        choices=list(LOOPS),
        help=f'the loops of the granian family (default: {" ".join(DEFAULT_LOOPS)}; --quick: its own, see --list)',
    )
    parser.add_argument('--rebuild', action='store_true', help='rebuild and reinstall our release build')
    parser.add_argument('--ref', default='', help='build ours from this git revision (git archive) instead')
    parser.add_argument('--server-cpus', default='0', help='taskset CPU list of the servers')
    parser.add_argument('--load-cpus', default='1', help='taskset CPU list of the load generators')
    parser.add_argument('--readme', choices=['auto', 'always', 'never'], default='auto')
    parser.add_argument('--list', action='store_true', help='list the scenarios and their servers')
    parser.add_argument('--from-json', type=Path, help='only redo the README table and the chart of a results file')
    args = parser.parse_args()
    if args.duration < 1 or args.rounds < 1:
        parser.error('--duration and --rounds must be at least 1')
    if args.quick:
        args.rounds, args.duration, args.warmup, args.ws_messages = 1, 2, 1, 300

    if args.list:
        family = ', '.join(name for name, server in SERVERS.items() if server.granian)
        print(f'The granian family ({family}) runs once per loop of --loops (default: {" ".join(DEFAULT_LOOPS)}).')
        print(f'{"--quick loops":14} {"scenario":22} {"servers":58} what')
        for scenario in SCENARIOS.values():
            quick = ' '.join(QUICK.get(scenario.name, ['-']))
            print(f'{quick:14} {scenario.name:22} {", ".join(scenario.servers):58} {scenario.description}')
        return
    if args.from_json:
        report(args.from_json.resolve(), args.readme)
        return

    servers_filter = set(args.servers) if args.servers else None
    plan = [(scenario, rows_of(scenario, servers_filter, scenario_loops(scenario, args))) for scenario in select(args)]
    plan = [(scenario, rows) for scenario, rows in plan if rows]
    if not plan:
        sys.exit('nothing to run')

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(stop_all)
    began = time.monotonic()
    ensure_tools()
    installed = install_envs([row for _, rows in plan for row in rows], args)
    ctx = ensure_fixtures()
    print(f'setup done in {time.monotonic() - began:.0f} s; {len(plan)} scenarios', flush=True)

    stamp = datetime.now(timezone.utc).strftime('%Y-%m-%dT%H%M%SZ')
    loadavg_start = ' '.join(Path('/proc/loadavg').read_text().split()[:3])
    try:
        results = run_suite(plan, args, ctx)
    finally:
        stop_all()
    ours = installed['ours']
    cpuinfo = Path('/proc/cpuinfo').read_text().splitlines()
    cpu = next((line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')), '')
    meta = {
        'date': stamp,
        'command': 'python benchmarks/run.py ' + shlex.join(sys.argv[1:]),
        'quick': args.quick,
        'machine': f'{platform.machine()} {cpu}, {os.cpu_count()} cores, Linux {platform.release()}',
        'python': platform.python_version(),
        'rounds': args.rounds,
        'loops': [loop for loop in LOOPS if any(row.loop == loop for _, rows in plan for row in rows)],
        'duration_s': args.duration,
        'warmup_s': args.warmup,
        'ws_messages_per_client': args.ws_messages,
        'server_cpus': args.server_cpus,
        'load_cpus': args.load_cpus,
        'loadavg_start': loadavg_start,
        'loadavg_end': ' '.join(Path('/proc/loadavg').read_text().split()[:3]),
        'elapsed_s': round(time.monotonic() - began),
        'ours_build': f'{ours.get("revision", "?")}{" (STALE build)" if ours.get("stale") else ""}' if ours else '-',
        'envs': installed['envs'],
        'tools': {
            'wrk': tool_version(['wrk', '-v']),
            'h2load': tool_version(['h2load', '--version']),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f'{stamp}.json'
    json_path.write_text(json.dumps({'meta': meta, 'results': results}, indent=2))
    print(f'results written to {json_path.relative_to(ROOT)} ({meta["elapsed_s"]} s in all)')
    report(json_path, args.readme)
    failed = [(n, s) for n, r in results.items() for s, count in r['failed_runs'].items() if count]
    if failed:
        print('FAILED runs: ' + ', '.join(f'{n}/{s}' for n, s in failed))
        sys.exit(1)


if __name__ == '__main__':
    main()
