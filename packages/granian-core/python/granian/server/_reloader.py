"""Reloading on changes (`reload=True`): watching the reload paths for changed files."""

import contextlib
import re
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from ..log import logger
from ._server_options import ServerOptions


class Reloader:
    """Watches the reload paths on a thread of the main process: each batch of changes calls
    `request_reload(reason)` once (watchfiles groups a burst of writes into one batch)."""

    def __init__(self, options: ServerOptions, request_reload: Callable[[str], None]):
        self.options = options
        self.request_reload = request_reload
        self.paths = options._reload_watch_paths()
        self.watch_filter = self._make_filter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='granian-reloader', daemon=True)

    def _make_filter(self) -> Any:
        import watchfiles

        options = self.options
        cls = options.reload_filter or watchfiles.DefaultFilter
        if not isinstance(cls, type):
            return cls  # already a filter: any callable (change, path) -> bool
        # The ignore options extend what the filter class ignores already.
        ignores = {
            'ignore_dirs': (options.reload_ignore_dirs, 'ignore_dirs', str),
            'ignore_entity_patterns': (options.reload_ignore_patterns, 'ignore_entity_patterns', str),
            'ignore_paths': (options.reload_ignore_paths, 'ignore_paths', lambda p: Path(p).resolve()),
        }
        kwargs = {
            name: tuple(getattr(cls, attr, ())) + tuple(convert(v) for v in values)
            for name, (values, attr, convert) in ignores.items()
            if values
        }
        if issubclass(cls, watchfiles.DefaultFilter):
            return cls(**kwargs)
        instance = cls()
        if kwargs and isinstance(instance, watchfiles.BaseFilter):
            instance._ignore_dirs = set(kwargs.get('ignore_dirs', instance._ignore_dirs))
            if 'ignore_entity_patterns' in kwargs:
                instance._ignore_entity_regexes = tuple(re.compile(r) for r in kwargs['ignore_entity_patterns'])
            if 'ignore_paths' in kwargs:
                instance._ignore_paths = tuple(map(str, kwargs['ignore_paths']))
        return instance

    def start(self) -> None:
        logger.info(f'Watching for changes in: {", ".join(str(p) for p in self.paths)}')
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *self.paths,
                watch_filter=self.watch_filter,
                stop_event=self._stop,
                debounce=1_600,
                step=self.options.reload_tick,
                rust_timeout=1_000,
                raise_interrupt=False,
            ):
                if self._stop.is_set():
                    return
                names = sorted({_relative(path, self.paths) for _, path in changes})
                shown = ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')
                self.request_reload(f'files changed: {shown}')
        except Exception as exc:  # noqa: BLE001 - the watcher failing must not take the server down
            logger.error(f'watching for changes failed, reloading on changes stops: {exc!r}', exc_info=True)


def _relative(path: str, roots: Sequence[Path]) -> str:
    for root in roots:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(root))
    return path
