"""Dump the public Python surface of an installed `granian` as a JSON manifest.

Two uses:

    python tools/api_manifest.py reference [--version 2.8.7]
        Installs `granian==VERSION` from PyPI into a throwaway venv, dumps it there and
        writes tools/manifests/granian-VERSION.json. Run it again against a newer release
        to see what upstream changed (git diff the manifest).

    python tools/api_manifest.py dump [--out FILE]
        Dumps the `granian` importable in this interpreter (ours, in the workspace venv).

The dump is facts only: module names, public names and their kinds, class members, enum
members and values, callable signatures (parameter names, kinds, defaults), exception
bases, and the click option table of `granian.cli`. The compatibility test
(tests/test_api_compat.py) flattens two manifests into keys and compares them.

This file runs under the reference's interpreter too, so it uses the standard library only
(click is imported only when the dumped granian has a CLI).
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

MANIFEST_DIR = Path(__file__).resolve().parent / 'manifests'
DEFAULT_VERSION = '2.8.7'
# The reference's dependencies (click above all, whose option defaults are dumped) are
# resolved as PyPI stood on this day, so the manifest regenerates byte for byte later on.
RESOLVE_AS_OF = '2026-11-28T00:00:00Z'
# Modules of the package that only exist for some platforms or imports that fail without
# optional extras are recorded as such instead of aborting the dump.
_ADDRESS_RE = re.compile(r' at 0x[0-9a-fA-F]+')


def _clean_repr(value: Any) -> str:
    """A repr that is stable across runs and machines."""
    if isinstance(value, enum.Enum):
        return f'{type(value).__name__}.{value.name}'
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return f'{getattr(value, "__module__", "?")}.{getattr(value, "__qualname__", repr(value))}'
    if isinstance(value, Path):
        text = str(value)
        cwd = os.getcwd()
        if text == cwd or text.startswith(cwd + os.sep):
            text = '<cwd>' + text[len(cwd) :]
        return f'Path({text!r})'
    text = repr(value)
    return _ADDRESS_RE.sub('', text)


def _home(obj: Any) -> str | None:
    """The module an object says it comes from; classes of a compiled core that call their
    module plain `_granian` are counted as `granian._granian`."""
    module = getattr(obj, '__module__', None)
    if module == '_granian':
        return 'granian._granian'
    return module if isinstance(module, str) else None


def _qualified(cls: type) -> str:
    return f'{_home(cls)}.{cls.__qualname__}'


def _signature(obj: Any) -> dict[str, Any] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = []
    for param in sig.parameters.values():
        entry: dict[str, Any] = {'name': param.name, 'kind': param.kind.name}
        if param.default is not inspect.Parameter.empty:
            entry['default'] = _clean_repr(param.default)
        params.append(entry)
    return {'params': params}


def _is_package_object(obj: Any) -> bool:
    module = _home(obj)
    return module is not None and (module == 'granian' or module.startswith('granian.'))


def _describe_member(owner: type, name: str) -> dict[str, Any]:
    raw = inspect.getattr_static(owner, name)
    if isinstance(raw, staticmethod):
        return {'kind': 'staticmethod', 'signature': _signature(raw.__func__)}
    if isinstance(raw, classmethod):
        return {'kind': 'classmethod', 'signature': _signature(getattr(owner, name))}
    if isinstance(raw, property):
        return {'kind': 'property', 'settable': raw.fset is not None}
    if inspect.isfunction(raw) or inspect.ismethoddescriptor(raw) or inspect.isbuiltin(raw):
        return {'kind': 'method', 'signature': _signature(raw)}
    if inspect.isdatadescriptor(raw):
        return {'kind': 'attribute'}
    if inspect.isclass(raw):
        return {'kind': 'class'}
    if callable(raw):
        return {'kind': 'method', 'signature': _signature(raw)}
    return {'kind': 'attribute', 'value': _clean_repr(raw)}


# Constructors and protocol methods users call; other dunders are implementation detail.
_PUBLIC_DUNDERS = ('__init__', '__call__', '__aiter__', '__contains__', '__getitem__', '__iter__', '__len__')


def _class_members(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in cls.__mro__:
        # Members inherited from the standard library (Enum, Exception, dict...) are not ours to list.
        if not _is_package_object(klass):
            continue
        for name in vars(klass):
            if name in members:
                continue
            if name.startswith('_') and name not in _PUBLIC_DUNDERS:
                continue
            if isinstance(cls, enum.EnumMeta) and name in cls.__members__:
                continue
            members[name] = _describe_member(cls, name)
    return dict(sorted(members.items()))


_MEANINGFUL_BASES = {'builtins', 'enum'}


def _describe_class(cls: type) -> dict[str, Any]:
    entry: dict[str, Any] = {
        'kind': 'class',
        # Bases that decide behaviour (`except FatalError`, an enum being a str); typing's
        # Generic and abc helpers are how a class is written, not what it is.
        'bases': [
            _qualified(base) for base in cls.__mro__[1:] if _home(base) in _MEANINGFUL_BASES or _is_package_object(base)
        ],
    }
    if isinstance(cls, enum.EnumMeta):
        entry['kind'] = 'enum'
        entry['members'] = {name: _clean_repr(member.value) for name, member in cls.__members__.items()}
    elif issubclass(cls, BaseException):
        entry['kind'] = 'exception'
    if not isinstance(cls, enum.EnumMeta):
        entry['signature'] = _signature(cls)
    entry['attributes'] = _class_members(cls)
    return entry


def _describe(obj: Any) -> dict[str, Any]:
    if inspect.isclass(obj):
        return _describe_class(obj)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return {'kind': 'function', 'signature': _signature(obj)}
    if isinstance(obj, types.ModuleType):
        return {'kind': 'module'}
    if callable(obj):
        return {'kind': 'callable', 'type': type(obj).__name__, 'signature': _signature(obj)}
    if isinstance(obj, (bool, int, float, str, bytes, type(None))):
        return {'kind': 'value', 'type': type(obj).__name__, 'value': _clean_repr(obj)}
    if isinstance(obj, (dict, list, tuple, frozenset, set)):
        return {'kind': 'value', 'type': type(obj).__name__, 'value': _clean_repr(obj)}
    return {'kind': 'object', 'type': type(obj).__name__}


def _public_names(module: types.ModuleType) -> list[str]:
    """Names a user may import from the module.

    `__all__` when the module declares it. Otherwise every public name defined by the
    module itself, every plain value (constants have no home module), and for packages
    (whose `__init__` is the import surface) re-exports from inside granian too. Names a
    plain module merely imported from elsewhere are incidental and left out.
    """
    if module.__name__ == _CORE:
        # The compiled core's classes are compared where users import them from
        # (`granian.rsgi.HTTPProtocol`); here only its plain values (BUILD_GIL).
        return sorted(name for name, obj in vars(module).items() if _is_plain_value(obj) and _is_public(name))
    declared = getattr(module, '__all__', None)
    if declared is not None:
        return sorted(set(declared))
    is_package = hasattr(module, '__path__')
    names = []
    # Interface modules (`granian.rsgi`, `granian.net`) publish classes of the compiled core;
    # the server package and private modules only use them.
    own_homes = {module.__name__}
    if _is_interface_module(module.__name__):
        own_homes.add(_CORE)
    for name, obj in vars(module).items():
        if name.startswith('_'):
            continue
        if isinstance(obj, types.ModuleType):
            if is_package and obj.__name__ == f'{module.__name__}.{name}':
                names.append(name)
            continue
        home = _home(obj)
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            if _is_plain_value(obj) or _is_package_object(type(obj)):
                names.append(name)
            continue
        if home in own_homes or (is_package and _is_package_object(obj)):
            names.append(name)
    return sorted(names)


_CORE = 'granian._granian'


def _is_public(name: str) -> bool:
    return not name.startswith('_') or name == '__version__'


def _is_plain_value(obj: Any) -> bool:
    return isinstance(obj, (bool, int, float, str, bytes, dict, list, tuple, frozenset, set))


def _is_interface_module(name: str) -> bool:
    parts = name.split('.')
    return parts[1:2] != ['server'] and not any(part.startswith('_') for part in parts)


def _walk_modules() -> list[str]:
    import granian

    found = {'granian'}
    for info in pkgutil.walk_packages(granian.__path__, 'granian.'):
        # Importing a `__main__` runs the program.
        if not info.name.endswith('.__main__'):
            found.add(info.name)
    return sorted(found)


def _dump_cli() -> dict[str, Any] | None:
    try:
        cli_module = importlib.import_module('granian.cli')
    except ImportError:
        return None
    command = getattr(cli_module, 'cli', None)
    if command is None:
        return None
    import click

    params: dict[str, Any] = {}
    for param in command.params:
        key = param.opts[0] if param.opts else param.name
        entry: dict[str, Any] = {
            'param_type_name': param.param_type_name,
            'opts': sorted(param.opts),
            'secondary_opts': sorted(param.secondary_opts),
            'type': param.type.name,
            'nargs': param.nargs,
            'multiple': param.multiple,
            'required': param.required,
        }
        default = param.default
        entry['default'] = _clean_repr(default() if callable(default) else default)
        if isinstance(param, click.Option):
            entry['envvar'] = param.envvar
            entry['is_flag'] = param.is_flag
            entry['show_envvar'] = param.show_envvar
        choice_type = param.type
        if isinstance(choice_type, click.Choice):
            entry['choices'] = [str(choice) for choice in choice_type.choices]
        if isinstance(choice_type, click.types._NumberRangeBase):
            entry['range'] = {
                'min': choice_type.min,
                'max': choice_type.max,
                'min_open': choice_type.min_open,
                'max_open': choice_type.max_open,
                'clamp': choice_type.clamp,
            }
        params[key] = entry
    return {
        'name': command.name,
        'auto_envvar_prefix': (command.context_settings or {}).get('auto_envvar_prefix'),
        'params': params,
    }


def dump() -> dict[str, Any]:
    import granian

    modules: dict[str, Any] = {}
    for name in _walk_modules():
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optional extra missing, a platform-only module
            modules[name] = {'import_error': type(exc).__name__}
            continue
        names = {attr: _describe(getattr(module, attr)) for attr in _public_names(module) if hasattr(module, attr)}
        if '__version__' in names:
            # Its value is the release, which is not a fact of the API.
            names['__version__'].pop('value', None)
        modules[name] = {'names': names}
    return {
        'granian_version': getattr(granian, '__version__', None),
        'python': f'{sys.version_info.major}.{sys.version_info.minor}',
        'modules': modules,
        'cli': _dump_cli(),
    }


def _flatten_signature(prefix: str, signature: dict[str, Any] | None, out: dict[str, Any]) -> None:
    if signature is None:
        out[f'{prefix}()'] = 'no signature'
        return
    for index, param in enumerate(signature['params']):
        entry = {'kind': param['kind'], 'default': param.get('default', '<required>')}
        if param['kind'] in ('POSITIONAL_ONLY', 'POSITIONAL_OR_KEYWORD'):
            entry['position'] = index
        out[f'{prefix}({param["name"]})'] = entry


def _flatten_object(prefix: str, desc: dict[str, Any], out: dict[str, Any]) -> None:
    kind = desc['kind']
    head = {key: desc[key] for key in ('kind', 'type', 'value', 'settable') if key in desc}
    out[prefix] = head
    if kind in ('class', 'exception', 'enum'):
        out[f'{prefix}.__mro__'] = desc['bases']
        for name, value in desc.get('members', {}).items():
            out[f'{prefix}.{name}'] = {'kind': 'enum member', 'value': value}
        if 'signature' in desc:
            _flatten_signature(prefix, desc['signature'], out)
        for name, member in desc['attributes'].items():
            if name in ('__init__', '__new__'):
                continue  # the class's own signature above covers construction
            _flatten_object(f'{prefix}.{name}', member, out)
    elif 'signature' in desc:
        _flatten_signature(prefix, desc['signature'], out)


def flatten(manifest: dict[str, Any]) -> dict[str, Any]:
    """One key per fact, so that two manifests compare key by key.

    `granian.rsgi.HTTPProtocol` (kind), `granian.rsgi.HTTPProtocol.response_str(status)`
    (a parameter: kind, default, position), `granian.constants.Loops.uvloop` (an enum
    member's value), `cli --workers.range` (one field of a CLI option).
    """
    out: dict[str, Any] = {}
    for module, body in manifest['modules'].items():
        out[module] = {'kind': 'module', 'importable': 'import_error' not in body}
        for name, desc in body.get('names', {}).items():
            _flatten_object(f'{module}.{name}', desc, out)
    cli = manifest.get('cli')
    if cli:
        for key, option in cli['params'].items():
            for field, value in option.items():
                out[f'cli {key}.{field}'] = value
    return out


def _breaks_callers(key: str, extra: Any, reference: dict[str, Any]) -> bool:
    """Whether a fact only ours has can break code written for the reference: a new
    required parameter of a callable the reference has does; a new name, option, member
    or optional parameter does not."""
    if not (isinstance(extra, dict) and extra.get('default') == '<required>'):
        return False
    owner = key.rpartition('(')[0]
    return bool(owner) and owner in reference and extra.get('kind') not in ('VAR_POSITIONAL', 'VAR_KEYWORD')


def _is_subsequence(needle: Any, haystack: Any) -> bool:
    """Bases of the reference's class all present in ours, in the same order: every
    `isinstance` and `except` written for the reference still holds."""
    if not (isinstance(needle, list) and isinstance(haystack, list)):
        return False
    rest = iter(haystack)
    return all(any(base == other for other in rest) for base in needle)


def compare(reference: dict[str, Any], ours: dict[str, Any], *, extras: bool = False) -> dict[str, tuple[Any, Any]]:
    """Every key whose fact differs: (reference's, ours); a missing side is None.

    With `extras=False`, facts only ours has are left out unless they break callers.
    """
    ref_flat, our_flat = flatten(reference), flatten(ours)
    diffs = {}
    for key in sorted(set(ref_flat) | set(our_flat)):
        left, right = ref_flat.get(key), our_flat.get(key)
        if left == right or (key.endswith('.__mro__') and _is_subsequence(left, right)):
            continue
        if left is None and not extras and not _breaks_callers(key, right, ref_flat):
            continue
        diffs[key] = (left, right)
    return diffs


def write_json(data: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(data, indent=1, sort_keys=True) + '\n'
    if path is None:
        sys.stdout.write(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def reference(version: str, out: Path) -> None:
    """Install granian==VERSION from PyPI into a throwaway venv and dump it from there."""
    with tempfile.TemporaryDirectory(prefix='granian-ref-') as tmp:
        venv = Path(tmp) / 'venv'
        python = venv / 'bin' / 'python'
        # Same minor version as the interpreter running us: the dump records signatures,
        # and those of the standard library's bases vary across versions.
        subprocess.run(['uv', 'venv', '--quiet', '--python', sys.executable, str(venv)], check=True)
        installed = subprocess.run(
            [
                'uv',
                'pip',
                'install',
                '--quiet',
                '--exclude-newer',
                RESOLVE_AS_OF,
                '--python',
                str(python),
                f'granian=={version}',
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode != 0:
            raise SystemExit(f'could not install granian=={version} from PyPI: {installed.stderr.strip()}')
        # Run from the temporary directory so that no checkout's `granian` shadows the install.
        subprocess.run(
            [str(python), str(Path(__file__).resolve()), 'dump', '--out', str(out.resolve())],
            check=True,
            cwd=tmp,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    ref = sub.add_parser('reference', help='dump granian==VERSION from PyPI into tools/manifests/')
    ref.add_argument('--version', default=DEFAULT_VERSION)
    ref.add_argument('--out', type=Path, default=None)
    dmp = sub.add_parser('dump', help='dump the granian importable here')
    dmp.add_argument('--out', type=Path, default=None)
    dif = sub.add_parser('diff', help='print the differences of the granian importable here from a manifest')
    dif.add_argument('--version', default=DEFAULT_VERSION)
    dif.add_argument('--extras', action='store_true', help='list names only ours has, too')
    args = parser.parse_args(argv)
    if args.command == 'reference':
        out = args.out or MANIFEST_DIR / f'granian-{args.version}.json'
        reference(args.version, out)
        print(f'wrote {out}')
    elif args.command == 'diff':
        reference_manifest = json.loads((MANIFEST_DIR / f'granian-{args.version}.json').read_text())
        for key, (left, right) in compare(reference_manifest, dump(), extras=args.extras).items():
            print(f'{key}\n    reference: {left}\n    ours:      {right}')
    else:
        write_json(dump(), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
