//! ASGI 3: HTTP scope, `receive` and `send`. Lifespan runs in Python (`granian.asgi`).

pub mod http;
pub mod ws;
