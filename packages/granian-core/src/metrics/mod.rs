//! Prometheus metrics (`--metrics`). Workers count into a shared memory region, one slot per
//! worker process, with atomics (no lock, no GIL, no allocation on the request path); the
//! main process reads the region and serves the Prometheus text format.

pub mod exporter;
pub mod meter;
pub mod region;
