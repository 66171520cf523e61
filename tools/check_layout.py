"""Checks the shape of the code base: no import circle between files (the Rust crate, the
Python packages), no Python in the crate's `http/` folder, and no source file over the
length limit outside the tests.

    python tools/check_layout.py          # prints the problems, exits 1 if any

Rust: an edge goes from a file to every file of the crate it names (`crate::a::b`,
`super::x`, or a child module of a `mod.rs`), in `use` lines or inline paths; a file's
`#[cfg(test)]` tail is left out (its `super::` is the file itself). Python: an edge goes from
a module to every module of our packages it imports, anywhere in the file (imports inside
functions count: they do not make a circle go away).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATE = ROOT / 'packages' / 'granian-core' / 'src'
PYTHON_ROOTS = [
    ROOT / 'packages' / 'granian-core' / 'python',
    ROOT / 'packages' / 'granian-asgi',
    ROOT / 'packages' / 'granian-rsgi',
    ROOT / 'packages' / 'granian-wsgi',
    ROOT / 'packages' / 'granian-cli',
    ROOT / 'packages' / 'granian-proxies',
]
MAX_LINES = 600
# Crate folders that must stay free of Python: they compile and test without an interpreter.
PYTHON_FREE = ['http']
# What the Python-free folders may not name.
PYTHON_MARKERS = re.compile(r'\bpyo3\b|\bPython\b|crate::(app|bridge|runner|task|awaitable|convert|rsgi|asgi|wsgi)\b')
SOURCE_SUFFIXES = {'.py', '.rs'}
LENGTH_EXEMPT_DIRS = {'tests', '.venv', 'target', '.envs', 'node_modules', '.git'}


# -- Rust ------------------------------------------------------------------------------


def rust_modules() -> dict[tuple[str, ...], Path]:
    """Module path (('http', 'server')) -> file; the crate root is ()."""
    modules = {}
    for path in CRATE.rglob('*.rs'):
        parts = path.relative_to(CRATE).with_suffix('').parts
        if parts == ('lib',):
            parts = ()
        elif parts[-1] == 'mod':
            parts = parts[:-1]
        modules[parts] = path
    return modules


def _code_without_tests(text: str) -> str:
    marker = text.find('#[cfg(test)]')
    text = text if marker < 0 else text[:marker]
    # Comments name paths too ("see `bridge::BridgeQueue`"): they are not dependencies.
    return re.sub(r'//[^\n]*', '', text)


def _resolve(modules: dict, base: tuple[str, ...], path: list[str]) -> tuple[str, ...] | None:
    """The longest module prefix of base + path that is a file."""
    full = base + tuple(path)
    for end in range(len(full), len(base) - 1, -1):
        if full[:end] in modules:
            return full[:end]
    return None


def rust_edges() -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    modules = rust_modules()
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {module: set() for module in modules}
    for module, path in modules.items():
        code = _code_without_tests(path.read_text())
        is_dir_module = path.name in ('mod.rs', 'lib.rs')
        # `super` is the parent module of this file's module.
        parent = module[:-1]
        children = set(re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', code, re.MULTILINE))
        for match in re.finditer(r'\b(crate|super)((?:::\w+)+)', code):
            names = match.group(2).split('::')[1:]
            base = () if match.group(1) == 'crate' else parent
            target = _resolve(modules, base, names)
            if target is not None and target != module:
                edges[module].add(target)
        if is_dir_module and children:
            for match in re.finditer(r'(?<![\w:])(\w+)::\w+', code):
                if match.group(1) in children:
                    edges[module].add(module + (match.group(1),))
    return edges


# -- Python ----------------------------------------------------------------------------


def python_modules() -> dict[str, Path]:
    modules = {}
    for root in PYTHON_ROOTS:
        for path in (root / 'granian').rglob('*.py'):
            parts = list(path.relative_to(root).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            modules['.'.join(parts)] = path
    return modules


def extension_modules() -> set[str]:
    """Compiled modules (`granian._granian`): leaves, whatever they import."""
    found = set()
    for root in PYTHON_ROOTS:
        for path in (root / 'granian').rglob('*.so'):
            parts = list(path.relative_to(root).parts)
            parts[-1] = parts[-1].split('.')[0]
            found.add('.'.join(parts))
    found.add('granian._granian')
    return found


def python_edges() -> dict[str, set[str]]:
    modules = python_modules()
    leaves = extension_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')
                    base = base[: len(base) - (node.level - 1)]
                    source = '.'.join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ''
                # `from pkg import sub` imports the submodule when there is one.
                targets = [
                    f'{source}.{alias.name}' if f'{source}.{alias.name}' in modules else source for alias in node.names
                ]
            for target in targets:
                if target in leaves:
                    continue
                while target and target not in modules:
                    target = target.rpartition('.')[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


# -- shared ----------------------------------------------------------------------------


def cycles(edges: dict) -> list[list]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    found: list[list] = []
    counter = [0]

    def visit(node) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def long_files() -> list[tuple[Path, int]]:
    found = []
    for path in sorted(ROOT.rglob('*')):
        if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
            continue
        if LENGTH_EXEMPT_DIRS.intersection(path.relative_to(ROOT).parts):
            continue
        lines = len(path.read_text(errors='replace').splitlines())
        if lines > MAX_LINES:
            found.append((path.relative_to(ROOT), lines))
    return found


def python_in_pure_folders() -> list[str]:
    found = []
    for folder in PYTHON_FREE:
        for path in sorted((CRATE / folder).rglob('*.rs')):
            code = _code_without_tests(path.read_text())
            for number, line in enumerate(code.splitlines(), 1):
                if PYTHON_MARKERS.search(line):
                    found.append(f'{path.relative_to(ROOT)}:{number}: Python in a Python-free folder: {line.strip()}')
    return found


def problems() -> list[str]:
    found = python_in_pure_folders()
    for component in cycles(rust_edges()):
        names = ', '.join('crate::' + '::'.join(module) if module else 'crate' for module in component)
        found.append(f'Rust import circle: {names}')
    for component in cycles(python_edges()):
        found.append(f'Python import circle: {", ".join(component)}')
    for path, lines in long_files():
        found.append(f'{path}: {lines} lines (the limit is {MAX_LINES} outside tests)')
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(problem)
    if not found:
        print('layout ok: no import circle, no source file over the limit')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
