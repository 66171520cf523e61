//! The access log: the user's %-style format parsed once, each line rendered in Rust and
//! handed to the `granian.access` logger as a finished string.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one access line can show.
pub struct AccessRecord<'a> {
    /// Values of the request headers the format names, in `header_names()` order.
    pub headers: &'a [&'a str],
    pub addr: &'a str,
    pub time: SystemTime,
    pub dt_ms: f64,
    pub status: u16,
    pub path: &'a str,
    pub query_string: &'a str,
    pub method: &'a str,
    pub scheme: &'a str,
    pub protocol: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    Addr,
    Time,
    DtMs,
    Status,
    Path,
    QueryString,
    Method,
    Scheme,
    Protocol,
    /// `%(header{Name})s`: the value of a request header, `-` when absent (index into the
    /// format's header names).
    Header(usize),
}

impl Atom {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "addr" => Self::Addr,
            "time" => Self::Time,
            "dt_ms" => Self::DtMs,
            "status" => Self::Status,
            "path" => Self::Path,
            "query_string" => Self::QueryString,
            "method" => Self::Method,
            "scheme" => Self::Scheme,
            "protocol" => Self::Protocol,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
struct Spec {
    atom: Atom,
    left: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    kind: char,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Field(Spec),
}

#[derive(Clone, Debug)]
pub struct AccessFormat {
    parts: Vec<Part>,
    headers: Vec<String>,
    /// Seconds east of UTC for `%(time)s`: the local offset when the worker started, as
    /// granian 2.8.7 takes it.
    utc_offset: i64,
}

impl AccessFormat {
    /// Parses `%(atom)[flags][width][.precision]type`; unknown atoms are an error.
    pub fn parse(format: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut headers: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                text.push('%');
                continue;
            }
            if chars.next() != Some('(') {
                return Err(format!(
                    "access log format: '%' must be followed by '(atom)' or '%' in {format:?}"
                ));
            }
            let name: String = chars.by_ref().take_while(|&c| c != ')').collect();
            let header = name
                .strip_prefix("header{")
                .and_then(|rest| rest.strip_suffix('}'))
                .map(|header| header.trim().to_ascii_lowercase())
                .filter(|header| !header.is_empty());
            let atom = match header {
                Some(header) => {
                    if chars.peek() != Some(&'s') {
                        return Err(format!("access log format: {name:?} takes the 's' conversion"));
                    }
                    headers.push(header);
                    Atom::Header(headers.len() - 1)
                }
                None => Atom::parse(&name).ok_or_else(|| {
                    format!(
                        "access log format: unknown atom {name:?} (available: addr, time, dt_ms, status, path, query_string, method, scheme, protocol, header{{NAME}})"
                    )
                })?,
            };
            let (mut left, mut zero) = (false, false);
            while let Some(&f) = chars.peek() {
                match f {
                    '-' => left = true,
                    '0' => zero = true,
                    ' ' | '+' | '#' => {}
                    _ => break,
                }
                chars.next();
            }
            let mut width = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                width = width * 10 + d as usize;
                chars.next();
            }
            let mut precision = None;
            if chars.peek() == Some(&'.') {
                chars.next();
                let mut p = 0;
                while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                    p = p * 10 + d as usize;
                    chars.next();
                }
                precision = Some(p);
            }
            let kind = chars
                .next()
                .filter(|k| matches!(k, 's' | 'd' | 'i' | 'f' | 'r'))
                .ok_or_else(|| format!("access log format: bad conversion for atom {name:?}"))?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Field(Spec {
                atom,
                left,
                zero,
                width,
                precision,
                kind,
            }));
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            parts,
            headers,
            utc_offset: 0,
        })
    }

    /// The format with `%(time)s` written at this offset from UTC (seconds east).
    pub fn with_utc_offset(mut self, seconds: i64) -> Self {
        self.utc_offset = seconds;
        self
    }

    /// The (lower-case) request headers the format shows; their values go in `AccessRecord::headers`.
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    pub fn render(&self, record: &AccessRecord<'_>) -> String {
        let mut out = String::with_capacity(128);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(spec) => {
                    if self.render_plain(&mut out, spec, record) {
                        continue;
                    }
                    let value = match spec.atom {
                        Atom::Addr => Value::Str(record.addr),
                        Atom::Time => Value::Owned(format_time(record.time, self.utc_offset)),
                        Atom::DtMs => Value::Float(record.dt_ms),
                        Atom::Status => Value::Int(record.status as i64),
                        Atom::Path => Value::Str(record.path),
                        Atom::QueryString => Value::Str(record.query_string),
                        Atom::Method => Value::Str(record.method),
                        Atom::Scheme => Value::Str(record.scheme),
                        Atom::Protocol => Value::Str(record.protocol),
                        Atom::Header(index) => Value::Str(record.headers.get(index).copied().unwrap_or("-")),
                    };
                    let rendered = value.convert(spec);
                    pad(&mut out, &rendered, spec);
                }
            }
        }
        out
    }

    /// The common fields without width or precision, written in place: no temporary
    /// strings on the per-request path. `false` when `spec` needs the general route.
    fn render_plain(&self, out: &mut String, spec: &Spec, record: &AccessRecord<'_>) -> bool {
        if spec.width != 0 || (spec.precision.is_some() && spec.kind != 'f') {
            return false;
        }
        match (spec.atom, spec.kind) {
            (Atom::Addr, 's') => out.push_str(record.addr),
            (Atom::Path, 's') => out.push_str(record.path),
            (Atom::QueryString, 's') => out.push_str(record.query_string),
            (Atom::Method, 's') => out.push_str(record.method),
            (Atom::Scheme, 's') => out.push_str(record.scheme),
            (Atom::Protocol, 's') => out.push_str(record.protocol),
            (Atom::Time, 's') => with_formatted_time(record.time, self.utc_offset, |time| out.push_str(time)),
            (Atom::Header(index), 's') => out.push_str(record.headers.get(index).copied().unwrap_or("-")),
            (Atom::Status, 'd' | 'i') => {
                let _ = write!(out, "{}", record.status);
            }
            (Atom::DtMs, 'f') => {
                let _ = write!(out, "{:.*}", spec.precision.unwrap_or(6), record.dt_ms);
            }
            _ => return false,
        }
        true
    }
}

