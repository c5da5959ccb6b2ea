//! `meshmedic logs`: diagnose Envoy access logs.

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::logs::format::{Format, ISTIO_TEXT_FORMAT};
use crate::logs::report::Report;
use crate::logs::stats::Limits;
use crate::logs::{Analyzer, InputError, feed};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Access-log files (plain or gzip); `-` or none reads standard input.
    #[arg(value_name = "FILE|-")]
    pub files: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Envoy format string of the TEXT lines; default: Istio's. JSON lines are always recognised.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Width of a time bucket (widened automatically for long logs).
    #[arg(long, default_value = "1m", value_parser = crate::model::duration::parse)]
    pub bucket: std::time::Duration,
    /// Cap on distinct keys per breakdown (clusters, authorities, ...); the rest count as (other).
    #[arg(long, default_value_t = 10_000)]
    pub max_keys: usize,
    /// Parsing threads (default: the number of CPUs, at most 8).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: LogsArgs) -> ExitCode {
    let format = match Format::compile(args.format.as_deref().unwrap_or(ISTIO_TEXT_FORMAT)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("meshmedic logs: --format: {e}");
            return ExitCode::from(2);
        }
    };
    let limits = Limits {
        max_keys: args.max_keys.max(1),
        bucket_secs: (args.bucket.as_secs() as i64).max(1),
        ..Limits::default()
    };
    let threads = args
        .threads
        .unwrap_or_else(crate::snapshot::load::worker_threads);
    let mut analyzer = Analyzer::new(format, limits).with_threads(threads);
    let files = if args.files.is_empty() {
        vec!["-".to_string()]
    } else {
        args.files
    };
    for (i, name) in files.iter().enumerate() {
        let res = if name == "-" {
            feed(&mut analyzer, io::stdin(), i)
        } else {
            File::open(name).and_then(|f| feed(&mut analyzer, f, i))
        };
        if let Err(source) = res {
            eprintln!(
                "meshmedic logs: {}",
                InputError {
                    name: name.clone(),
                    source
                }
            );
            return ExitCode::from(2);
        }
    }
    let report = Report::build(&analyzer.stats, &files);
    let text = match args.output {
        Output::Json => report.to_json(),
        Output::Table => report.to_table(),
    };
    let mut out = io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = writeln!(out, "{}", text.trim_end());
    ExitCode::SUCCESS
}
