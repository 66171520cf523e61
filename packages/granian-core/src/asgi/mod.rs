//! ASGI 3: the scope, HTTP and websocket `receive` / `send`, and starting an app per
//! request on the event loop (`app::LoopHandler` runs the request cycle). Lifespan runs in
//! Python (`granian.asgi`).

pub mod http;
pub mod messages;
pub mod scope;
pub mod ws;
