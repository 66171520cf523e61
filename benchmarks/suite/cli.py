"""The command line of `benchmarks/run.py`: its options, `--list`, `--from-json`, and a whole run (setup, the
rounds, the results file, the README table and the chart)."""

import argparse
import atexit
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .config import DEFAULT_LOOPS, H3LOAD_BIN, LOOPS, RESULTS, ROOT
from .envs import ensure_fixtures, ensure_h3load, ensure_tools, install_envs, resolve_revision
from .procs import on_signal, stop_all
from .report import report
from .rounds import baseline_lines, run_suite
from .scenarios import QUICK, SCENARIOS, rows_of, scenario_loops, select
from .servers import ALL_INTERFACES, OURS_BASELINE, SERVERS, use_baseline


def tool_version(cmd: list) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    return ''


def parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        '--baseline',
        default='',
        metavar='REF',
        help=(
            f'before/after: also run ours built from this git revision (git archive, into .envs/{OURS_BASELINE}-SHA)'
            f' as {OURS_BASELINE}, beside ours wherever ours runs, and report ours/{OURS_BASELINE}'
        ),
    )
    parser.add_argument('--server-cpus', default='0', help='taskset CPU list of the servers')
    parser.add_argument('--load-cpus', default='1', help='taskset CPU list of the load generators')
    parser.add_argument('--readme', choices=['auto', 'always', 'never'], default='auto')
    parser.add_argument('--list', action='store_true', help='list the scenarios and their servers')
    parser.add_argument('--from-json', type=Path, help='only redo the README table and the chart of a results file')
    return parser


def list_scenarios() -> None:
    family = ', '.join(name for name, server in SERVERS.items() if server.granian)
    print(f'The granian family ({family}) runs once per loop of --loops (default: {" ".join(DEFAULT_LOOPS)}).')
    print(f'{OURS_BASELINE} runs only with --baseline REF, beside ours in every scenario where ours runs.')
    print(f'{"--quick loops":14} {"scenario":22} {"servers":58} what')
    for scenario in SCENARIOS.values():
        quick = ' '.join(QUICK.get(scenario.name, ['-']))
        print(f'{quick:14} {scenario.name:22} {", ".join(scenario.servers):58} {scenario.description}')


def main() -> None:
    cli = parser()
    args = cli.parse_args()
    if args.duration < 1 or args.rounds < 1:
        cli.error('--duration and --rounds must be at least 1')
    if args.servers and OURS_BASELINE in args.servers and not args.baseline:
        cli.error(f'--servers {OURS_BASELINE} needs --baseline REF (the git revision it is built from)')
    if args.quick:
        args.rounds, args.duration, args.warmup, args.ws_messages = 1, 2, 1, 300

    if args.list:
        list_scenarios()
        return
    if args.from_json:
        report(args.from_json.resolve(), args.readme)
        return

    baseline_revision = ''
    if args.baseline:
        try:
            baseline_revision = resolve_revision(args.baseline)
        except (OSError, subprocess.SubprocessError):
            cli.error(f'--baseline {args.baseline}: not a git revision of {ROOT}')
        use_baseline(baseline_revision)
    servers_filter = set(args.servers) if args.servers else None
    plan = [
        (scenario, rows_of(scenario, servers_filter, scenario_loops(scenario, args), baseline=bool(args.baseline)))
        for scenario in select(args)
    ]
    plan = [(scenario, rows) for scenario, rows in plan if rows]
    if not plan:
        sys.exit('nothing to run')
    if args.baseline and not any(row.server.name == OURS_BASELINE for _, rows in plan for row in rows):
        sys.exit(f'--baseline: {OURS_BASELINE} runs beside ours, and ours runs in none of the chosen scenarios')

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)
    began = time.monotonic()
    ensure_tools()
    installed = install_envs([row for _, rows in plan for row in rows], args)
    if any(scenario.load == 'h3load' for scenario, _ in plan):
        ensure_h3load()
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
    }
    if args.baseline:  # only in the results of a before/after run
        meta['ours_baseline_build'] = installed.get('baseline', {}).get('revision', baseline_revision)
        meta['baseline_ref'] = args.baseline
    meta['envs'] = installed['envs']
    meta['tools'] = {
        'wrk': tool_version(['wrk', '-v']),
        'h2load': tool_version(['h2load', '--version']),
        'h3load': tool_version([str(H3LOAD_BIN), '--version']),
    }
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f'{stamp}.json'
    json_path.write_text(json.dumps({'meta': meta, 'results': results}, indent=2))
    print(f'results written to {json_path.relative_to(ROOT)} ({meta["elapsed_s"]} s in all)')
    if args.baseline:
        print('\n'.join(baseline_lines(results, meta)))
    report(json_path, args.readme)
    failed = [(n, s) for n, r in results.items() for s, count in r['failed_runs'].items() if count]
    if failed:
        print('FAILED runs: ' + ', '.join(f'{n}/{s}' for n, s in failed))
        sys.exit(1)
