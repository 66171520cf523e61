"""Side-by-side benchmark: this server against the `granian` release from PyPI.

Each server runs in its own virtual env under benchmarks/.envs, pinned to CPU 0, with the
load generator (wrk) pinned to CPU 1. Rounds are interleaved (A B A B ...) and the median
of each server is quoted, with the ratio computed within each round.

    python benchmarks/run.py [--rounds 3] [--duration 10] [--quick]
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENVS = HERE / '.envs'
PEER_VERSION = '2.8.7'

SCENARIOS = {
    'rsgi-hello': {'interface': 'rsgi', 'target': 'apps.rsgi_hello:app', 'connections': 64},
    'rsgi-echo-1k': {'interface': 'rsgi', 'target': 'apps.rsgi_echo:app', 'connections': 64, 'script': 'post_1k.lua'},
    'asgi-hello': {'interface': 'asgi', 'target': 'apps.asgi_hello:app', 'connections': 64},
    'wsgi-hello': {'interface': 'wsgi', 'target': 'apps.wsgi_hello:app', 'connections': 64},
    'asgi-echo-1k': {'interface': 'asgi', 'target': 'apps.asgi_echo:app', 'connections': 64, 'script': 'post_1k.lua'},
}


def sh(*cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


def ensure_tools():
    missing = [tool for tool in ('wrk', 'taskset') if shutil.which(tool) is None]
    if missing:
        sh('apt-get', 'update', '-qq')
        sh('apt-get', 'install', '-y', '-qq', 'wrk', 'util-linux')


def venv(name: str) -> Path:
    path = ENVS / name
    if not (path / 'bin' / 'python').exists():
        sh('uv', 'venv', '-q', '-p', sys.executable, str(path))
    return path


def install_envs(rebuild: bool) -> dict:
    peer = venv('granian-pypi')
    sh('uv', 'pip', 'install', '-q', '-p', str(peer / 'bin' / 'python'), f'granian=={PEER_VERSION}')
    ours = venv('ours')
    if rebuild or not (ours / 'bin' / 'granian').exists():
        # A release wheel (LTO), as users get it: not the editable dev build.
        sh(
            'uv',
            'pip',
            'install',
            '-q',
            '--reinstall',
            '--no-sources',
            '-p',
            str(ours / 'bin' / 'python'),
            str(ROOT / 'packages' / 'granian-core'),
            str(ROOT / 'packages' / 'granian-rsgi'),
            str(ROOT / 'packages' / 'granian-asgi'),
            str(ROOT / 'packages' / 'granian-wsgi'),
            str(ROOT / 'packages' / 'granian-cli'),
            env={**os.environ, 'MATURIN_PEP517_ARGS': '--profile release'},
        )
    return {'ours': ours, f'granian {PEER_VERSION}': peer}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start(env: Path, scenario: dict, port: int) -> subprocess.Popen:
    cmd = [
        'taskset', '-c', '0', str(env / 'bin' / 'granian'),
        '--interface', scenario['interface'], '--port', str(port), '--loop', 'asyncio',
        '--workers', '1', '--log-level', 'warning', scenario['target'],
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f'{cmd} did not start')


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(port: int, connections: int, duration: int, script: str = '') -> dict:
    extra = ['-s', str(HERE / script)] if script else []
    cmd = ['taskset', '-c', '1', 'wrk', '-t1', f'-c{connections}', f'-d{duration}s', '--latency', *extra]
    out = subprocess.run([*cmd, f'http://127.0.0.1:{port}/'], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    socket_errors = re.search(r'Socket errors: (.*)', out)
    return {
        'rps': rps,
        'p50': re.search(r'50%\s+(\S+)', out).group(1),
        'p99': re.search(r'99%\s+(\S+)', out).group(1),
        'errors': int(errors.group(1)) if errors else 0,
        'socket_errors': socket_errors.group(1) if socket_errors else '',
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--duration', type=int, default=10)
    parser.add_argument('--quick', action='store_true', help='1 round of 3 s: a smoke check')
    parser.add_argument('--rebuild', action='store_true', help='reinstall our release build')
    parser.add_argument('--only', nargs='*', help='scenario names to run (default: all)')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3

    ensure_tools()
    envs = install_envs(args.rebuild)
    results = {}
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        runs = {server: [] for server in envs}
        ratios = []
        for _ in range(args.rounds):
            round_rps = {}
            for server, env in envs.items():
                port = free_port()
                proc = start(env, scenario, port)
                try:
                    wrk(port, scenario['connections'], 2, scenario.get('script', ''))  # warm-up
                    run = wrk(port, scenario['connections'], args.duration, scenario.get('script', ''))
                finally:
                    stop(proc)
                runs[server].append(run)
                round_rps[server] = run['rps']
            ratios.append(round_rps['ours'] / round_rps[f'granian {PEER_VERSION}'])
        results[name] = {
            'runs': runs,
            'median_rps': {server: statistics.median(r['rps'] for r in rs) for server, rs in runs.items()},
            'ratios': ratios,
            'median_ratio': statistics.median(ratios),
        }
        print(f'{name}: ' + ', '.join(f'{s} {v:.0f} req/s' for s, v in results[name]['median_rps'].items()), end='')
        print(f', ratio ours/granian {results[name]["median_ratio"]:.3f} (rounds: {[round(r, 3) for r in ratios]})')

    out_dir = HERE / 'results'
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime('%Y-%m-%dT%H%M%SZ')
    meta = {
        'date': stamp,
        'machine': f'{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}',
        'python': platform.python_version(),
        'peer': f'granian=={PEER_VERSION}',
        'rounds': args.rounds,
        'duration_s': args.duration,
    }
    (out_dir / f'{stamp}.json').write_text(json.dumps({'meta': meta, 'results': results}, indent=2))
    print(f'results written to {out_dir / (stamp + ".json")}')


if __name__ == '__main__':
    main()
