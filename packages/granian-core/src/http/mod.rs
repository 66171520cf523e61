//! HTTP, free of Python: the server (hyper), the request cycle, bodies and responses.

pub mod activity;
pub mod body;
pub mod cycle;
pub mod limits;
pub mod request;
pub mod response;
pub mod server;
pub mod state;
pub mod stream;
pub mod util;
