//! The access log: the user's %-style format parsed once, each line rendered in Rust and
//! handed to the `granian.access` logger as a finished string. With `--log-format json`
//! that string is one JSON object: the text line as `message`, and every atom as a field
//! of its own (the shape is documented in the README, and `granian.log` writes the same
//! one for access lines logged from Python).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_core::ser::{SerializeMap, Serializer};
use serde_core::Serialize;

use crate::log_time::{format_iso_time, format_time, with_formatted_time};

/// What one access line can show.
pub struct AccessRecord<'a> {
    /// Values of the request headers the format names, in `header_names()` order; None
    /// when the request has none (the text shows `-`, JSON `null`).
    pub headers: &'a [Option<&'a str>],
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
    /// `--log-format json`: each line is a JSON object rather than the format's text.
    json: bool,
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
            json: false,
        })
    }

    /// The format writing JSON objects (`--log-format json`) instead of text lines.
    pub fn with_json(mut self, json: bool) -> Self {
        self.json = json;
        self
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

    /// One access line, without its newline: the format's text, or with JSON the object
    /// that carries it.
    pub fn render(&self, record: &AccessRecord<'_>) -> String {
        let text = self.render_text(record);
        if self.json {
            return self.render_json(record, &text);
        }
        text
    }

    fn render_text(&self, record: &AccessRecord<'_>) -> String {
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
                        Atom::Header(index) => Value::Str(header_text(record, index)),
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
            (Atom::Header(index), 's') => out.push_str(header_text(record, index)),
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

    /// `{"time": ..., "level": "INFO", "logger": "granian.access", "message": text, <atoms>}`
    /// on one line; serde_json does the escaping.
    #[inline(never)]
    fn render_json(&self, record: &AccessRecord<'_>, text: &str) -> String {
        let time = format_iso_time(record.time, self.utc_offset);
        let line = JsonLine {
            record,
            time: &time,
            message: text,
            header_names: &self.headers,
        };
        // Strings, integers and floats always serialize: the fallback is never taken.
        serde_json::to_string(&line).unwrap_or_else(|_| text.to_owned())
    }
}

/// A header atom's value as the text shows it: `-` when the request has none.
fn header_text<'a>(record: &AccessRecord<'a>, index: usize) -> &'a str {
    record.headers.get(index).copied().flatten().unwrap_or("-")
}

/// One access line as a JSON object. Fields, in this order: `time` (ISO 8601, milliseconds,
/// the worker's UTC offset), `level`, `logger`, `message` (the line the format renders in
/// text mode), then every atom: `addr`, `method`, `path`, `query_string`, `status` (a
/// number), `dt_ms` (a number, rounded to the microsecond), `protocol`, `scheme`, and, when
/// the format names request headers, `header`: their lower-case names to their values
/// (`null` when absent).
struct JsonLine<'a> {
    record: &'a AccessRecord<'a>,
    time: &'a str,
    message: &'a str,
    header_names: &'a [String],
}

impl Serialize for JsonLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.record;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("time", self.time)?;
        map.serialize_entry("level", "INFO")?;
        map.serialize_entry("logger", "granian.access")?;
        map.serialize_entry("message", self.message)?;
        map.serialize_entry("addr", record.addr)?;
        map.serialize_entry("method", record.method)?;
        map.serialize_entry("path", record.path)?;
        map.serialize_entry("query_string", record.query_string)?;
        map.serialize_entry("status", &record.status)?;
        map.serialize_entry("dt_ms", &((record.dt_ms * 1000.0).round() / 1000.0))?;
        map.serialize_entry("protocol", record.protocol)?;
        map.serialize_entry("scheme", record.scheme)?;
        if !self.header_names.is_empty() {
            map.serialize_entry(
                "header",
                &HeaderFields {
                    names: self.header_names,
                    values: record.headers,
                },
            )?;
        }
        map.end()
    }
}

/// The `header` object of a JSON line.
struct HeaderFields<'a> {
    names: &'a [String],
    values: &'a [Option<&'a str>],
}

impl Serialize for HeaderFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (index, name) in self.names.iter().enumerate() {
            // A header the format shows twice is one field.
            if self.names[..index].contains(name) {
                continue;
            }
            map.serialize_entry(name, &self.values.get(index).copied().flatten())?;
        }
        map.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

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
    fn header_atoms() {
        let fmt = AccessFormat::parse("%(status)d ua=%(header{User-Agent})s ref=%(header{ referer })s").unwrap();
        assert_eq!(fmt.header_names(), ["user-agent", "referer"]);
        let mut rec = record(UNIX_EPOCH);
        rec.headers = &[Some("curl/8"), None];
        assert_eq!(fmt.render(&rec), "200 ua=curl/8 ref=-");
        assert!(AccessFormat::parse("%(header{x})d").is_err());
        assert!(AccessFormat::parse("%(header{})s").is_err());
    }

    #[test]
    fn local_time_offset() {
        let fmt = AccessFormat::parse("%(time)s").unwrap().with_utc_offset(3600);
        assert_eq!(fmt.render(&record(UNIX_EPOCH)), "1970-01-01 01:00:00 +0100");
    }

    #[test]
    fn json_lines() {
        let fmt = AccessFormat::parse(
            r#"%(method)s "%(path)s" ua=%(header{User-Agent})s r=%(header{referer})s %(header{user-agent})s"#,
        )
        .unwrap()
        .with_utc_offset(3600)
        .with_json(true);
        let mut rec = record(UNIX_EPOCH + Duration::from_millis(1_500));
        rec.headers = &[Some("probe \"1\"\n"), None, Some("probe \"1\"\n")];
        rec.path = "/a\u{e9}";
        assert_eq!(
            fmt.render(&rec),
            concat!(
                r#"{"time":"1970-01-01T01:00:01.500+01:00","level":"INFO","logger":"granian.access","#,
                r#""message":"GET \"/aé\" ua=probe \"1\"\n r=- probe \"1\"\n","#,
                r#""addr":"127.0.0.1","method":"GET","path":"/aé","query_string":"x=1","status":200,"#,
                r#""dt_ms":1.235,"protocol":"HTTP/1.1","scheme":"http","#,
                r#""header":{"user-agent":"probe \"1\"\n","referer":null}}"#
            )
        );
        // Without header atoms there is no `header` field; the text path is unchanged.
        let plain = AccessFormat::parse("%(status)d").unwrap();
        assert_eq!(plain.render(&record(UNIX_EPOCH)), "200");
        let line = plain.with_json(true).render(&record(UNIX_EPOCH));
        assert!(line.ends_with(r#""protocol":"HTTP/1.1","scheme":"http"}"#), "{line}");
        assert!(line.contains(r#""message":"200""#), "{line}");
    }
}
