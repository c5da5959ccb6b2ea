//! The `meshmedic` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod logs;

#[derive(Parser, Debug)]
#[command(
    name = "meshmedic",
    version,
    about = "Finds and fixes the Istio configurations that cause HTTP 503"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse manifests offline: every configuration that makes the mesh answer 503, with its fix.
    Analyze(analyze::AnalyzeArgs),
    /// Diagnose Envoy access logs: 503s by response flag, mapped to meshmedic's finding codes.
    Logs(logs::LogsArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Logs(args) => logs::run(args),
    }
}
