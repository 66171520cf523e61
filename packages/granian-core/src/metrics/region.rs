//! The shared memory region the metrics live in: a header and one slot per worker process,
//! each an array of atomics at a fixed place, so that the main process and the workers
//! (other processes, started from scratch) read and write the same numbers.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use memmap2::MmapRaw;

/// Upper bounds of the request duration buckets, in seconds (the last bucket is +Inf).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The `protocol` label of the duration histogram.
pub const PROTOCOLS: [&str; 3] = ["1.1", "2", "3"];
/// The `status` label of the duration histogram.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Monotonic counts of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    ConnectionsHandled,
    ConnectionsErr,
    RequestsHandled,
    StaticHandled,
    StaticErr,
    StaticBytes,
    /// Microseconds the blocking threads spent waiting for work, and running it.
    BlockingIdleUs,
    BlockingBusyUs,
    /// Microseconds work for Python waited before Python ran it.
    PyWaitUs,
    RequestBodyBytes,
    ResponseBodyBytes,
    TlsHandshakeFailures,
    WebsocketMessagesIn,
    WebsocketMessagesOut,
}

impl Counter {
    pub const ALL: [Counter; 14] = [
        Counter::ConnectionsHandled,
        Counter::ConnectionsErr,
        Counter::RequestsHandled,
        Counter::StaticHandled,
        Counter::StaticErr,
        Counter::StaticBytes,
        Counter::BlockingIdleUs,
        Counter::BlockingBusyUs,
        Counter::PyWaitUs,
        Counter::RequestBodyBytes,
        Counter::ResponseBodyBytes,
        Counter::TlsHandshakeFailures,
        Counter::WebsocketMessagesIn,
        Counter::WebsocketMessagesOut,
    ];
}

/// Values of a worker that go up and down; they end with the worker's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    ConnectionsActive,
    BlockingThreads,
    BlockingQueue,
    WebsocketsOpen,
}

impl Gauge {
    pub const ALL: [Gauge; 4] = [
        Gauge::ConnectionsActive,
        Gauge::BlockingThreads,
        Gauge::BlockingQueue,
        Gauge::WebsocketsOpen,
    ];
}

/// Request durations of one (protocol, status class): a count per bucket (not cumulative)
/// and the sum.
#[repr(C)]
pub struct Histogram {
    pub buckets: [AtomicU64; BUCKETS.len() + 1],
    pub sum_us: AtomicU64,
}

/// One worker process's numbers.
#[repr(C)]
pub struct Slot {
    pub counters: [AtomicU64; Counter::ALL.len()],
    pub gauges: [AtomicI64; Gauge::ALL.len()],
    pub durations: [[Histogram; STATUS_CLASSES.len()]; PROTOCOLS.len()],
}

impl Slot {
    pub fn counter(&self, counter: Counter) -> &AtomicU64 {
        &self.counters[counter as usize]
    }

    pub fn gauge(&self, gauge: Gauge) -> &AtomicI64 {
        &self.gauges[gauge as usize]
    }

    /// Zeroes the slot for a new process.
    pub fn reset(&self) {
        for value in &self.counters {
            value.store(0, Ordering::Relaxed);
        }
        for value in &self.gauges {
            value.store(0, Ordering::Relaxed);
        }
        for histogram in self.durations.iter().flatten() {
            for bucket in &histogram.buckets {
                bucket.store(0, Ordering::Relaxed);
            }
            histogram.sum_us.store(0, Ordering::Relaxed);
        }
    }
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
    capacity: AtomicU64,
}

/// "granian1" in ASCII: a file of another kind (or layout) is refused.
const MAGIC: u64 = u64::from_le_bytes(*b"granian1");

pub struct Region {
    map: MmapRaw,
    capacity: usize,
}

fn size_for(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Slot>()
}

impl Region {
    /// Creates the region's file (it must not exist) with room for `capacity` slots.
    pub fn create(path: &Path, capacity: usize) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        // A new file reads as zeros: every counter starts at 0.
        file.set_len(size_for(capacity) as u64)?;
        let region = Self::map(&file, capacity)?;
        region.header().capacity.store(capacity as u64, Ordering::Relaxed);
        region.header().magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Opens a region the main process created.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len() as usize;
        if len < std::mem::size_of::<Header>() {
            return Err(std::io::Error::other("not a metrics region: too short"));
        }
        let header_only = Self::map(&file, 0)?;
        if header_only.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(std::io::Error::other("not a metrics region: bad magic number"));
        }
        let capacity = header_only.header().capacity.load(Ordering::Relaxed) as usize;
        if len < size_for(capacity) {
            return Err(std::io::Error::other("not a metrics region: shorter than its slots"));
        }
        Self::map(&file, capacity)
    }

    fn map(file: &File, capacity: usize) -> std::io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(size_for(capacity)).map_raw(file)?;
        Ok(Self { map, capacity })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least `size_of::<Header>()` long (checked when opened,
        // set when created) and page-aligned; `Header` is `repr(C)` atomics, valid for any
        // bit pattern and meant for access shared with other processes; the reference
        // lives no longer than `self`, which owns the mapping.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot `index` (below the capacity).
    pub fn slot(&self, index: usize) -> &Slot {
        assert!(index < self.capacity, "metrics slot {index} out of range");
        // SAFETY: the index is in range, so the slot lies within the mapping (its length is
        // `size_for(capacity)`); slots follow the header at offsets that keep the 8-byte
        // alignment of their atomics (both sizes are multiples of 8, the base is
        // page-aligned); `Slot` is `repr(C)` atomics, valid for any bit pattern; the
        // reference lives no longer than `self`, which owns the mapping.
        unsafe {
            let base = self.map.as_ptr().add(std::mem::size_of::<Header>()) as *const Slot;
            &*base.add(index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_mapping_sees_the_same_numbers() {
        let dir = std::env::temp_dir().join(format!("granian-region-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let created = Region::create(&dir, 3).expect("created");
        let opened = Region::open(&dir).expect("opened");
        assert_eq!(opened.capacity(), 3);
        created
            .slot(2)
            .counter(Counter::RequestsHandled)
            .fetch_add(5, Ordering::Relaxed);
        created.slot(2).durations[1][1].buckets[3].fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            opened.slot(2).counter(Counter::RequestsHandled).load(Ordering::Relaxed),
            5
        );
        assert_eq!(opened.slot(2).durations[1][1].buckets[3].load(Ordering::Relaxed), 1);
        opened.slot(2).reset();
        assert_eq!(
            created
                .slot(2)
                .counter(Counter::RequestsHandled)
                .load(Ordering::Relaxed),
            0
        );
        assert!(Region::create(&dir, 3).is_err(), "an existing file is not taken over");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn a_file_that_is_not_a_region_is_refused() {
        let path = std::env::temp_dir().join(format!("granian-region-junk-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 4096]).expect("written");
        assert!(Region::open(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
