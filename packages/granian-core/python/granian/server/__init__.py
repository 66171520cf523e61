"""`Granian`: workers as processes, or as threads on a free-threaded build running without the GIL."""

from .._granian import BUILD_GIL as BUILD_GIL
from .mp import MPServer
from .mt import MTServer, gil_enabled

# granian 2.8.7 picks threads on any free-threaded build; here threads only while the GIL is
# actually off at run time (a free-threaded build can turn it back on, e.g. for an extension).
Server = MTServer if gil_enabled() is False else MPServer
Granian = Server
