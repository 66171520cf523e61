//! Pure request helpers, free of Python so `cargo test` covers them.

use std::borrow::Cow;

use http::Version;

/// How each interface and the access log name an HTTP version.
pub struct VersionLabels {
    /// RSGI's `http_version`: "1", "1.1", "2", "3".
    pub rsgi: &'static str,
    /// ASGI's `http_version`: "1.0", "1.1", "2", "3".
    pub asgi: &'static str,
    /// The protocol as a request line names it (WSGI's `SERVER_PROTOCOL`, the access log).
    pub protocol: &'static str,
}

pub fn version_labels(version: Version) -> VersionLabels {
    let (rsgi, asgi, protocol) = match version {
        Version::HTTP_09 | Version::HTTP_10 => ("1", "1.0", "HTTP/1.0"),
        Version::HTTP_2 => ("2", "2", "HTTP/2"),
        Version::HTTP_3 => ("3", "3", "HTTP/3"),
        _ => ("1.1", "1.1", "HTTP/1.1"),
    };
    VersionLabels { rsgi, asgi, protocol }
}

/// Percent-decodes a request path; bytes that are not UTF-8 become U+FFFD.
pub fn decode_path(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    match percent_encoding::percent_decode_str(raw).decode_utf8_lossy() {
        Cow::Borrowed(s) => Cow::Owned(s.to_owned()),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// Checks a byte range `[start, end)` against a file of `len` bytes.
pub fn check_range(start: i64, end: i64, len: u64) -> Result<(u64, u64), String> {
    if start < 0 || end < 0 {
        return Err(format!("invalid range {start}-{end}: negative offset"));
    }
    let (start, end) = (start as u64, end as u64);
    if start >= end {
        return Err(format!("invalid range {start}-{end}: start must be lower than end"));
    }
    if start >= len {
        return Err(format!(
            "invalid range {start}-{end}: start is past the end of the file ({len} bytes)"
        ));
    }
    Ok((start, end.min(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let http10 = version_labels(Version::HTTP_10);
        assert_eq!((http10.rsgi, http10.asgi, http10.protocol), ("1", "1.0", "HTTP/1.0"));
        let http11 = version_labels(Version::HTTP_11);
        assert_eq!((http11.rsgi, http11.asgi, http11.protocol), ("1.1", "1.1", "HTTP/1.1"));
        let http2 = version_labels(Version::HTTP_2);
        assert_eq!((http2.rsgi, http2.asgi, http2.protocol), ("2", "2", "HTTP/2"));
    }

    #[test]
    fn paths() {
        assert_eq!(decode_path("/a/b"), "/a/b");
        assert_eq!(decode_path("/a%20b"), "/a b");
        assert_eq!(decode_path("/caf%C3%A9"), "/café");
        assert_eq!(decode_path("/bad%FF"), "/bad\u{FFFD}");
        assert_eq!(decode_path("/x%2"), "/x%2");
    }

    #[test]
    fn ranges() {
        assert_eq!(check_range(0, 10, 100), Ok((0, 10)));
        assert_eq!(check_range(90, 200, 100), Ok((90, 100)));
        assert!(check_range(-1, 10, 100).is_err());
        assert!(check_range(10, 10, 100).is_err());
        assert!(check_range(100, 101, 100).is_err());
    }
}
