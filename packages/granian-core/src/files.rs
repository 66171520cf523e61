//! Static files served by the core, without entering Python: path resolution that never
//! leaves a mount, validators (etag, last-modified), conditional and range requests.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use http::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, EXPIRES,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::http::body::ResponseBody;
use crate::http::response::{file_body, file_not_found, response};

#[derive(Clone, Debug)]
pub struct Mount {
    /// The URL prefix, without a trailing slash (`/static`).
    pub route: String,
    /// The directory, canonical.
    pub root: PathBuf,
}

#[derive(Clone, Debug)]
pub struct StaticFiles {
    pub mounts: Vec<Mount>,
    /// `cache-control: max-age` and `expires`; 0 disables both.
    pub expires: u64,
    /// Served for a directory, when set (e.g. `index.html`).
    pub dir_to_file: Option<String>,
    /// Small files recently served, shared by the worker's connections.
    pub cache: Arc<FileCache>,
}

/// The contents of small files recently served, by the path asked for.
///
/// A hit is checked against the file system on every request with one `stat` of that path
/// (following symlinks): the same device, inode, size and modification time, or the entry
/// is dropped and the file is looked up again from scratch (so a symlink re-pointed outside
/// the mount is refused as before). A hit costs no trip to the blocking pool and no read.
#[derive(Default)]
pub struct FileCache {
    entries: Mutex<CacheEntries>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (files, bytes) = self
            .entries
            .lock()
            .map(|e| (e.by_path.len(), e.bytes))
            .unwrap_or_default();
        f.debug_struct("FileCache")
            .field("files", &files)
            .field("bytes", &bytes)
            .finish()
    }
}

#[derive(Default)]
struct CacheEntries {
    by_path: HashMap<PathBuf, Arc<Cached>>,
    bytes: usize,
}

struct Cached {
    real: PathBuf,
    content: Bytes,
    identity: Identity,
    /// What it counts for against the budget.
    cost: usize,
}

/// What must not change for a cached copy to still be the file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: SystemTime,
    /// The inode change time too: tools that copy a modification time over (`cp -p`,
    /// `rsync -t`) still change it.
    changed: (i64, i64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Changed so recently that a write may still be going on within the time stamps'
    /// resolution: served, but not kept (the rule git uses for its index).
    fn is_settled(&self) -> bool {
        let newest = UNIX_EPOCH
            + Duration::new(
                self.changed.0.max(0) as u64,
                self.changed.1.clamp(0, 999_999_999) as u32,
            );
        let newest = newest.max(self.modified);
        SystemTime::now()
            .duration_since(newest)
            .is_ok_and(|age| age >= Duration::from_secs(2))
    }
}

/// What the cache may hold in all (contents and bookkeeping); past it, half the entries go.
const CACHE_BUDGET: usize = 32 * 1024 * 1024;
/// At most this many entries, whatever their size (many tiny or empty files).
const CACHE_ENTRIES: usize = 4096;
/// What an entry costs besides its contents and paths (map slot, Arc, lengths).
const ENTRY_OVERHEAD: usize = 128;

impl FileCache {
    fn lookup(&self, candidate: &Path) -> Option<Arc<Cached>> {
        let cached = self.entries.lock().ok()?.by_path.get(candidate).cloned()?;
        match std::fs::metadata(candidate) {
            Ok(meta) if meta.is_file() && Identity::of(&meta) == cached.identity => Some(cached),
            _ => {
                if let Ok(mut entries) = self.entries.lock() {
                    if let Some(gone) = entries.by_path.remove(candidate) {
                        entries.bytes -= gone.cost;
                    }
                }
                None
            }
        }
    }

