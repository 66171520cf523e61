//! A worker's end of the metrics: counts into its slot of the shared region.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, Version};

use super::region::{Counter, Gauge, Region, Slot, BUCKETS};

/// Cheap to clone (an `Arc` and an index); every call is one or two relaxed atomic adds.
#[derive(Clone)]
pub struct Meter {
    region: Arc<Region>,
    index: usize,
}

impl Meter {
    pub fn new(region: Arc<Region>, index: usize) -> std::io::Result<Self> {
        if index >= region.capacity() {
            return Err(std::io::Error::other(format!("metrics slot {index} out of range")));
        }
        Ok(Self { region, index })
    }

    fn slot(&self) -> &Slot {
        self.region.slot(self.index)
    }

    pub fn count(&self, counter: Counter, n: u64) {
        self.slot().counter(counter).fetch_add(n, Ordering::Relaxed);
    }

    pub fn add(&self, gauge: Gauge, delta: i64) {
        self.slot().gauge(gauge).fetch_add(delta, Ordering::Relaxed);
    }

    pub fn set(&self, gauge: Gauge, value: i64) {
        self.slot().gauge(gauge).store(value, Ordering::Relaxed);
    }

    pub fn count_duration(&self, counter: Counter, elapsed: Duration) {
        self.count(counter, elapsed.as_micros() as u64);
    }

    /// One answered request: its protocol, status and how long the answer took.
    pub fn request(&self, version: Version, status: StatusCode, elapsed: Duration) {
        // The index into `PROTOCOLS`.
        let protocol = match version {
            Version::HTTP_2 => 1,
            Version::HTTP_3 => 2,
            _ => 0,
        };
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        let histogram = &self.slot().durations[protocol][class];
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        histogram
            .sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count(Counter::RequestsHandled, 1);
    }
}

/// Counts while alive: +1 on a gauge now, -1 when dropped (an open connection, a websocket).
pub struct Held {
    meter: Meter,
    gauge: Gauge,
}

impl Held {
    pub fn new(meter: &Meter, gauge: Gauge) -> Self {
        meter.add(gauge, 1);
        Self {
            meter: meter.clone(),
            gauge,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.meter.add(self.gauge, -1);
    }
}
