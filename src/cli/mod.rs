//! The `meshmedic` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod approve;
pub mod crd;
pub mod explain;
pub mod fix;
pub mod kube_args;
pub mod logs;
pub mod mesh_args;
pub mod rollback;
pub mod sarif;

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
    /// Run the operator: watch opted-in namespaces, write Remediations, apply approved fixes.
    Run(crate::controller::RunArgs),
    /// Print the Remediation CustomResourceDefinition (YAML).
    Crd,
    /// Diagnose Envoy access logs: 503s by response flag, mapped to meshmedic's finding codes.
    Logs(logs::LogsArgs),
    /// Explain a Remediation (its finding, evidence, why it is a 503, the planned change), or a
    /// finding code.
    Explain(explain::ExplainArgs),
    /// Write the safe fixes into the manifest files (minimal edits; `--diff` only shows them).
    Fix(fix::FixArgs),
    /// Show the change a Remediation would make, then approve exactly that plan (its digest).
    Approve(approve::ApproveArgs),
    /// Restore a Remediation's target to what it was before meshmedic first wrote it.
    Rollback(rollback::RollbackArgs),
}

/// Names for a note, the first eight and then how many more: an input can hold hundreds.
pub(crate) fn first_names(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut shown = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        shown.push_str(&format!(", {} more", names.len() - SHOWN));
    }
    shown
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Crd => crd::run(),
        Command::Run(args) => run_operator(args),
        Command::Logs(args) => logs::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Fix(args) => fix::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Rollback(args) => rollback::run(args),
    }
}

fn run_operator(args: crate::controller::RunArgs) -> ExitCode {
    crate::controller::init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshmedic: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::controller::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "meshmedic stopped");
            eprintln!("meshmedic: {e}");
            ExitCode::from(1)
        }
    }
}
