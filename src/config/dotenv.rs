//! The `.env` file: read completely or not at all.
//!
//! dotenvy stops at the first line it cannot parse, after the lines before it
//! are set; everything after — allowed origins, `METRICS_HOST`, rate limits —
//! would silently keep its permissive default. So the whole file is parsed
//! first and any problem stops start-up naming the line and the fix. The
//! commonest cause is a value pasted over two lines (`openssl rand -base64 64`
//! wraps at 64 characters), whose tail may even parse as a `KEY==` line of its
//! own; that shape is refused too.

use std::path::Path;

use super::error::ConfigError;

/// The variables of the `.env` at `path`, in file order; `Ok(None)` when
/// there is no such file.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(path, &text).map(Some)
}

/// Set every variable not already in the process environment (the process
/// environment wins, as documented). Call before any thread starts.
pub(crate) fn apply(vars: Vec<(String, String)>) {
    for (key, value) in vars {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(key, value);
        }
    }
}

const FIX: &str = "put the whole value on one line, in double quotes if it contains spaces or \
                   #; generate secrets as hex (`openssl rand -hex 32`), which never wraps";

pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let error = |line: usize, message: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        line,
        message,
    };
    if let Some((line, previous)) = wrapped_value(text) {
        return Err(error(
            line,
            format!(
                "this line looks like the rest of the value on line {previous} (a value \
                 wrapped over two lines); {FIX}"
            ),
        ));
    }
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(dotenvy::Error::LineParse(content, _)) => {
                return Err(error(
                    line_of(text, &content),
                    format!("cannot be parsed as NAME=value; {FIX}"),
                ))
            }
            Err(e) => return Err(error(0, e.to_string())),
        }
    }
    Ok(vars)
}

/// 1-based number of the line where `content` (as dotenvy reports it) starts.
fn line_of(text: &str, content: &str) -> usize {
    let first = content.lines().next().unwrap_or(content).trim();
    text.lines()
        .position(|l| !first.is_empty() && l.trim() == first)
        .or_else(|| text.lines().position(|l| l.contains(first)))
        .map_or(0, |i| i + 1)
}

/// A line that is only the tail of a wrapped base64 value (`abc/+9==`)
/// right after an unquoted `NAME=value` line: (its line, the previous line).
fn wrapped_value(text: &str) -> Option<(usize, usize)> {
    let mut previous: Option<(usize, &str)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            previous = None;
            continue;
        }
        if let Some((p, prev)) = previous {
            let unquoted = prev
                .split_once('=')
                .is_some_and(|(_, v)| !v.trim_start().starts_with(['"', '\'']) && !v.is_empty());
            if unquoted && is_base64_tail(line) {
                return Some((i + 1, p + 1));
            }
        }
        previous = Some((i, line));
    }
    None
}

/// Only base64 characters, ending in `=` padding, and no `NAME=` before it.
fn is_base64_tail(line: &str) -> bool {
    let body = line.trim_end_matches('=');
    body.len() < line.len()
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
        parse(Path::new("/etc/sy/.env"), text)
    }

    fn line(text: &str) -> usize {
        match parsed(text) {
            Err(ConfigError::DotEnv { line, .. }) => line,
            other => panic!("expected a .env error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_file_is_read_in_order() {
        let vars = parsed(
            "\u{feff}# comment\nA=1\nexport B=\"two words\"\n\nC='x#y'\nD=\"multi\nline\"\nE=${A}2\n",
        )
        .unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x#y"),
            ("D", "multi\nline"),
            ("E", "12"),
        ];
        assert_eq!(
            vars.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            want
        );
        // base64 on one line, with its padding, is fine.
        assert!(parsed("SECRET=ab+/cd==\nMETRICS_HOST=127.0.0.1\n").is_ok());
        assert!(
            parsed("SECRET=\"ab+/cd\n==\"\n").is_ok(),
            "inside quotes it is one value"
        );
    }

    #[test]
    fn a_wrapped_value_names_both_lines_and_the_fix() {
        // `openssl rand -base64 64` pasted as printed: the tail has `/`.
        let text = "PORT=6001\nSOCKUDO_DEFAULT_APP_SECRET=7Qm4dJk2Nf1GqZ8s0u3Xb6YcVw9Er5Ta1LpHo2KiUj4Mn7Bv0Cx3Zq8Wy6Ts5Rg\nk1Pq/Lx8Yz0Wv+Tu3Rs==\nMETRICS_HOST=127.0.0.1\n";
        assert_eq!(line(text), 3);
        let e = parsed(text).unwrap_err().to_string();
        assert!(
            e.contains("/etc/sy/.env line 3") && e.contains("line 2"),
            "{e}"
        );
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        // Without `/` or `+` the tail parses as `k1PqLx8==` — still refused.
        assert_eq!(line("S=abc\nk1PqLx8Yz0Wv==\nM=1\n"), 2);
    }

    #[test]
    fn an_unparsable_line_is_named() {
        assert_eq!(line("A=1\nB=2\nthis is not a pair\nC=3\n"), 3);
        assert_eq!(line("A=1\nB=\"unterminated\nC=3\n"), 2);
        let e = parsed("A=1\nB-C=2\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("NAME=value"), "{e}");
    }
}
