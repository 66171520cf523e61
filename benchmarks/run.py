"""Benchmark suite: this server against the `granian` release, uvicorn, hypercorn, gunicorn and a
no-Python hyper ceiling, per interface (RSGI, ASGI, WSGI) and scenario.

Every server runs from its own virtual env under benchmarks/.envs (ours as a release build of
packages/*, the peers pinned from PyPI), 1 worker, pinned to one CPU with `taskset`; the load
generator (wrk for HTTP/1.1, h2load for HTTP/2, granian-bench-h3load from benchmarks/h3load for
HTTP/3, ws_load.py for websockets) is pinned to another.
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

    python benchmarks/run.py                  # everything, 3 rounds of 10 s, auto + asyncio (about 2.9 h)
    python benchmarks/run.py --quick          # smoke check: a subset, 1 round of 2 s (about 3 min)
    python benchmarks/run.py --list           # the scenarios, their servers, the loops of --quick
    python benchmarks/run.py --only 'asgi-*' --servers ours granian --rounds 5 --loops auto
    python benchmarks/run.py --from-json benchmarks/results/X.json   # README table and chart again
    python benchmarks/run.py --servers ours ours-baseline --baseline HEAD~3   # before/after a refactor

Results: benchmarks/results/<date>.json (every run records its loop) and <date>.png; the table
between the bench markers of benchmarks/README.md, one section per loop, auto (uvloop) first (a
quick run never replaces the table of a full run). Results files from before the loop dimension
have no loop: their granian rows ran asyncio and render as such.

Before/after (`--baseline REF`): ours is built a second time, from the git revision REF (`git archive`, as for
`--ref`), into .envs/ours-baseline-SHA (kept for the next run of the same revision), and runs as the row
`ours-baseline` beside ours wherever ours runs, in the same interleaved rounds; `ours/ours-baseline` is reported
next to `ours/granian`, per scenario and loop.

The code is in the package `suite/` beside this file, one module per part (see its __init__).
"""

from suite.cli import main

if __name__ == '__main__':
    main()
