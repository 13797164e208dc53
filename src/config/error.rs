//! Why configuration was refused.
//!
//! Sockudo logs and carries on when a value does not parse; Switchyard stops,
//! so every variant carries enough to fix the problem without reading code:
//! the file, the key path or the variable, the value, and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad command line; the message is meant to be followed by `Cli::USAGE`.
    #[error("{0}")]
    Usage(String),

    /// The config file named on the command line / in `CONFIG_FILE` could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid JSON/TOML, or a value has the wrong type.
    /// `key` is the dotted path (`app_manager.array.apps[0].max_connections`);
    /// `None` for syntax errors that are not inside any key.
    #[error("config file {}: {}", path.display(), at_key(key.as_deref(), message))]
    Parse {
        path: PathBuf,
        key: Option<String>,
        message: String,
    },

    /// A `.env` file that cannot be read completely (`line` is 1-based; 0
    /// when the problem is not tied to a line).
    #[error("{}{}: {message}", path.display(), if *line > 0 { format!(" line {line}") } else { String::new() })]
    DotEnv {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// An environment variable that does not parse as its type.
    #[error("environment variable {var}={value:?}: expected {expected}")]
    Env {
        var: String,
        value: String,
        expected: String,
    },

    /// A secret given both as `NAME` and as `NAME_FILE`.
    #[error(
        "environment variables {var} and {file_var} are both set: set only one (the value, \
         or the path of a file holding it)"
    )]
    SecretConflict { var: String, file_var: String },

    /// `NAME_FILE` names a file that cannot be read. The message names the
    /// variable and the path, never the content.
    #[error("environment variable {file_var}={}: cannot read the file: {source}", path.display())]
    SecretFile {
        file_var: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A value that parses but is not acceptable (duplicate app id, bad origin
    /// pattern, relative socket path, ...). `key` is a config key or env variable.
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn env(
        var: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::Env {
            var: var.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}

fn at_key(key: Option<&str>, message: &str) -> String {
    match key {
        Some(key) => format!("{key}: {message}"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_key_and_variable() {
        let e = ConfigError::Parse {
            path: "config/config.json".into(),
            key: Some("app_manager.array.apps[0].max_connections".into()),
            message: "invalid type".into(),
        };
        assert_eq!(
            e.to_string(),
            "config file config/config.json: app_manager.array.apps[0].max_connections: invalid type"
        );
        let e = ConfigError::env("PORT", "abc", "an integer 0-65535");
        assert_eq!(
            e.to_string(),
            "environment variable PORT=\"abc\": expected an integer 0-65535"
        );
        let e = ConfigError::invalid("unix_socket.path", "must be absolute");
        assert_eq!(
            e.to_string(),
            "invalid configuration: unix_socket.path: must be absolute"
        );
    }
}