thread_local! {
    /// The last second formatted on this thread: consecutive lines mostly share it.
    static LAST_TIME: std::cell::RefCell<(i64, i64, String)> =
        const { std::cell::RefCell::new((i64::MIN, 0, String::new())) };
}

fn with_formatted_time(time: SystemTime, utc_offset: i64, use_it: impl FnOnce(&str)) {
    let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    LAST_TIME.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs || last.1 != utc_offset {
            *last = (secs, utc_offset, format_time(time, utc_offset));
        }
        use_it(&last.2);
    });
}

enum Value<'a> {
    Str(&'a str),
    Owned(String),
    Int(i64),
    Float(f64),
}

impl Value<'_> {
    fn convert(&self, spec: &Spec) -> String {
        match (self, spec.kind) {
            (Value::Int(i), 'f') => format!("{:.*}", spec.precision.unwrap_or(6), *i as f64),
            (Value::Float(f), 'f') => format!("{:.*}", spec.precision.unwrap_or(6), f),
            (Value::Float(f), 'd' | 'i') => format!("{}", f.trunc() as i64),
            (Value::Int(i), _) => i.to_string(),
            (Value::Float(f), _) => f.to_string(),
            (Value::Str(s), 'r') => format!("'{s}'"),
            (Value::Owned(s), 'r') => format!("'{s}'"),
            (Value::Str(s), _) => truncate(s, spec.precision).to_string(),
            (Value::Owned(s), _) => truncate(s, spec.precision).to_string(),
        }
    }
}

fn truncate(s: &str, precision: Option<usize>) -> &str {
    match precision {
        Some(p) => s.char_indices().nth(p).map_or(s, |(i, _)| &s[..i]),
        None => s,
    }
}

fn pad(out: &mut String, value: &str, spec: &Spec) {
    let len = value.chars().count();
    if len >= spec.width {
        out.push_str(value);
    } else if spec.left {
        out.push_str(value);
        out.extend(std::iter::repeat_n(' ', spec.width - len));
    } else {
        let fill = if spec.zero && spec.kind != 's' { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(fill, spec.width - len));
        out.push_str(value);
    }
}

/// `YYYY-MM-DD HH:MM:SS +HHMM` at a fixed offset from UTC (seconds east): no time zone
/// database needed.
pub fn format_time(time: SystemTime, utc_offset: i64) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 + utc_offset;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sign = if utc_offset < 0 { '-' } else { '+' };
    let offset_minutes = utc_offset.abs() / 60;
    let mut out = String::with_capacity(25);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        offset_minutes / 60,
        offset_minutes % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(time: SystemTime) -> AccessRecord<'static> {
        AccessRecord {
            headers: &[],
            addr: "127.0.0.1",
            time,
            dt_ms: 1.23456,
            status: 200,
            path: "/a",
            query_string: "x=1",
            method: "GET",
            scheme: "http",
            protocol: "HTTP/1.1",
        }
    }

    #[test]
    fn default_format() {
        let fmt =
            AccessFormat::parse(r#"[%(time)s] %(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f"#)
                .unwrap();
        let line = fmt.render(&record(UNIX_EPOCH + Duration::from_secs(86_400 * 365)));
        assert_eq!(
            line,
            r#"[1971-01-01 00:00:00 +0000] 127.0.0.1 - "GET /a HTTP/1.1" 200 1.235"#
        );
    }

    #[test]
    fn widths_and_escapes() {
        let fmt = AccessFormat::parse("%(status)5d|%(method)-5s|%(query_string)s|100%%").unwrap();
        assert_eq!(fmt.render(&record(UNIX_EPOCH)), "  200|GET  |x=1|100%");
    }

    #[test]
    fn refuses_unknown_atoms() {
        assert!(AccessFormat::parse("%(nope)s").is_err());
        assert!(AccessFormat::parse("%(status)q").is_err());
        assert!(AccessFormat::parse("100% sure").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(format_time(UNIX_EPOCH, 0), "1970-01-01 00:00:00 +0000");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(format_time(leap_day, 0), "2024-02-29 12:34:56 +0000");
        assert_eq!(format_time(leap_day, 5 * 3600 + 30 * 60), "2024-02-29 18:04:56 +0530");
        assert_eq!(format_time(leap_day, -13 * 3600), "2024-02-28 23:34:56 -1300");
    }

    #[test]
    fn header_atoms() {
        let fmt = AccessFormat::parse("%(status)d ua=%(header{User-Agent})s ref=%(header{ referer })s").unwrap();
        assert_eq!(fmt.header_names(), ["user-agent", "referer"]);
        let mut rec = record(UNIX_EPOCH);
        rec.headers = &["curl/8", "-"];
        assert_eq!(fmt.render(&rec), "200 ua=curl/8 ref=-");
        assert!(AccessFormat::parse("%(header{x})d").is_err());
        assert!(AccessFormat::parse("%(header{})s").is_err());
    }

    #[test]
    fn local_time_offset() {
        let fmt = AccessFormat::parse("%(time)s").unwrap().with_utc_offset(3600);
        assert_eq!(fmt.render(&record(UNIX_EPOCH)), "1970-01-01 01:00:00 +0100");
    }
}
