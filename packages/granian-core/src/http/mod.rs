pub mod body;
pub mod server;
pub mod util;
