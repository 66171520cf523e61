"""Apps for the server API tests, and a runner for `Granian.serve()` and a `Granian` subclass.

`python -m tests.apps.server_api_apps <mode> <port>` (cwd = the repo root) serves on 127.0.0.1:<port>:
- `loader`: `serve(target_loader=module_level_loader)`: the loader gets the target string and
  the app answers it;
- `loader-nowrap`: `serve(target_loader=other_loader, wrap_loader=False)`: the loader gets no argument;
- `subclass`: `MarkedServer(...).serve()`, whose `startup`, `shutdown` and `signal_handler_reload`
  overrides print `MARK ...` lines; the app answers the PID of its worker;
- `script-loader`, `script-subclass`: as `loader` and `subclass`, with the objects of the script
  being run (`__main__.module_level_loader`, `__main__.MarkedServer`), as a script passing its own would.

The other modes run this module's imported copy (`tests.apps.server_api_apps`), so what workers
receive pickles by that name.

`asgi_errors` (ASGI) answers, on its routes, the error an out-of-order or unknown message raised:
`/bogus` (`http.bogus`), `/body-first` (a body before the start), `/start-twice` (two starts).
"""

import importlib
import os
import sys

from granian import Granian

TARGET = 'tests.apps.server_api_apps:never_loaded'


def _text_app(text: str):
    async def app(scope, proto):
        proto.response_str(200, [('content-type', 'text/plain')], text)

    return app


# What `TARGET` names: served only if the target loader were ignored.
never_loaded = _text_app('never_loaded was loaded: the target loader was not used')


def module_level_loader(target: str):
    return _text_app(f'loaded {target}')


def other_loader(*args):
    return _text_app(f'other loader called with {len(args)} arguments')


async def pid_app(scope, proto):
    proto.response_str(200, [('content-type', 'text/plain')], str(os.getpid()))


def mark(text: str) -> None:
    print(f'MARK {text}', flush=True)


class MarkedServer(Granian):
    def startup(self, spawn_target, target_loader):
        mark('startup begin')
        super().startup(spawn_target, target_loader)
        mark('startup end')

    def shutdown(self, exit_code=0):
        mark(f'shutdown begin exit_code={exit_code}')
        super().shutdown(exit_code)
        mark('shutdown end')

    def signal_handler_reload(self, *args, **kwargs):
        mark(f'signal_handler_reload {args[0] if args else None}')
        super().signal_handler_reload(*args, **kwargs)


def main(mode: str, port: int) -> None:
    if mode == 'subclass':
        MarkedServer('tests.apps.server_api_apps:pid_app', port=port, interface='rsgi').serve()
        return
    server = Granian(TARGET, port=port, interface='rsgi')
    if mode == 'loader':
        server.serve(target_loader=module_level_loader)
    elif mode == 'loader-nowrap':
        server.serve(target_loader=other_loader, wrap_loader=False)
    else:
        raise SystemExit(f'unknown mode {mode!r}')


# -- ASGI errors ------------------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> bytes:
    return f'{type(exc).__name__}|{exc}'.encode()


async def asgi_errors(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            phase = message['type'].removeprefix('lifespan.')
            await send({'type': f'lifespan.{phase}.complete'})
            if phase == 'shutdown':
                return
    start = {'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]}
    path = scope['path']
    result = b'no error raised'
    if path == '/bogus':
        try:
            await send({'type': 'http.bogus'})
        except Exception as exc:  # noqa: BLE001 - what the app sees is the point
            result = _describe(exc)
        await send(start)
    elif path == '/body-first':
        try:
            await send({'type': 'http.response.body', 'body': b'too early'})
        except Exception as exc:  # noqa: BLE001
            result = _describe(exc)
        await send(start)
    elif path == '/start-twice':
        await send(start)
        try:
            await send(start)
        except Exception as exc:  # noqa: BLE001
            result = _describe(exc)
    else:
        await send(start)
        result = b'ok'
    await send({'type': 'http.response.body', 'body': result})


if __name__ == '__main__':
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode.startswith('script-'):
        # This script's own objects, as a script passing its own would: `__main__.module_level_loader`,
        # `__main__.MarkedServer`.
        main(mode.removeprefix('script-'), port)
    else:
        importlib.import_module('tests.apps.server_api_apps').main(mode, port)
