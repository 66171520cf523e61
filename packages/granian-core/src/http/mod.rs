pub mod body;
pub mod pybytes;
pub mod request;
pub mod response;
pub mod server;
pub mod util;
