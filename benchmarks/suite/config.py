"""What every part of the suite shares: where things live, what each env pins, and the event loops."""

from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = BENCH.parent
ENVS = BENCH / '.envs'
LOGS = ENVS / 'logs'
OURS_WHEELS = ENVS / 'ours-wheels'
RESULTS = BENCH / 'results'
README = BENCH / 'README.md'
CEILING_BIN = ROOT / 'target' / 'release' / 'granian-bench-ceiling'
H3LOAD_BIN = ROOT / 'target' / 'release' / 'granian-bench-h3load'  # the HTTP/3 load client (benchmarks/h3load)
CA_CERT = ENVS / 'certs' / 'ca.pem'  # the CA of the servers' certificates (ensure_fixtures)
MARK_START = '<!-- bench:start -->'
MARK_END = '<!-- bench:end -->'

PEER_VERSION = '2.8.7'
UVLOOP, RLOOP = 'uvloop==0.23.0', 'rloop==0.5.0'  # the pins of the `uvloop` and `rloop` extras of our pyproject.toml
# Pinned peers, each in its own env. The versions are recorded in the results (`uv pip freeze`).
PEER_ENVS = {
    'granian-pypi': [f'granian=={PEER_VERSION}'],
    'uvicorn': ['uvicorn==0.54.0', UVLOOP, 'httptools==0.9.0', 'websockets==15.0.1'],
    'hypercorn': ['hypercorn[h3]==0.18.0', 'aioquic==1.7.2'],  # its `h3` extra: HTTP/3 with aioquic
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
