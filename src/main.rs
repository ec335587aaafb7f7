//! The `ordersync` binary: parse arguments, run, print the error as one sentence, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ordersync::cli::Cli::parse();
    ordersync::cli::init_logging(cli.log_format);
    match ordersync::cli::run(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("ordersync: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
