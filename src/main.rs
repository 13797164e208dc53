//! The `switchyard` binary: parse flags, load configuration, run the server.

use std::process::ExitCode;
use switchyard::config::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("switchyard: {e}\n\n{}", Cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if cli.help {
        println!("{}", Cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if cli.help_env {
        print!("{}", config::vars::help());
        return ExitCode::SUCCESS;
    }
    if cli.version {
        println!("switchyard {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match config::load(&cli) {
        Ok(c) => c,
        // A health check exits 0 or 1 only (Docker reserves 2).
        Err(e) if cli.health => {
            eprintln!("switchyard: health check failed: configuration error: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("switchyard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.health {
        return match switchyard::healthcheck::run(&config) {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("switchyard: health check failed: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.check_config {
        let problems = switchyard::server::preflight(&config);
        if problems.is_empty() {
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            println!("configuration OK: {}", config.summary());
            return ExitCode::SUCCESS;
        }
        for problem in &problems {
            eprintln!("switchyard: configuration error: {problem}");
        }
        return ExitCode::from(2);
    }
    switchyard::logging::init(
        config.logging.json,
        config.logging.colors_enabled,
        config.logging.include_target,
    );
    match actix_web::rt::System::new().block_on(switchyard::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server error: {e}");
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}
