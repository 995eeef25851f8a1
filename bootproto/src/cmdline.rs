//! Splitting the kernel command line into `key[=value]` parameters.
//!
//! The rules are the kernel's own (`next_arg()` in `lib/cmdline.c`), so init
//! sees a parameter exactly as the kernel does: parameters are separated by
//! whitespace outside double quotes; a value that starts with `"` loses that
//! quote and a closing `"` at its end (`det.run="echo hi there"` is
//! `echo hi there`); a whole parameter may be quoted (`"key=a b"`); quotes
//! elsewhere are kept. Parsing stops at a bare `--` (what follows is argv
//! for init, not parameters).
//!
//! Init and the in-guest tests read `det.*` keys through it, so both read
//! them the same way.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One command-line parameter: `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    /// `None` for a bare `key`, `Some("")` for `key=`.
    pub value: Option<String>,
}

/// Splits `text` (the contents of `/proc/cmdline`) into parameters, in order.
///
/// Never fails: like the kernel, an unterminated quote runs to the end of
/// the line. Use [`check_quotes`] to reject that.
pub fn parse(text: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (param, next) = next_arg(rest);
        if param.key == "--" && param.value.is_none() {
            break;
        }
        params.push(param);
        rest = next.trim_start();
    }
    params
}

/// Errors if some parameter has an unterminated double quote.
pub fn check_quotes(text: &str) -> Result<(), String> {
    let mut in_quote = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '"' {
            if !in_quote {
                start = i;
            }
            in_quote = !in_quote;
        }
    }
    if in_quote {
        let context: String = text[start..].trim_end().chars().take(40).collect();
        return Err(format!(
            "unterminated quote in kernel command line at `{context}`"
        ));
    }
    Ok(())
}

/// The value of the last `key=value` for `key` (later parameters win, as
/// for most kernel parameters). A bare `key` counts as absent.
pub fn last_value<'a>(params: &'a [Param], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|p| p.key == key && p.value.is_some())
        .and_then(|p| p.value.as_deref())
}

/// One step of the kernel's `next_arg()`: the first parameter of `args`
/// (which starts with a non-space) and the text after it.
fn next_arg(args: &str) -> (Param, &str) {
    let (args, quoted) = match args.strip_prefix('"') {
        Some(inner) => (inner, true),
        None => (args, false),
    };
    let mut in_quote = quoted;
    let mut equals = None;
    let mut end = args.len();
    for (i, c) in args.char_indices() {
        if c.is_ascii_whitespace() && !in_quote {
            end = i;
            break;
        }
        if equals.is_none() && c == '=' {
            equals = Some(i);
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    let token = &args[..end];
    let rest = &args[end..];
    let value_quoted = equals.is_some_and(|eq| token[eq + 1..].starts_with('"'));
    // The kernel drops at most one closing quote: that of a quoted value or
    // of a wholly quoted parameter.
    let body = if quoted || value_quoted {
        token.strip_suffix('"').unwrap_or(token)
    } else {
        token
    };
    let param = match equals {
        // `eq` indexes an `=`, which the quote stripping above never removes.
        Some(eq) => {
            let start = if value_quoted { eq + 2 } else { eq + 1 };
            Param {
                key: body[..eq].to_string(),
                value: Some(body[start.min(body.len())..].to_string()),
            }
        }
        None => Param {
            key: body.to_string(),
            value: None,
        },
    };
    (param, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn kv(text: &str) -> Vec<(String, Option<String>)> {
        parse(text).into_iter().map(|p| (p.key, p.value)).collect()
    }

    fn pair(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn plain_keys_and_values() {
        assert_eq!(
            kv("console=ttyS0 panic=-1 quiet det.cpus=2\n"),
            vec![
                pair("console", Some("ttyS0")),
                pair("panic", Some("-1")),
                pair("quiet", None),
                pair("det.cpus", Some("2")),
            ]
        );
    }

    #[test]
    fn empty_value_and_repeated_equals() {
        assert_eq!(
            kv("a= b=c=d"),
            vec![pair("a", Some("")), pair("b", Some("c=d"))]
        );
    }

    #[test]
    fn quoted_value_keeps_spaces() {
        assert_eq!(
            kv(r#"det.run="echo hi  there" det.out=/dev/ttyS1"#),
            vec![
                pair("det.run", Some("echo hi  there")),
                pair("det.out", Some("/dev/ttyS1")),
            ]
        );
    }

    #[test]
    fn wholly_quoted_parameter() {
        assert_eq!(
            kv(r#""det.run=echo a b" x"#),
            vec![pair("det.run", Some("echo a b")), pair("x", None)]
        );
    }

    #[test]
    fn inner_quotes_are_kept_like_the_kernel() {
        assert_eq!(kv(r#"a=x"y z"w"#), vec![pair("a", Some(r#"x"y z"w"#))]);
    }

    #[test]
    fn double_dash_ends_parameters() {
        assert_eq!(kv("a=1 -- b=2"), vec![pair("a", Some("1"))]);
        assert_eq!(kv("a=1 --x"), vec![pair("a", Some("1")), pair("--x", None)]);
    }

    #[test]
    fn whitespace_only_and_tabs() {
        assert!(parse("  \n").is_empty());
        assert_eq!(kv("a\tb"), vec![pair("a", None), pair("b", None)]);
    }

    #[test]
    fn unterminated_quote_runs_to_end_and_is_reported() {
        let text = r#"a=1 det.run="echo hi b=2"#;
        assert_eq!(
            kv(text),
            vec![pair("a", Some("1")), pair("det.run", Some("echo hi b=2"))]
        );
        let err = check_quotes(text).unwrap_err();
        assert!(err.contains("unterminated quote"), "{err}");
        assert!(check_quotes(r#"a="x y" b"#).is_ok());
    }

    #[test]
    fn last_value_wins_and_bare_key_is_absent() {
        let params = parse("k=1 k=2 j");
        assert_eq!(last_value(&params, "k"), Some("2"));
        assert_eq!(last_value(&params, "j"), None);
        assert_eq!(last_value(&params, "missing"), None);
    }

    #[test]
    fn at_most_one_closing_quote_is_dropped() {
        assert_eq!(kv(r#""a="x"""#), vec![pair("a", Some(r#"x""#))]);
        assert_eq!(kv(r#"a=""#), vec![pair("a", Some(""))]);
        assert_eq!(kv(r#"a="""#), vec![pair("a", Some(""))]);
    }

    #[test]
    fn non_ascii_does_not_panic() {
        assert_eq!(kv("é=ü \"ß"), vec![pair("é", Some("ü")), pair("ß", None)]);
        assert_eq!(kv("\"=\""), vec![pair("", Some(""))]);
    }
}
