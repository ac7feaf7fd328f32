//! The `radacctd` binary: parse the command line, start logging, run, and turn any error into
//! one line on stderr and a non-zero exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = radacctd::cli::Cli::parse();
    radacctd::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("radacctd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(radacctd::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radacctd: {}", radacctd::telemetry::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
