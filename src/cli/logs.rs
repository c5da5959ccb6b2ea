//! `meshmedic logs` (owned by the access-log work).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {}

pub fn run(_args: LogsArgs) -> ExitCode {
    ExitCode::from(2)
}
