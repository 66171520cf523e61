import importlib
import os
import sys
from typing import Any, Optional

from .errors import FatalError


def load_target(target: str, factory: bool = False, working_dir: Optional[str] = None) -> Any:
    """Imports `module:attr` (attr defaults to `app`), from the working directory too.

    Whether the object is servable is the interface's call (`require_callable`)."""
    if working_dir:
        os.chdir(working_dir)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module_name, _, attr = target.partition(':')
    attr = attr or 'app'
    if not module_name:
        raise FatalError(f'invalid target {target!r}: expected module:attribute')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise FatalError(f'cannot import module {module_name!r}: no such module') from exc
        raise FatalError(f'cannot import module {module_name!r}: {exc!r}') from exc
    except Exception as exc:
        raise FatalError(f'cannot import module {module_name!r}: {exc!r}') from exc
    obj: Any = module
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
