"""The output of a results file: the README table (Markdown between the bench markers), the chart (chart.py in the
tools env), and the README update."""

import json
import subprocess
from pathlib import Path
from typing import List, Optional

from .config import BENCH, ENVS, LOOPS, MARK_END, MARK_START, README, ROOT
from .procs import sh
from .servers import SERVERS, label, parse_key


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
BASELINE_NOTE = (
    '`ours/ours-baseline` is the median of the per-round ratios of ours to ours built from the baseline revision '
    '(`--baseline`), on the same loop.'
)


def is_comparison(data: dict) -> bool:
    """A before/after run (`--baseline`): ours against a build of another revision of ours."""
    return 'ours_baseline_build' in data['meta']


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
    )
    if is_comparison(data):
        setup += f'Ours baseline: {meta["ours_baseline_build"]} (`--baseline {meta["baseline_ref"]}`). '
    setup += f'Load average at the start: {meta["loadavg_start"]}.'
    lines += [setup, '']
    if meta['quick']:
        lines += [QUICK_NOTE, '']
    if chart:
        lines += [f'![requests/s per scenario and server]({chart})', '']
    keys = [key for r in results.values() for key in r['servers']]
    loops = [loop for loop in LOOPS if any(parse_key(key)[1] == loop for key in keys)]
    legend = LEGEND + (' ' + BASELINE_NOTE if is_comparison(data) else '')
    lines += [legend + (' ' + LOOPS_NOTE if loops else ''), '']
    for loop in loops or ['']:
        if loop:
            lines += [f'### {LOOPS[loop].title}', '']
        lines += render_section(results, loop, others=loop == (loops or [''])[0])
    errors = [
        f'{n} / {s}: {r["errors"][s]}' for n, r in results.items() for s in r['errors'] if r['errors'][s]
    ]  # fmt: skip
    if errors:
        lines += [
            'Errors (wrk: non-2xx and socket errors; h2load: failed requests; h3load: failed requests, non-2xx, '
            'connections not made or lost; ws: failed echoes and close handshakes over 1 s): ' + '; '.join(errors),
            '',
        ]
    lines += load_lines(results)
    lines.append(MARK_END)
    return '\n'.join(lines)


# A load generator at this share of its core or more measured itself as much as the server.
LOAD_BOUND = 0.9


def load_lines(results: dict) -> List[str]:
    """What the load generators could drive: the rows where one ran at LOAD_BOUND of its core or more (the number
    is then its ceiling as much as the server's), and for HTTP/3 the load client's CPU per request in the fastest
    row of each scenario, whose inverse is about the most it can drive on its one core (there is no no-Python
    HTTP/3 server to measure that ceiling against; against slower servers it batches less, and its CPU per request
    says nothing of its limit)."""
    bound, h3 = [], []
    for name, r in results.items():
        for key, cpu in r.get('median_load_cpu', {}).items():
            if cpu >= LOAD_BOUND:
                bound.append(f'{name} / {key} ({cpu:.0%})')
        measured = [key for key in r.get('median_load_cpu_us_per_req', {}) if key in r.get('median_load_cpu', {})]
        if r.get('load') == 'h3load' and measured:
            key = max(measured, key=lambda k: r['median_rps'][k])
            us, cpu = r['median_load_cpu_us_per_req'][key], r['median_load_cpu'][key]
            h3.append(
                f'{name}, at {fmt_int(r["median_rps"][key])} requests/s ({key}): {cpu:.0%} of its core, {us:.1f} µs '
                f'per request, so at most about {fmt_int(1e6 / us)} requests/s'
            )
    lines = []
    if bound:
        lines += [f'Load generator at {LOAD_BOUND:.0%} of its core or more: ' + '; '.join(bound) + '.', '']
    if h3:
        lines += ['HTTP/3 load client (granian-bench-h3load, one thread): ' + '; '.join(h3) + '.', '']
    return lines


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
        against = any(results[n].get('median_ours_baseline_ratio') for n in names)  # a `--baseline` run
        lines += [f'{level} {group.upper() if group != "static" else "Static files"}', '']
        header = '| scenario | ' + ' | '.join(label(s) for s in present) + ' | ours/granian |'
        lines.append(header + (' ours/ours-baseline |' if against else ''))
        lines.append('| --- |' + ' ---: |' * (len(present) + 1 + against))
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
            line = f'| {n} | ' + ' | '.join(cells) + f' | {f"{ratio:.2f}" if ratio else "—"} |'
            if against:
                ratio = r.get('median_ours_baseline_ratio', {}).get(keys.get('ours'))
                line += f' {f"{ratio:.2f}" if ratio else "—"} |'
            lines.append(line)
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


def update_readme(block: str, quick: bool, policy: str, comparison: bool = False) -> bool:
    """Puts `block` between the bench markers: `always`; `never`; `auto`: unless it would replace the table of a
    full run by a quick run's, or it is a before/after run (`--baseline`)."""
    text = README.read_text() if README.exists() else '# Benchmarks\n'
    current = ''
    if MARK_START in text and MARK_END in text:
        current = text[text.index(MARK_START) : text.index(MARK_END) + len(MARK_END)]
    if policy == 'never' or (policy == 'auto' and quick and 'bench:kind=full' in current):
        return False
    if policy == 'auto' and comparison:
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
        sh(str(python), str(BENCH / 'chart.py'), str(json_path), str(png_path), timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f'chart failed: {exc}', flush=True)
        return False
    return True


def report(json_path: Path, policy: str) -> None:
    data = json.loads(json_path.read_text())
    png = json_path.with_suffix('.png')
    chart = f'results/{png.name}' if make_chart(json_path, png) else None
    block = render_markdown(data, chart)
    if update_readme(block, data['meta']['quick'], policy, is_comparison(data)):
        print(f'README table updated ({README.relative_to(ROOT)})')
    elif policy == 'auto' and is_comparison(data):
        print(
            'README left as it is: a before/after run (--baseline) is not the suite table (--readme always writes it)'
        )
    elif policy == 'auto':
        print('README left as it is: a quick run does not replace the table of a full run (--readme always does)')
    if chart:
        print(f'chart written to {png.relative_to(ROOT)}')
