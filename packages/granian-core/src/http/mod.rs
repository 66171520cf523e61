pub mod body;
pub mod request;
pub mod response;
pub mod server;
pub mod util;
