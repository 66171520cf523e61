"""The benchmark suite behind `benchmarks/run.py`, by responsibility:

- `config`: paths, the pinned packages of each env, the event loops (`LOOPS`);
- `servers`: the servers, their command lines, and the rows of the results (a server, and a loop);
- `scenarios`: the scenario table, the `--quick` subset, which rows a scenario measures;
- `procs`: child processes (start, stop, CPU time, peak RSS) and the one-cargo-build-at-a-time rule;
- `envs`: the virtual envs, our release build (from the working tree or a git revision), the ceiling and the HTTP/3
  load client, fixtures;
- `loads`: the load generators (wrk, h2load, granian-bench-h3load, ws_load.py), the parsing of their output, the
  HTTP/3 probe;
- `launch`: one run: start a server, probe it, warm it up, measure it, stop it;
- `rounds`: the interleaved rounds of each scenario, medians and per-round ratios, the console lines;
- `report`: the README table, the chart, the README update;
- `cli`: the command line.
"""
