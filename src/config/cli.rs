//! Command-line flags. Sockudo has only `--config`, `--help` and `--version`;
//! `--check-config`, `--health` and `--help-env` are Switchyard's. Hand-rolled:
//! six flags without values do not justify an argument-parser crate, and the
//! environment variables — the real interface — are listed by `--help-env`
//! from the loader's own table (`vars.rs`).

use std::path::PathBuf;

use super::error::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `--config <path>` / `-c <path>` / `--config=<path>`.
    pub config_path: Option<PathBuf>,
    /// `--check-config`: load and validate, print the summary, exit.
    pub check_config: bool,
    /// `--health`: probe the running server's `GET /up`, exit 0 or 1
    /// (`crate::healthcheck`; the Docker `HEALTHCHECK`).
    pub health: bool,
    pub help: bool,
    /// `--help-env`: every environment variable, from the loader's table.
    pub help_env: bool,
    pub version: bool,
}

impl Cli {
    pub const USAGE: &'static str = "\
Usage: switchyard [OPTIONS]

Options:
  -c, --config <PATH>  Config file (.toml = TOML, anything else = JSON).
                       Default: $CONFIG_FILE, else config/config.toml,
                       else config/config.json, if present.
      --check-config   Validate the configuration and exit.
      --health         Probe the running server's GET /up on the configured
                       listener (TCP, TLS or Unix socket); exit 0 on 200,
                       else 1 (for container health checks).
  -h, --help           Print this help.
      --help-env       List every environment variable with its default.
  -V, --version        Print the version.

Settings come from built-in defaults, then the config file, then the
environment (Sockudo's variable names; a .env file in the working
directory is read without overriding the process environment).

Secrets can be read from files (Docker / Kubernetes secrets) instead of
the environment: SOCKUDO_DEFAULT_APP_SECRET_FILE, DATABASE_REDIS_PASSWORD_FILE,
REDIS_PASSWORD_FILE, REDIS_URL_FILE, DATABASE_MYSQL_PASSWORD_FILE and
DATABASE_POSTGRES_PASSWORD_FILE name a file whose content (less one trailing
newline) is the value. Setting both NAME and NAME_FILE is an error.";

    /// Parse the arguments *after* the program name, i.e.
    /// `Cli::parse(std::env::args().skip(1))`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, ConfigError> {
        let mut cli = Cli::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-c" | "--config" => {
                    let path = args
                        .next()
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| ConfigError::Usage(format!("{arg} needs a file path")))?;
                    cli.config_path = Some(PathBuf::from(path));
                }
                "--check-config" => cli.check_config = true,
                "--health" => cli.health = true,
                "-h" | "--help" => cli.help = true,
                "--help-env" => cli.help_env = true,
                "-V" | "--version" => cli.version = true,
                _ => {
                    let path = arg
                        .strip_prefix("--config=")
                        .or_else(|| arg.strip_prefix("-c="))
                        .ok_or_else(|| ConfigError::Usage(format!("unknown argument {arg:?}")))?;
                    if path.is_empty() {
                        return Err(ConfigError::Usage("--config= needs a file path".into()));
                    }
                    cli.config_path = Some(PathBuf::from(path));
                }
            }
        }
        Ok(cli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_names_every_secret_file_variable() {
        for var in super::super::env::SECRET_VARS {
            assert!(Cli::USAGE.contains(&format!("{var}_FILE")), "{var}_FILE");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, ConfigError> {
        Cli::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn config_flag_forms() {
        for args in [
            &["--config", "a.json"][..],
            &["-c", "a.json"],
            &["--config=a.json"],
            &["-c=a.json"],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.config_path, Some(PathBuf::from("a.json")), "{args:?}");
        }
        assert_eq!(parse(&[]).unwrap(), Cli::default());
    }

    #[test]
    fn switches() {
        let cli = parse(&["--check-config", "-h", "--version"]).unwrap();
        assert!(cli.check_config && cli.help && cli.version);
        assert!(parse(&["-V"]).unwrap().version);
        assert!(parse(&["--help"]).unwrap().help);
        assert!(parse(&["--health"]).unwrap().health);
    }

    #[test]
    fn errors() {
        for args in [
            &["--config"][..],
            &["-c"],
            &["--config="],
            &["--port", "1"],
            &["extra"],
        ] {
            assert!(
                matches!(parse(args), Err(ConfigError::Usage(_))),
                "{args:?}"
            );
        }
        let e = parse(&["--bogus"]).unwrap_err().to_string();
        assert_eq!(e, "unknown argument \"--bogus\"");
    }
}
