"""`Granian`: workers as processes, or as threads on a free-threaded build running without the GIL."""

from .mp import MPServer
from .mt import MTServer, gil_enabled

Granian = MTServer if gil_enabled() is False else MPServer

__all__ = ['Granian', 'MPServer', 'MTServer']
