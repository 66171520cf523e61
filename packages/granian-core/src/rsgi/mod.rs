//! RSGI: the scope, the HTTP and websocket protocol objects, and starting an app per
//! request on the event loop (`app::LoopHandler` runs the request cycle).

pub mod errors;
pub mod http;
pub mod scope;
pub mod ws;
