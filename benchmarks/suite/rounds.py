"""The round scheduler: every row of a scenario once per round, interleaved (A B C, A B C, ...); then the
medians of each row and the ratios taken within each round (`ours/granian`, and with `--baseline`
`ours/ours-baseline`); and the lines printed as it goes."""

import statistics
import subprocess
import sys
import time
from typing import Dict, List

from .config import LOOPS
from .launch import measure
from .scenarios import Scenario
from .servers import OURS_BASELINE, PEER, SERVERS, Ctx, Row, parse_key


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


def round_ratios(runs: Dict[str, List[dict]], key: str, base_key: str) -> List[float]:
    """requests/s of row `key` over those of row `base_key`, round by round (the rounds both completed)."""
    return [
        r['rps'] / b['rps']
        for r, b in zip(runs[key], runs[base_key], strict=False)
        if 'rps' in r and 'rps' in b and b['rps'] > 0 and r['round'] == b['round']
    ]


def median_of(ok: Dict[str, List[dict]], field: str) -> Dict[str, float]:
    """The median of `field` of each row's completed runs that have it."""
    return {
        n: statistics.median(r[field] for r in rs if field in r) for n, rs in ok.items() if any(field in r for r in rs)
    }


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
        # The load generator's CPU over its run (1.0: its core busy all along) and per request.
        'median_load_cpu': median_of(ok, 'load_cpu'),
        'median_load_cpu_us_per_req': median_of(ok, 'load_cpu_us_per_req'),
        'failed_runs': {n: sum(1 for r in rs if 'rps' not in r) for n, rs in runs.items()},
        'baseline': {},
        'ratios': {},
        'median_ratio': {},
    }
    # Ratios to the granian release within each round: of the same loop for the granian family, of the first loop
    # (the README's headline section) for the others.
    for row in rows:
        base_key = Row(SERVERS[PEER], row.loop or (loops[0] if loops else '')).key
        if row.key == base_key or base_key not in runs:
            continue
        ratios = round_ratios(runs, row.key, base_key)
        summary['baseline'][row.key] = base_key
        summary['ratios'][row.key] = [round(x, 4) for x in ratios]
        if ratios:
            summary['median_ratio'][row.key] = statistics.median(ratios)
    # `--baseline`: ours against its build of the baseline revision, loop by loop, under keys of their own (only in
    # the results of such runs), keyed like the ratios above by the row of ours: {'ours@auto': ...}.
    baseline_rows = [row for row in rows if row.server.name == OURS_BASELINE]
    if baseline_rows:
        summary['ours_baseline'], summary['ours_baseline_ratios'], summary['median_ours_baseline_ratio'] = {}, {}, {}
        for row in baseline_rows:
            ours_key = Row(SERVERS['ours'], row.loop).key
            if ours_key not in runs:
                continue
            ratios = round_ratios(runs, ours_key, row.key)
            summary['ours_baseline'][ours_key] = row.key
            summary['ours_baseline_ratios'][ours_key] = [round(x, 4) for x in ratios]
            if ratios:
                summary['median_ours_baseline_ratio'][ours_key] = statistics.median(ratios)
    return summary


def round_line(runs: Dict[str, List[dict]], round_no: int) -> str:
    parts = []
    for name, rs in runs.items():
        r = rs[round_no - 1]
        cpu = f' ({r["cpu_us_per_req"]:.1f} µs)' if 'cpu_us_per_req' in r else ''
        parts.append(f'{name} {r["rps"]:.0f}{cpu}' if 'rps' in r else f'{name} failed')
    return ', '.join(parts)


def ours_ratios(summary: dict, field: str = 'median_ratio') -> Dict[str, float]:
    """ours/granian by loop (`field` 'median_ours_baseline_ratio': ours/ours-baseline)."""
    ratios = {}
    for key, ratio in summary.get(field, {}).items():
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
        load_cpu = summary.get('median_load_cpu', {}).get(name)
        if load_cpu is not None:
            text += f', load {load_cpu:.0%} CPU'
        if summary['errors'][name]:
            text += f', {summary["errors"][name]} errors'
        parts.append(text + ')')
    ratios = ', '.join(f'{loop} {ratio:.3f}' for loop, ratio in ours_ratios(summary).items())
    unit = 'msg/s' if summary['unit'] == 'messages/s' else 'req/s'
    line = f'[{unit}] ' + ', '.join(parts) + (f'; ours/granian: {ratios}' if ratios else '')
    against = ours_ratios(summary, 'median_ours_baseline_ratio')
    if against:
        line += '; ours/ours-baseline: ' + ', '.join(f'{loop} {ratio:.3f}' for loop, ratio in against.items())
    return line


def baseline_lines(results: Dict[str, dict], meta: dict) -> List[str]:
    """The before/after summary of a `--baseline` run: ours/ours-baseline per scenario and loop, with the
    per-round ratios."""
    head = (
        f'ours ({meta["ours_build"]}) / ours-baseline ({meta["ours_baseline_build"]}, --baseline '
        f'{meta["baseline_ref"]}), median of the per-round ratios [the rounds]:'
    )
    lines = [head]
    for name, summary in results.items():
        parts = []
        for key in summary.get('ours_baseline', {}):
            loop = parse_key(key)[1]
            median = summary['median_ours_baseline_ratio'].get(key)
            rounds = ' '.join(f'{x:.3f}' for x in summary['ours_baseline_ratios'][key])
            parts.append(f'{loop} {median:.3f} [{rounds}]' if median is not None else f'{loop} -')
        lines.append(f'  {name:22} ' + ('; '.join(parts) if parts else 'no ours or no ours-baseline row'))
    return lines
