"""The options this server adds to granian 2.8.7's, each declared here once.

`granian._options.OPTIONS` lists them among the others, where they belong in `--help` and
docs/OPTIONS.md; granian 2.8.7's own options stay declared there.
"""

from ._option_spec import Option, flag
from .log import LogFormats

FD = Option(
    '--fd',
    'fd',
    'GRANIAN_FD',
    'Serve the listening socket inherited as this file descriptor (TCP or Unix) instead of binding one; '
    '--host, --port and --uds do not apply',
    kind='int',
    min=0,
)


REUSE_PORT = flag(
    'reuse-port',
    'reuse_port',
    'GRANIAN_REUSE_PORT',
    'Each worker listens on a socket of its own (SO_REUSEPORT) instead of sharing one accept queue (TCP only)',
    False,
)


MAX_BODY_SIZE = Option(
    '--max-body-size',
    'max_body_size',
    'GRANIAN_MAX_BODY_SIZE',
    'Largest request body accepted, in bytes: a larger one is answered 413 before the application reads past '
    'the limit (no limit when unset)',
    kind='int',
    min=1,
)


BODY_READ_TIMEOUT = Option(
    '--body-read-timeout',
    'body_read_timeout',
    'GRANIAN_BODY_READ_TIMEOUT',
    'How long (in seconds, or a human-readable duration) a read of the request body waits for the client to '
    'send more before the request is answered 408',
    kind='duration',
    min=1,
    max=3600,
    default=60,
)


HTTP1_KEEP_ALIVE_TIMEOUT = Option(
    '--http1-keep-alive-timeout',
    'http1_settings.keep_alive_timeout',
    'GRANIAN_HTTP1_KEEP_ALIVE_TIMEOUT',
    'Closes an HTTP/1.1 keep-alive connection that stays idle (no request) this long (in milliseconds)',
    kind='int',
    min=1,
    max=3_600_000,
    default=30_000,
)


LOG_FORMAT = Option(
    '--log-format',
    'log_format',
    'GRANIAN_LOG_FORMAT',
    'Log format: plain text, or one JSON object per line (runtime and access lines)',
    kind='choice',
    enum=LogFormats,
    default=LogFormats.text,
)


WS_MAX_MESSAGE_SIZE = Option(
    '--ws-max-message-size',
    'ws_max_message_size',
    'GRANIAN_WS_MAX_MESSAGE_SIZE',
    'Largest websocket message a client may send, in bytes (its fragments together): a larger one is closed with 1009',
    kind='int',
    min=1,
    default=16 * 1024 * 1024,
)

WS_MAX_FRAME_SIZE = Option(
    '--ws-max-frame-size',
    'ws_max_frame_size',
    'GRANIAN_WS_MAX_FRAME_SIZE',
    'Largest websocket frame a client may send, in bytes: a larger one is closed with 1009 from its header, '
    'before its payload is read',
    kind='int',
    min=1,
    default=16 * 1024 * 1024,
)

WS_PING_INTERVAL = Option(
    '--ws-ping-interval',
    'ws_ping_interval',
    'GRANIAN_WS_PING_INTERVAL',
    'How often (in seconds, or a human-readable duration) the server pings each websocket client (off when unset)',
    kind='duration',
    min=1,
)

WS_IDLE_TIMEOUT = Option(
    '--ws-idle-timeout',
    'ws_idle_timeout',
    'GRANIAN_WS_IDLE_TIMEOUT',
    'Closes (with 1001) a websocket whose client sent nothing, not even a pong, for this long (in seconds, or a '
    'human-readable duration; off when unset)',
    kind='duration',
    min=1,
)

WS_COMPRESSION = flag(
    'ws-compression',
    'ws_compression',
    'GRANIAN_WS_COMPRESSION',
    'Compress websocket messages (permessage-deflate, RFC 7692) when the client offers it',
    True,
)


HTTP3 = flag(
    'http3',
    'http3',
    'GRANIAN_HTTP3',
    'Also serve HTTP/3 (QUIC) on UDP at the same address and port, announced to HTTP/1.1 and HTTP/2 clients with '
    'Alt-Svc; needs TLS (experimental)',
    False,
)

HTTP3_IDLE_TIMEOUT = Option(
    '--http3-idle-timeout',
    'http3_idle_timeout',
    'GRANIAN_HTTP3_IDLE_TIMEOUT',
    'Closes an HTTP/3 connection that carried no packet for this long (in seconds, or a human-readable duration)',
    kind='duration',
    min=1,
    max=600,
    default=30,
)

HTTP3_MAX_CONCURRENT_STREAMS = Option(
    '--http3-max-concurrent-streams',
    'http3_max_concurrent_streams',
    'GRANIAN_HTTP3_MAX_CONCURRENT_STREAMS',
    'How many requests a client may have in flight on one HTTP/3 connection',
    kind='int',
    min=1,
    max=10_000,
    default=100,
)
