from typing import Union


class WebsocketMessage:
    """What an RSGI websocket `receive()` returns: `kind` tells close, bytes or text, `data` the payload."""

    kind: int
    data: Union[bytes, str]