    fn store(&self, candidate: PathBuf, real: PathBuf, content: Bytes, identity: Identity) {
        if !identity.is_settled() {
            return;
        }
        let cost = content.len() + candidate.as_os_str().len() + real.as_os_str().len() + ENTRY_OVERHEAD;
        let cached = Cached {
            real,
            content,
            identity,
            cost,
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.bytes + cost > CACHE_BUDGET || entries.by_path.len() >= CACHE_ENTRIES {
            // No recency kept: dropping every other entry (in the map's order, which is as
            // good as random) makes room cheaply.
            let mut keep = false;
            entries.by_path.retain(|_, _| {
                keep = !keep;
                keep
            });
            entries.bytes = entries.by_path.values().map(|c| c.cost).sum();
        }
        entries.bytes += cost;
        if let Some(old) = entries.by_path.insert(candidate, Arc::new(cached)) {
            entries.bytes -= old.cost;
        }
    }
}

/// The path under the route, split into safe segments; `None` for anything suspicious.
pub fn safe_relative(decoded: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment == "." {
            continue;
        }
        if segment == ".." || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        let part = Path::new(segment);
        if part.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

impl StaticFiles {
    /// The mount and the remainder of the path when `path` (raw, percent-encoded) is under
    /// a static route.
    fn route<'a>(&'a self, path: &'a str) -> Option<(&'a Mount, &'a str)> {
        self.mounts.iter().find_map(|mount| {
            if mount.route == "/" {
                return Some((mount, path));
            }
            let rest = path.strip_prefix(mount.route.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((mount, rest))
        })
    }

    /// `None` when the request is not for a static route: the app gets it.
    pub async fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response<ResponseBody>> {
        let (mount, rest) = self.route(path)?;
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(rest).collect();
        let Some(relative) = std::str::from_utf8(&decoded).ok().and_then(safe_relative) else {
            return Some(file_not_found());
        };
        Some(self.serve_file(mount, &relative, headers).await)
    }

    async fn serve_file(&self, mount: &Mount, relative: &Path, headers: &HeaderMap) -> Response<ResponseBody> {
        let candidate = mount.root.join(relative);
        let found = match self.cache.lookup(&candidate) {
            Some(cached) => Found {
                real: cached.real.clone(),
                len: cached.identity.len,
                modified: cached.identity.modified,
                source: Source::Memory(cached.content.clone()),
            },
            None => {
                let root = mount.root.clone();
                let index = self.dir_to_file.clone();
                let path = candidate.clone();
                // One trip to the blocking pool resolves, opens and (for small files) reads.
                let opened = tokio::task::spawn_blocking(move || open_inside(&root, path, index.as_deref())).await;
                let Ok(Some((found, identity))) = opened else {
                    return file_not_found();
                };
                // A directory's index file is not kept: the path asked for is the directory,
                // which the per-request check (a file's identity) would never match.
                if let (Source::Memory(content), Some(identity)) = (&found.source, identity) {
                    self.cache
                        .store(candidate, found.real.clone(), content.clone(), identity);
                }
                found
            }
        };
        let Found {
            real,
            len,
            modified,
            source,
        } = found;
        let etag = entity_tag(modified, len);
        let mut response_headers = HeaderMap::new();
        let mime = mime_guess::from_path(&real).first_or_octet_stream();
        if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
            response_headers.insert(CONTENT_TYPE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            response_headers.insert(ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            response_headers.insert(LAST_MODIFIED, v);
        }
        if self.expires > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", self.expires)) {
                response_headers.insert(CACHE_CONTROL, v);
            }
            let at = SystemTime::now() + Duration::from_secs(self.expires);
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                response_headers.insert(EXPIRES, v);
            }
        }
        response_headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));

        if not_modified(headers, &etag, modified) {
            return response(StatusCode::NOT_MODIFIED, response_headers, ResponseBody::empty());
        }
        // If-Range with a validator that no longer matches: the client gets the whole new file.
        let range_valid = match headers.get(IF_RANGE).and_then(|v| v.to_str().ok()) {
            None => true,
            Some(validator) if validator.starts_with('"') || validator.starts_with("W/") => validator == etag,
            Some(date) => httpdate::parse_http_date(date).is_ok_and(|d| {
                let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                secs(d) == secs(modified)
            }),
        };
        let range = headers.get(RANGE).and_then(|v| v.to_str().ok()).filter(|_| range_valid);
        let (status, start, count) = match range {
            None => (StatusCode::OK, 0, len),
            Some(range) => match parse_range(range, len) {
                RangeOutcome::Full => (StatusCode::OK, 0, len),
                RangeOutcome::Partial(start, end) => {
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                        response_headers.insert(CONTENT_RANGE, v);
                    }
                    (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
                }
                RangeOutcome::Unsatisfiable => {
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        response_headers.insert(CONTENT_RANGE, v);
                    }
                    response_headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                    return response(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        response_headers,
                        ResponseBody::empty(),
                    );
                }
            },
        };
        match source {
            Source::Memory(content) => {
                let end = (start + count) as usize;
                response(
                    status,
                    response_headers,
                    ResponseBody::full(content.slice(start as usize..end)),
                )
            }
            Source::File(file) => match file_body(file, start, count) {
                Ok(body) => response(status, response_headers, body),
                Err(_) => file_not_found(),
            },
        }
    }
}

