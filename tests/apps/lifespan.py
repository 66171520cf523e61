"""The ASGI lifespan protocol for test apps that need nothing done at startup or shutdown."""


async def complete_lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message['type'] == 'lifespan.startup':
            await send({'type': 'lifespan.startup.complete'})
        elif message['type'] == 'lifespan.shutdown':
            await send({'type': 'lifespan.shutdown.complete'})
            return
