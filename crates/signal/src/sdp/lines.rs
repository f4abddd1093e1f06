//! A bounded line reader: splits an SDP into `<type>=<value>` lines without ever
//! indexing into the input, and enforces the size and line-count limits first.

use super::error::SdpError;

/// One `<type>=<value>` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number, for error messages.
    pub number: usize,
    /// The single-letter type (`v`, `o`, `m`, `a`, ...).
    pub kind: char,
    /// Everything after the `=`.
    pub value: &'a str,
}

impl<'a> Line<'a> {
    /// Splits an `a=` value into attribute name and optional value at the first `:`.
    pub fn attribute(&self) -> (&'a str, Option<&'a str>) {
        match self.value.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (self.value, None),
        }
    }

    /// A `Malformed` error for this line.
    pub fn malformed(&self, what: &'static str) -> SdpError {
        SdpError::Malformed {
            line: self.number,
            what,
        }
    }
}

/// Splits `text` into lines after checking `max_len` bytes and `max_lines` lines.
///
/// Accepts CRLF and bare LF endings and skips empty lines (a trailing newline is
/// normal; stray blank lines are tolerated as browsers do).
pub fn split_lines(
    text: &str,
    max_len: usize,
    max_lines: usize,
) -> Result<Vec<Line<'_>>, SdpError> {
    if text.len() > max_len {
        return Err(SdpError::TooLarge {
            len: text.len(),
            max_len,
        });
    }
    let mut lines = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        if number > max_lines {
            return Err(SdpError::TooManyLines { max: max_lines });
        }
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let mut chars = raw.chars();
        let kind = chars.next().filter(|c| c.is_ascii_lowercase());
        let value = chars.as_str().strip_prefix('=');
        match (kind, value) {
            (Some(kind), Some(value)) => lines.push(Line {
                number,
                kind,
                value,
            }),
            _ => {
                return Err(SdpError::Malformed {
                    line: number,
                    what: "line (expected <letter>=<value>)",
                })
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_and_lf_lines_and_skips_blank_ones() {
        let lines = split_lines("v=0\r\no=- 1 2 IN IP4 0.0.0.0\n\r\na=x:y\r\n", 1000, 10).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].number, 4);
        assert_eq!(lines[2].kind, 'a');
        assert_eq!(lines[2].attribute(), ("x", Some("y")));
    }

    #[test]
    fn rejects_oversized_input_before_splitting() {
        let text = "a=x\r\n".repeat(100);
        assert_eq!(
            split_lines(&text, 100, 1000),
            Err(SdpError::TooLarge {
                len: 500,
                max_len: 100
            })
        );
    }

    #[test]
    fn rejects_too_many_lines() {
        let text = "a=x\n".repeat(11);
        assert_eq!(
            split_lines(&text, 1000, 10),
            Err(SdpError::TooManyLines { max: 10 })
        );
    }

    #[test]
    fn rejects_lines_without_letter_and_equals() {
        for bad in ["v0", "=0", "V=0", "é=0", "vv=0"] {
            assert!(
                matches!(
                    split_lines(bad, 100, 10),
                    Err(SdpError::Malformed { line: 1, .. })
                ),
                "{bad}"
            );
        }
    }
}