/// Files up to this size are read whole with their lookup, saving a pool trip per chunk.
const SMALL_FILE: u64 = 256 * 1024;

struct Found {
    real: PathBuf,
    len: u64,
    modified: SystemTime,
    source: Source,
}

enum Source {
    /// Read whole (a small file).
    Memory(Bytes),
    File(std::fs::File),
}

/// Resolves `candidate` (symlinks included) and opens it only if it stays under `root`.
/// The identity is `None` when the path named a directory and its index file was opened.
fn open_inside(root: &Path, candidate: PathBuf, index: Option<&str>) -> Option<(Found, Option<Identity>)> {
    let mut real = std::fs::canonicalize(candidate).ok()?;
    if !real.starts_with(root) {
        return None;
    }
    let via_index = real.is_dir();
    if via_index {
        real = std::fs::canonicalize(real.join(index?)).ok()?;
        if !real.starts_with(root) {
            return None;
        }
    }
    let mut file = std::fs::File::open(&real).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut identity = Identity::of(&meta);
    let source = if meta.len() <= SMALL_FILE {
        let mut buf = Vec::with_capacity(meta.len() as usize);
        std::io::Read::read_to_end(&mut file, &mut buf).ok()?;
        // A file that changed size under us is served as read (and, with its size as read,
        // never matches the file's identity again: the next request looks it up anew).
        identity.len = buf.len() as u64;
        Source::Memory(Bytes::from(buf))
    } else {
        Source::File(file)
    };
    let found = Found {
        real,
        len: identity.len,
        modified: identity.modified,
        source,
    };
    Some((found, (!via_index).then_some(identity)))
}

pub fn entity_tag(modified: SystemTime, len: u64) -> String {
    let stamp = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("\"{:x}-{:x}-{:x}\"", stamp.as_secs(), stamp.subsec_nanos(), len)
}

fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(candidates) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); weak comparison.
        return candidates
            .split(',')
            .map(|c| c.trim().trim_start_matches("W/"))
            .any(|c| c == "*" || c == etag);
    }
    if let Some(since) = headers
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let modified_secs = modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let since_secs = since.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        return modified_secs <= since_secs;
    }
    false
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No usable range: serve the whole file.
    Full,
    /// Inclusive byte positions.
    Partial(u64, u64),
    Unsatisfiable,
}

/// A single `bytes=` range against a file of `len` bytes; several ranges get the whole file.
pub fn parse_range(header: &str, len: u64) -> RangeOutcome {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        (true, true) => return RangeOutcome::Full,
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return RangeOutcome::Unsatisfiable,
            Ok(suffix) => (len.saturating_sub(suffix), len.saturating_sub(1)),
            Err(_) => return RangeOutcome::Full,
        },
        (false, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return RangeOutcome::Full;
            };
            let end = if last.is_empty() {
                len.saturating_sub(1)
            } else {
                match last.parse::<u64>() {
                    Ok(end) if end >= start => end.min(len.saturating_sub(1)),
                    _ => return RangeOutcome::Full,
                }
            };
            (start, end)
        }
    };
    if len == 0 || parsed.0 >= len {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Partial(parsed.0, parsed.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(safe_relative("/a//./b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative("/../etc/passwd"), None);
        assert_eq!(safe_relative("/a/../../x"), None);
        assert_eq!(safe_relative("/a\\..\\x"), None);
        assert_eq!(safe_relative("/a\0b"), None);
        assert_eq!(safe_relative("/café.txt"), Some(PathBuf::from("café.txt")));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeOutcome::Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeOutcome::Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeOutcome::Partial(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeOutcome::Partial(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeOutcome::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeOutcome::Full);
        assert_eq!(parse_range("bytes=9-3", 100), RangeOutcome::Full);
    }

    #[test]
    fn validators() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        let tag = entity_tag(t, 10);
        h.insert(IF_NONE_MATCH, HeaderValue::from_str(&tag).unwrap());
        assert!(not_modified(&h, &tag, t));
        let mut h = HeaderMap::new();
        h.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap(),
        );
        assert!(not_modified(&h, &tag, t));
        assert!(!not_modified(&h, &tag, t + Duration::from_secs(5)));
    }
}
