"""Developer sessions. They run in the uv workspace environment (`uv run nox -s NAME`)."""

import nox

nox.options.default_venv_backend = 'none'
nox.options.sessions = ['tests']


@nox.session
def rust(session):
    session.run('cargo', 'fmt', '--all', '--', '--check', external=True)
    session.run('cargo', 'clippy', '--all-targets', '--', '-D', 'warnings', external=True)
    session.run('cargo', 'test', '--quiet', external=True)


@nox.session
def lint(session):
    session.run('ruff', 'check', '.', external=True)
    session.run('ruff', 'format', '--check', '.', external=True)


@nox.session
def pytest(session):
    session.run('pytest', *(session.posargs or ['-q', '-rfE']), external=True)


@nox.session
def tests(session):
    """Everything CI checks: Rust lint and unit tests, Python lint, the pytest suite."""
    session.notify('rust')
    session.notify('lint')
    session.notify('pytest', session.posargs)


@nox.session
def bench(session):
    """The benchmark suite (benchmarks/README.md); `-- --quick` for a smoke check, `-- --list` for the scenarios,
    `-- --loops auto asyncio rloop` for the event loops of the granian rows (default: auto asyncio)."""
    session.run('python', 'benchmarks/run.py', *session.posargs, external=True)


@nox.session
def build(session):
    """Release wheels of every distribution into dist/."""
    session.run('uv', 'build', '--all-packages', '--out-dir', 'dist', external=True)
