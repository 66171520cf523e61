"""Loading what the server runs: the application target and the environment files."""

import importlib
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, List, Optional, Union

from .errors import ConfigurationError, FatalError

PathLike = Union[str, os.PathLike]

# `module:attr` splits at the first colon that does not start a path (`C:\app.py:app`).
_TARGET_SEPARATOR = re.compile(r':(?![\\/])')

_DOTENV_MISSING = 'loading environment files needs the python-dotenv package: pip install granian[dotenv]'


def patch_pypath(wd: Optional[PathLike] = None) -> None:
    """Puts `wd` (resolved), or the current directory when None, first on `sys.path`."""
    entry = str(Path(wd).resolve()) if wd else ''
    if sys.path[:1] != [entry]:
        sys.path.insert(0, entry)


def get_import_components(path: str) -> List[Optional[str]]:
    """`[module or file, attribute]` of a target; the attribute is None when the target names none."""
    parts: List[Optional[str]] = list(_TARGET_SEPARATOR.split(path, maxsplit=1))
    if len(parts) == 1:
        parts.append(None)
    return parts


def prepare_import(path: str) -> str:
    """The module name to import for `path`, a dotted module name or a file of a package.

    The directory above the outermost package holding it goes first on `sys.path`:
    `src/pkg/app.py` (with `src/pkg/__init__.py`) is `pkg.app`, imported from `src`.
    """
    location = os.path.realpath(path)
    stem, ext = os.path.splitext(location)
    if ext == '.py':
        location = stem
    if os.path.basename(location) == '__init__':
        location = os.path.dirname(location)
    names = []
    while True:
        location, name = os.path.split(location)
        names.append(name)
        if not name or not os.path.exists(os.path.join(location, '__init__.py')):
            break
    if sys.path[:1] != [location]:
        sys.path.insert(0, location)
    return '.'.join(reversed(names))


def _is_the_module_missing(exc: ImportError, module_name: str) -> bool:
    """Whether the ImportError says `module_name` (or a package above it) does not exist,
    rather than that its code failed to import something else."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return False
    return exc.name == module_name or module_name.startswith(exc.name + '.')


def load_module(module_name: str, raise_on_failure: bool = True) -> Optional[ModuleType]:
    """Imports `module_name`.

    A module that does not exist is refused (FatalError), or with `raise_on_failure=False`
    gives None. A module that exists but fails to import is always refused, naming the error.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if _is_the_module_missing(exc, module_name):
            if not raise_on_failure:
                return None
            raise FatalError(f'cannot import module {module_name!r}: no such module') from exc
        raise FatalError(f'cannot import module {module_name!r}: {exc!r}') from exc
    except Exception as exc:
        raise FatalError(f'cannot import module {module_name!r}: {exc!r}') from exc


def load_target(target: str, wd: Optional[PathLike] = None, factory: bool = False) -> Any:
    """The object `target` names: `module:attr`, `path/to/file.py:attr`, or a module alone
    for its `app`. `attr` may be dotted. With `factory`, what the target returns when called.

    `wd` (or the current directory) goes first on `sys.path`. Whether the object can be
    served is the interface's call (`require_callable`).
    """
    patch_pypath(wd)
    path, attr = get_import_components(target)
    if not path:
        raise FatalError(f'invalid target {target!r}: expected module:attribute')
    module_name = prepare_import(path)
    attr = attr or 'app'
    obj: Any = load_module(module_name)
    for part in attr.split('.'):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FatalError(f'cannot find {attr!r} in module {module_name!r}') from None
    if factory:
        try:
            obj = obj()
        except Exception as exc:
            raise FatalError(f'the factory {target!r} raised {exc!r}') from exc
    return obj


def require_callable(app: Any, target: str) -> Any:
    if not callable(app):
        raise FatalError(f'the target {target!r} is not callable')
    return app


def _dotenv() -> ModuleType:
    try:
        import dotenv
    except ImportError:
        raise ConfigurationError(f'env_files: {_DOTENV_MISSING}') from None
    return dotenv


def load_env(files: Iterable[PathLike]) -> None:
    """Sets the variables of the env files that are not set yet: the environment, then the
    earlier files, win."""
    dotenv = _dotenv()
    for path in files or ():
        dotenv.load_dotenv(dotenv_path=path, override=False)


def build_env_loader() -> Callable[[Iterable[PathLike]], None]:
    """A loader of env files that never touches the variables set now, when it is built.

    Every other variable takes the value of the last file that sets it, on each call: calling
    it again (on reload) picks up edited files.
    """
    original = set(os.environ)

    def loader(files: Iterable[PathLike]) -> None:
        dotenv = _dotenv()
        for path in files or ():
            for key, value in dotenv.dotenv_values(dotenv_path=path).items():
                if value is not None and key not in original:
                    os.environ[key] = value

    return loader
