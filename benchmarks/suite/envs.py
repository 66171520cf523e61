"""The virtual envs under benchmarks/.envs and what fills them: the peers from PyPI, our release build (from the
working tree, `--ref` or `--baseline`), the ceiling and the HTTP/3 load client, the suite's tools, the certificates
and the static files."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

from .config import (
    BENCH,
    CEILING_BIN,
    ENVS,
    H3LOAD_BIN,
    LOOP_ENV_PACKAGES,
    OUR_PACKAGES,
    OURS_WHEELS,
    PEER_ENVS,
    ROOT,
    STATIC_FILES,
    TOOLS_ENV,
)
from .procs import sh, wait_for_cargo_idle
from .servers import OURS_BASELINE, Ctx, Row


def ensure_tools() -> None:
    wanted = {'wrk': 'wrk', 'h2load': 'nghttp2-client', 'taskset': 'util-linux'}
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if missing:
        print(f'installing {" ".join(missing)} with apt-get', flush=True)
        sh('apt-get', 'update', '-qq', timeout=600)
        sh(
            'apt-get',
            'install',
            '-y',
            '-qq',
            *missing,
            timeout=900,
            env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'},
        )


def venv(name: str) -> Path:
    path = ENVS / name
    if not (path / 'bin' / 'python').exists():
        sh('uv', 'venv', '-q', '-p', sys.executable, str(path), timeout=300)
    return path


def pip_install(target: Path, *requirements: str, **kwargs) -> None:
    sh('uv', 'pip', 'install', '-q', '-p', str(target / 'bin' / 'python'), *requirements, **kwargs)


def source_fingerprint(root: Path) -> str:
    """A hash of the sources our build is made of, to tell a stale build."""
    digest = hashlib.sha256()
    for package in OUR_PACKAGES:
        for path in sorted((root / 'packages' / package).rglob('*')):
            if path.suffix in {'.rs', '.py', '.pyi', '.toml'} and path.is_file() and '__pycache__' not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    for name in ('Cargo.lock',):
        if (root / name).exists():
            digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def _git(*args: str, check: bool = False) -> str:
    return subprocess.run(
        ['git', *args], cwd=ROOT, check=check, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def git_describe() -> str:
    try:
        rev = _git('rev-parse', '--short', 'HEAD')
        dirty = _git('status', '--porcelain', '--', 'packages')
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return f'{rev}{"+dirty" if dirty else ""}'


def resolve_revision(ref: str) -> str:
    """The short commit id of a git revision (`--ref`, `--baseline`); CalledProcessError when it names none."""
    return _git('rev-parse', '--verify', '--short', f'{ref}^{{commit}}', check=True)


@contextlib.contextmanager
def sources(ref: str, revision: str) -> Iterator[Path]:
    """The tree to build ours from: the working tree, or with `ref` that revision's files (`git archive` into
    .envs/src-REVISION, removed afterwards)."""
    if not ref:
        yield ROOT
        return
    source = ENVS / f'src-{revision}'
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    try:
        archive = subprocess.run(['git', 'archive', ref], cwd=ROOT, capture_output=True, check=True, timeout=120)
        subprocess.run(['tar', '-x', '-C', str(source)], input=archive.stdout, check=True, timeout=120)
        yield source
    finally:
        shutil.rmtree(source, ignore_errors=True)


def read_stamp(path: Path) -> dict:
    """What a `.source` stamp says was built ({'revision', 'fingerprint'}), {} when there is none."""
    return json.loads(path.read_text()) if path.exists() else {}


def install_ours(names: List[str], rebuild: bool, ref: str, wheels: Path = OURS_WHEELS, keep: bool = False) -> dict:
    """Our release build (LTO, as users get it; not the editable dev build) into the envs `names` (.envs/ours and,
    for rloop, .envs/ours-rloop): built once as wheels into `wheels` (.envs/ours-wheels), installed into each env.
    An env that holds a build is kept unless the wheels are of another build or were just built (--rebuild, --ref).
    With `ref` the build is of that git revision, made every time, unless `keep` and the wheels already are that
    revision's (`--baseline`: a revision's build does not change)."""
    wheels_stamp = wheels / '.source'
    if ref:
        revision = resolve_revision(ref)
        rebuild = rebuild or not keep or read_stamp(wheels_stamp).get('revision') != revision
    else:
        revision = git_describe()
    missing = [name for name in names if not (ENVS / name / 'bin' / 'granian').exists()]
    built_now = rebuild or bool(missing and not wheels_stamp.exists())
    if built_now:
        with sources(ref, revision) as source:
            build_ours(source, revision, source_fingerprint(source), wheels)
    wheels_build = wheels_stamp.read_text() if wheels_stamp.exists() else None
    for name in names:
        env, stamp = venv(name), ENVS / name / '.source'
        env_build = stamp.read_text() if stamp.exists() else None
        if wheels_build is not None and (built_now or env_build != wheels_build):
            built_wheels = sorted(str(path) for path in wheels.glob('*.whl'))
            pip_install(env, '--reinstall', '--no-sources', *built_wheels, timeout=900)
            stamp.write_text(wheels_build)
    built = read_stamp(ENVS / names[0] / '.source') or {'revision': 'unknown', 'fingerprint': ''}
    built['stale'] = not ref and built.get('fingerprint') != source_fingerprint(ROOT)
    if built['stale']:
        print(
            f'WARNING: our build ({built["revision"]}) differs from the sources in the working tree: --rebuild builds them',
            flush=True,
        )
    return built


def build_ours(source: Path, revision: str, fingerprint: str, wheels: Path = OURS_WHEELS) -> None:
    print(f'building ours ({revision}) in release mode into {wheels} ...', flush=True)
    wait_for_cargo_idle()
    started = time.monotonic()
    shutil.rmtree(wheels, ignore_errors=True)
    build_env = {**os.environ, 'MATURIN_PEP517_ARGS': '--profile release', 'CARGO_TARGET_DIR': str(ROOT / 'target')}
    for package in OUR_PACKAGES:
        sh(
            'uv', 'build', '-q', '--wheel', '--no-sources', '-p', sys.executable, '--out-dir', str(wheels),
            str(source / 'packages' / package), env=build_env, timeout=3600,
        )  # fmt: skip
    (wheels / '.source').write_text(json.dumps({'revision': revision, 'fingerprint': fingerprint}))
    print(f'  built in {time.monotonic() - started:.0f} s', flush=True)


def ensure_bench_crate(directory: str, package: str, binary: Path, what: str) -> None:
    """A workspace crate of benchmarks/ (`directory`), built in release mode when its binary is missing or older
    than its sources."""
    inputs = [*(BENCH / directory).rglob('*.rs'), BENCH / directory / 'Cargo.toml']
    if binary.exists() and binary.stat().st_mtime >= max(p.stat().st_mtime for p in inputs):
        return
    print(f'building {what}: cargo build --release -p {package} ...', flush=True)
    wait_for_cargo_idle()
    sh('cargo', 'build', '--release', '--quiet', '-p', package, cwd=ROOT, timeout=3600)


def ensure_ceiling() -> None:
    """The no-Python ceiling (benchmarks/ceiling)."""
    ensure_bench_crate('ceiling', 'granian-bench-ceiling', CEILING_BIN, 'the ceiling')


def ensure_h3load() -> None:
    """The HTTP/3 load client (benchmarks/h3load), for the scenarios whose load is `h3load`."""
    ensure_bench_crate('h3load', 'granian-bench-h3load', H3LOAD_BIN, 'the HTTP/3 load client')


def install_envs(rows: List[Row], args) -> dict:
    """Creates and fills the envs the chosen rows need; returns {'envs': env -> `uv pip freeze`, 'ours': build}
    and, when ours-baseline runs, 'baseline': its build."""
    wanted = {row.env: row for row in rows if row.server.env}  # one row per env tells what it holds
    ours = sorted(name for name, row in wanted.items() if row.server.env == 'ours')
    installed = {'envs': {}, 'ours': install_ours(ours, args.rebuild, args.ref) if ours else {}}
    baseline = sorted(name for name, row in wanted.items() if row.server.name == OURS_BASELINE)
    if baseline:
        wheels = ENVS / f'{wanted[baseline[0]].server.env}-wheels'
        installed['baseline'] = install_ours(baseline, False, args.baseline, wheels=wheels, keep=True)
    for name, row in sorted(wanted.items()):
        env = venv(name)
        pip_install(env, *PEER_ENVS.get(row.server.env, []), *row.env_packages, timeout=900)
        if row.loop:
            drop_other_loops(env, row.env_packages)
        installed['envs'][name] = freeze(env)
    if any(row.server.ceiling for row in rows):
        ensure_ceiling()
    tools = venv('tools')
    pip_install(tools, *TOOLS_ENV, timeout=900)
    return installed


def drop_other_loops(env: Path, packages: List[str]) -> None:
    """Uninstalls from a granian-family env the loop packages it must not hold (rloop in the env of `auto` would
    make it run rloop)."""
    others = {req.partition('==')[0] for reqs in LOOP_ENV_PACKAGES.values() for req in reqs if req not in packages}
    present = [req.partition('==')[0] for req in freeze(env) if req.partition('==')[0] in others]
    if present:
        sh('uv', 'pip', 'uninstall', '-q', '-p', str(env / 'bin' / 'python'), *present, timeout=300)


def freeze(env: Path) -> List[str]:
    out = subprocess.run(
        ['uv', 'pip', 'freeze', '-p', str(env / 'bin' / 'python')],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.split()


def ensure_fixtures() -> Ctx:
    """Certificates from trustme (a local CA, a leaf for 127.0.0.1) and the static file."""
    certs = ENVS / 'certs'
    cert, key, ca = certs / 'cert.pem', certs / 'key.pem', certs / 'ca.pem'
    if not (cert.exists() and key.exists() and ca.exists()):
        certs.mkdir(parents=True, exist_ok=True)
        code = (
            'import sys, trustme\n'
            'ca = trustme.CA()\n'
            "leaf = ca.issue_cert('127.0.0.1', 'localhost')\n"
            "open(sys.argv[1], 'wb').write(b''.join(pem.bytes() for pem in leaf.cert_chain_pems))\n"
            "open(sys.argv[2], 'wb').write(leaf.private_key_pem.bytes())\n"
            "open(sys.argv[3], 'wb').write(ca.cert_pem.bytes())\n"
        )
        sh(str(ENVS / 'tools' / 'bin' / 'python'), '-c', code, str(cert), str(key), str(ca), timeout=120)
    static_dir = ENVS / 'static'
    static_dir.mkdir(parents=True, exist_ok=True)
    for name, size in STATIC_FILES.items():
        if not (static_dir / name).exists():
            (static_dir / name).write_bytes(b'x' * size)
    return Ctx(port=0, cert=cert, key=key, static_dir=static_dir)
