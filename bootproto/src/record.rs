//! Result lines: an optional `TAG`, then `key=value` fields separated by
//! spaces, one record per line:
//!
//! ```text
//! BENCH demo=lu size=64 cpus=2 ratio=2.408 match=yes
//! CHECK-DONE verdict=error error="cannot start demo-det: No such file"
//! demo=matmult impl=pthread size=256 cpus=2 reps=3 seed=1 hash=5d0e4f1b2c3a4d5e ok=yes
//! ```
//!
//! The one quoting rule: a value is written bare unless it is empty or
//! holds a space, a tab or a `"`; then it is written in double quotes, with
//! each `"` inside it written as `'` (there is no escape character, so a
//! reader never unescapes and values stay borrowed). A line break inside a
//! value is written as a space. Keys are plain words without `=`.

use core::fmt::{self, Write};

/// Writes `value` by the quoting rule above.
pub fn write_value(out: &mut impl Write, value: &str) -> fmt::Result {
    let quote = value.is_empty() || value.contains([' ', '\t', '"', '\n', '\r']);
    if quote {
        out.write_char('"')?;
    }
    for c in value.chars() {
        out.write_char(match c {
            '"' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })?;
    }
    if quote {
        out.write_char('"')?;
    }
    Ok(())
}

/// Writes ` key=value`, the value quoted as needed.
pub fn write_field(out: &mut impl Write, key: &str, value: &str) -> fmt::Result {
    write!(out, " {key}=")?;
    write_value(out, value)
}

/// A record being written: `TAG`, then ` key=value` fields.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    line: alloc::string::String,
}

#[cfg(feature = "alloc")]
impl Record {
    pub fn new(tag: &str) -> Record {
        Record {
            line: alloc::string::String::from(tag),
        }
    }

    /// Appends ` key=value`; `value` is formatted, then quoted as needed.
    pub fn field(&mut self, key: &str, value: impl fmt::Display) -> &mut Record {
        let value = alloc::format!("{value}");
        let _ = write_field(&mut self.line, key, &value);
        self
    }

    /// The line, without its newline.
    pub fn as_str(&self) -> &str {
        &self.line
    }
}

#[cfg(feature = "alloc")]
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// The fields of `line` after `tag`, if the line is a `tag` record: `tag`
/// alone, or `tag` and a space.
pub fn tagged<'a>(line: &'a str, tag: &str) -> Option<Fields<'a>> {
    let rest = line.trim().strip_prefix(tag)?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some(fields(rest))
}

/// The `key=value` fields of `text` (no tag), in order.
pub fn fields(text: &str) -> Fields<'_> {
    Fields { rest: text }
}

/// The value of the first `key` field of `text` (no tag); fields after a
/// malformed one are not read.
pub fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    fields(text)
        .map_while(Result::ok)
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// A field that breaks the format: a word without `=`, an empty key or an
/// unterminated quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed<'a>(pub &'a str);

impl fmt::Display for Malformed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a key=value field", self.0)
    }
}

/// Iterator over the fields of a record; stops after the first
/// [`Malformed`] one.
pub struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a str, &'a str), Malformed<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.rest.trim_start_matches([' ', '\t']);
        if text.is_empty() {
            self.rest = text;
            return None;
        }
        let word_end = text.find([' ', '\t']).unwrap_or(text.len());
        let bad = |rest: &mut &'a str| {
            *rest = "";
            Some(Err(Malformed(&text[..word_end])))
        };
        let Some((key, after)) = text.split_once('=') else {
            return bad(&mut self.rest);
        };
        if key.is_empty() || key.contains([' ', '\t', '"']) {
            return bad(&mut self.rest);
        }
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => return bad(&mut self.rest),
            },
            None => {
                let end = after.find([' ', '\t']).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        self.rest = next;
        Some(Ok((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn all(text: &str) -> Vec<Result<(&str, &str), Malformed<'_>>> {
        fields(text).collect()
    }

    #[test]
    fn bare_and_quoted_values() {
        assert_eq!(
            all(r#"a=1 b="x y"  c= d="" e=p=q"#),
            [
                Ok(("a", "1")),
                Ok(("b", "x y")),
                Ok(("c", "")),
                Ok(("d", "")),
                Ok(("e", "p=q"))
            ]
        );
    }

    #[test]
    fn malformed_fields_end_the_record() {
        assert_eq!(
            all("a=1 word b=2"),
            [Ok(("a", "1")), Err(Malformed("word"))]
        );
        assert_eq!(all(r#"a="open b=2"#), [Err(Malformed(r#"a="open"#))]);
        assert_eq!(all("=x"), [Err(Malformed("=x"))]);
        assert_eq!(value("a=1 word b=2", "b"), None);
    }

    #[test]
    fn tags() {
        let line = "CHECK-DONE verdict=error error=\"a b\"\r\n";
        assert!(tagged(line, "CHECK").is_none());
        let f: Vec<_> = tagged(line, "CHECK-DONE").unwrap().collect();
        assert_eq!(f, [Ok(("verdict", "error")), Ok(("error", "a b"))]);
        assert_eq!(tagged("BENCH-DONE", "BENCH-DONE").unwrap().count(), 0);
        assert!(tagged("BENCHX a=1", "BENCH").is_none());
    }

    #[test]
    fn what_is_written_reads_back() {
        let mut r = Record::new("BENCH");
        r.field("demo", "lu")
            .field("ratio", 2.5)
            .field("error", "it said \"no\"\nthen stopped")
            .field("empty", "");
        assert_eq!(
            r.as_str(),
            r#"BENCH demo=lu ratio=2.5 error="it said 'no' then stopped" empty="""#
        );
        let f: Vec<_> = tagged(r.as_str(), "BENCH").unwrap().collect();
        assert_eq!(
            f,
            [
                Ok(("demo", "lu")),
                Ok(("ratio", "2.5")),
                Ok(("error", "it said 'no' then stopped")),
                Ok(("empty", ""))
            ]
        );
        let mut s = String::new();
        write_field(&mut s, "k", "v").unwrap();
        assert_eq!(s, " k=v");
    }
}
