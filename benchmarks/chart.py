"""The chart of a results file: requests/s (websockets: messages/s) per scenario and server.

    python chart.py results/<date>.json results/<date>.png

Runs in the suite's tools env (matplotlib), not the project's dev env. One small panel per
scenario, each with its own scale (a 1 MiB response and a 13-byte hello differ by orders of
magnitude), one bar per row: a server, and for the granian family the loop it ran (`ours@auto`,
`granian@asyncio`; older results files, without loops, ran asyncio). The color is the server's, the
loop is the shade: auto (uvloop) full, asyncio lighter, rloop hatched.
"""

import json
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt

COLORS = {
    'ours': '#d62728',
    'ours-baseline': '#ff9896',  # `--baseline`: ours built from another revision
    'granian': '#1f77b4',
    'uvicorn': '#2ca02c',
    'hypercorn': '#9467bd',
    'gunicorn-sync': '#8c564b',
    'gunicorn-gthread': '#e377c2',
    'ceiling': '#7f7f7f',
}
LOOP_STYLE = {'auto': {}, 'asyncio': {'alpha': 0.55}, 'rloop': {'alpha': 0.8, 'hatch': '///'}}


def ratios(result: dict) -> str:
    """ours/granian, by loop."""
    parts = []
    for key, ratio in result.get('median_ratio', {}).items():
        server, _, loop = key.partition('@')
        if server == 'ours':
            parts.append(f'{loop} {ratio:.2f}' if loop else f'{ratio:.2f}')
    return ', '.join(parts)


def main(json_path: Path, png_path: Path) -> None:
    data = json.loads(json_path.read_text())
    meta, results = data['meta'], data['results']
    names = list(results)
    cols = 4 if len(names) > 6 else max(1, min(3, len(names)))
    rows = math.ceil(len(names) / cols)
    bars = max((len(results[name]['servers']) for name in names), default=1)
    height = max(2.3, 0.8 + 0.16 * bars)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows + 0.9), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis('off')
    for ax, name in zip(axes.flat, names, strict=False):
        result = results[name]
        servers = [s for s in result['servers'] if s in result['median_rps']]
        values = [result['median_rps'][s] for s in servers]
        y = range(len(servers))
        for i, (key, value) in enumerate(zip(servers, values, strict=True)):
            server, _, loop = key.partition('@')
            ax.barh(i, value, color=COLORS.get(server, '#bcbd22'), height=0.7, **LOOP_STYLE.get(loop, {}))
        ax.set_yticks(list(y), servers, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis='x', labelsize=6)
        unit = 'msg/s' if result.get('unit') == 'messages/s' else 'req/s'
        ratio = ratios(result)
        title = f'{name} ({unit})' + (f'  ours/granian {ratio}' if ratio else '')
        ax.set_title(title, fontsize=8)
        top = max(values) if values else 1
        ax.set_xlim(0, top * 1.28)
        for i, value in enumerate(values):
            errors = result.get('errors', {}).get(servers[i], 0)
            text = f'{value:,.0f}'.replace(',', ' ') + (' †' if errors else '')
            ax.text(value + top * 0.01, i, text, va='center', fontsize=6)
    kind = 'QUICK SMOKE RUN, not a measurement' if meta.get('quick') else f'median of {meta["rounds"]} rounds'
    title = f'Benchmark suite {meta["date"]}: {kind}; † = errors'
    if meta.get('loops'):
        title += '; @auto: --loop auto with uvloop installed (uvloop), @asyncio: --loop asyncio'
    fig.suptitle(textwrap.fill(title, 45 * cols), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97 if cols > 1 else 0.88))
    fig.savefig(png_path, dpi=110)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[2].strip())
    main(Path(sys.argv[1]), Path(sys.argv[2]))
