"""The servers: the env each runs from, the interfaces and features it supports, its command line; and the rows
of the results: a server, and for the granian family the loop it runs."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from .config import CEILING_BIN, ENVS, GUNICORN_THREADS, LEGACY_LOOP, LOOP_ENV_PACKAGES, LOOPS, PEER_ENVS, PEER_VERSION


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
    # h2, ws, ws-deflate (permessage-deflate negotiated when offered), tls, static, http3 (HTTP/3 over QUIC on the
    # same port, UDP)
    features: frozenset
    # (Row, Scenario, Ctx) -> argv, without the taskset prefix (the scenario is not typed here: scenarios.py
    # imports this module)
    command: Callable
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


def _granian_cmd(row: Row, scenario, ctx: Ctx) -> list:
    cmd = [
        row.bin('granian'), '--interface', scenario.interface, '--host', '127.0.0.1', '--port', str(ctx.port),
        '--loop', LOOPS[row.loop].arg, '--workers', '1', '--log-level', 'warning', '--no-access-log',
    ]  # fmt: skip
    if scenario.tls:
        cmd += ['--ssl-certificate', str(ctx.cert), '--ssl-keyfile', str(ctx.key)]
    if scenario.http3:
        cmd.append('--http3')
    if scenario.static:
        cmd += ['--static-path-mount', str(ctx.static_dir)]
    return [*cmd, *row.server.extra_args, scenario.app]


def _uvicorn_cmd(row: Row, scenario, ctx: Ctx) -> list:
    cmd = [
        row.bin('uvicorn'), '--host', '127.0.0.1', '--port', str(ctx.port), '--loop', 'uvloop',
        '--http', 'httptools', '--log-level', 'warning', '--no-access-log', '--lifespan', 'off',
    ]  # fmt: skip
    if scenario.tls:
        cmd += ['--ssl-certfile', str(ctx.cert), '--ssl-keyfile', str(ctx.key)]
    return [*cmd, scenario.app]


def _hypercorn_cmd(row: Row, scenario, ctx: Ctx) -> list:
    cmd = [row.bin('hypercorn'), '--bind', f'127.0.0.1:{ctx.port}', '--workers', '1', '--worker-class', 'asyncio']
    cmd += ['--log-level', 'WARNING']
    if scenario.tls:
        cmd += ['--certfile', str(ctx.cert), '--keyfile', str(ctx.key)]
    if scenario.http3:  # aioquic (the `h3` extra), with the same certificate
        cmd += ['--quic-bind', f'127.0.0.1:{ctx.port}']
    return [*cmd, scenario.app]


def _gunicorn_cmd(worker: str) -> Callable:
    def command(row: Row, scenario, ctx: Ctx) -> list:
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


def _ceiling_cmd(row: Row, scenario, ctx: Ctx) -> list:
    return [str(CEILING_BIN), str(ctx.port)]


def pinned(package: str) -> str:
    """The version a peer env pins `package` to (`hypercorn[h3]==V`: V)."""
    for requirements in PEER_ENVS.values():
        for requirement in requirements:
            name, _, version = requirement.partition('==')
            if name.partition('[')[0] == package:
                return version
    return '?'


# The reference of the ratios: every row's ratio is to the granian release (`ours/granian`).
PEER = 'granian'
# `--baseline REF`: ours built a second time, from a git revision, in an env of its own named after it. It runs
# beside ours, wherever ours runs (it is in no scenario's own list of servers), and `ours/ours-baseline` is
# reported next to `ours/granian`.
OURS_BASELINE = 'ours-baseline'
GRANIAN_FEATURES = frozenset({'h2', 'ws', 'tls', 'static'})
# Ours negotiates permessage-deflate (`--ws-compression`, on by default) and serves HTTP/3 (`--http3`); the granian
# release does neither.
OURS_FEATURES = GRANIAN_FEATURES | {'ws-deflate', 'http3'}
ALL_INTERFACES = frozenset({'rsgi', 'asgi', 'wsgi'})
SERVERS = {
    server.name: server
    for server in [
        Server('ours', 'ours', ALL_INTERFACES, OURS_FEATURES, _granian_cmd, granian=True),
        Server(
            OURS_BASELINE,
            OURS_BASELINE,  # until use_baseline() names it after the revision
            ALL_INTERFACES,
            OURS_FEATURES,
            _granian_cmd,
            label='ours baseline',
            granian=True,
        ),
        Server(
            'granian',
            'granian-pypi',
            ALL_INTERFACES,
            GRANIAN_FEATURES,
            _granian_cmd,
            label=f'granian {PEER_VERSION}',
            granian=True,
        ),
        Server(
            'uvicorn',
            'uvicorn',
            frozenset({'asgi'}),
            # Its default `--ws auto` is websockets' sans-I/O protocol when websockets is installed, with
            # `--ws-per-message-deflate` on by default.
            frozenset({'ws', 'ws-deflate', 'tls'}),
            _uvicorn_cmd,
            label=f'uvicorn {pinned("uvicorn")}',
            loop='uvloop',
        ),
        Server(
            'hypercorn',
            'hypercorn',
            frozenset({'asgi'}),
            # wsproto's permessage-deflate, always accepted; HTTP/3 with aioquic (`--quic-bind`)
            frozenset({'h2', 'ws', 'ws-deflate', 'tls', 'http3'}),
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
            'ours-metrics',
            'ours',
            ALL_INTERFACES,
            frozenset(),
            _granian_cmd,
            label='ours --metrics',
            # Port 0: any free port (the runs do not scrape; recording is what costs).
            extra_args=('--metrics', '--metrics-port', '0'),
            variant_of='ours',
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


def baseline_env(revision: str) -> str:
    """The env of the build of `revision` (`--baseline`); its rloop env adds `-rloop`, its wheels `-wheels`."""
    return f'{OURS_BASELINE}-{revision}'


def use_baseline(revision: str) -> None:
    """Points ours-baseline at the env of the build of `revision` (a short commit id)."""
    SERVERS[OURS_BASELINE] = dataclasses.replace(SERVERS[OURS_BASELINE], env=baseline_env(revision))


def parse_key(key: str) -> tuple:
    """(server, loop) of a row's name; the granian family of an older results file ran asyncio."""
    name, _, loop = key.partition('@')
    if not loop and name in SERVERS and SERVERS[name].granian:
        loop = LEGACY_LOOP
    return name, loop


def label(name: str) -> str:
    server = SERVERS.get(name)
    return (server.label or server.name) if server else name
