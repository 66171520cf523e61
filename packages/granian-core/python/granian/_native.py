"""What crosses to the native worker (`granian._granian.Worker`): one typed settings object.

The Rust side reads these by attribute name into structs of the same fields, so a field
renamed or retyped on either side fails at start-up with the field's name, instead of two
positional values of the same type being silently swapped.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from .http import HTTP1Settings, HTTP2Settings


@dataclass(frozen=True)
class TLSSettings:
    cert: Path
    key: Path
    key_password: Optional[str]
    min_tls13: bool
    ca: Optional[Path]
    crls: List[Path]
    client_verify: bool


@dataclass(frozen=True)
class StaticFilesSettings:
    #: (URL route, directory) pairs.
    mounts: List[Tuple[str, Path]]
    #: Seconds; 0 sends no caching headers.
    expires: int
    dir_to_file: Optional[str]


@dataclass(frozen=True)
class MetricsSettings:
    #: The shared memory region the main process's exporter created.
    path: Path
    #: This worker process's slot in it.
    slot: int


@dataclass(frozen=True)
class WorkerSettings:
    #: 'st' or 'mt'.
    runtime_mode: str
    runtime_threads: int
    runtime_blocking_threads: int
    backpressure: int
    #: 'auto', '1' or '2'.
    http_mode: str
    http1: HTTP1Settings
    http2: HTTP2Settings
    tls: Optional[TLSSettings]
    statics: Optional[StaticFilesSettings]
    #: None when the access log is off.
    access_log_format: Optional[str]
    #: 'text' or 'json' (`--log-format`): how access lines are written.
    log_format: str
    websockets: bool
    #: 'asyncio' or 'rust'.
    task_impl: str
    #: None unless `--metrics`.
    metrics: Optional[MetricsSettings] = None
    #: Bytes; None: no limit.
    max_body_size: Optional[int] = None
    #: Seconds a read of the request body waits for the client; None: no limit.
    body_read_timeout: Optional[float] = None
    #: Bytes.
    ws_max_message_size: int = 16 * 1024 * 1024
    ws_max_frame_size: int = 16 * 1024 * 1024
    #: Seconds; None: off.
    ws_ping_interval: Optional[float] = None
    ws_idle_timeout: Optional[float] = None
    #: permessage-deflate when the client offers it.
    ws_compression: bool = True
    #: QUIC beside TCP (needs `tls`); the other `http3_*` fields apply then.
    http3: bool = False
    #: Seconds.
    http3_idle_timeout: float = 30.0
    http3_max_concurrent_streams: int = 100
    #: The only worker on its port: it binds UDP alone (a replacement waits for the port) and clients may
    #: change address (with several workers, packets are routed by address: neither holds).
    http3_sole_worker: bool = False
