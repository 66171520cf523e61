//! WSGI (PEP 3333) on the blocking pool.

pub mod http;
