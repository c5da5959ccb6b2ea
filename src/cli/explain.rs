//! `meshmedic explain NAME|CODE`: what a Remediation found and why it is a 503, or what a finding
//! code means (offline).

use std::process::ExitCode;

use kube::Api;

use super::kube_args::KubeArgs;
use crate::analysis::Code;
use crate::analysis::explanations::{explanation, title};
use crate::error::{Error, Result};
use crate::model::remediation::Remediation;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// A Remediation's name (read from the cluster), or a finding code such as
    /// `missing-reset-retry` (explained offline).
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub fn run(args: ExplainArgs) -> ExitCode {
    let result = match Code::parse(&args.name) {
        Some(code) => Ok(explain_code(code)),
        None => tokio::runtime::Runtime::new()
            .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))
            .and_then(|rt| rt.block_on(explain_remediation(&args))),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshmedic explain: {e}");
            ExitCode::from(2)
        }
    }
}

fn explain_code(code: Code) -> String {
    format!(
        "{code}: {}\n\n{}\n",
        title(code),
        wrap(explanation(code), 0)
    )
}

async fn explain_remediation(args: &ExplainArgs) -> Result<String> {
    let conn = args.kube.connect().await?;
    let api: Api<Remediation> = Api::namespaced(conn.client, &conn.namespace);
    let r = api.get_opt(&args.name).await?.ok_or_else(|| {
        Error::Other(format!(
            "no Remediation {} in namespace {} (`kubectl get remediations -n {}` lists them)",
            args.name, conn.namespace, conn.namespace
        ))
    })?;
    Ok(render(&r))
}

/// The text `explain` prints for a Remediation.
pub fn render(r: &Remediation) -> String {
    use std::fmt::Write;
    let s = &r.spec;
    let mut out = String::new();
    let ns = r.metadata.namespace.as_deref().unwrap_or_default();
    let name = r.metadata.name.as_deref().unwrap_or_default();
    let _ = writeln!(out, "Remediation {ns}/{name}");
    let _ = writeln!(
        out,
        "Finding:   {} ({}): {}",
        s.code,
        s.severity,
        title(s.code)
    );
    let _ = writeln!(
        out,
        "Target:    {} {}/{}",
        s.target.kind, s.target.namespace, s.target.name
    );
    if let Some(service) = &s.service {
        let _ = writeln!(out, "Service:   {service}");
    }
    if let Some(status) = &r.status {
        let _ = writeln!(out, "Phase:     {}", status.phase.as_str());
        for c in &status.conditions {
            let _ = writeln!(out, "           {} {}: {}", c.type_, c.status, c.message);
        }
    }
    let _ = writeln!(out, "Message:   {}", s.message);
    if !s.evidence.is_empty() {
        let _ = writeln!(out, "Evidence:");
        for e in &s.evidence {
            let _ = writeln!(out, "  - {e}");
        }
    }
    let _ = writeln!(out, "Why it is a 503:\n{}", wrap(explanation(s.code), 2));
    let _ = writeln!(
        out,
        "Planned change ({}, {}):",
        match s.action {
            crate::model::remediation::RemediationAction::Patch => "patch",
            crate::model::remediation::RemediationAction::Create => "create",
        },
        if s.safe_to_auto_apply {
            "safe to apply automatically"
        } else {
            "needs a reviewer"
        }
    );
    match &s.patch {
        Some(ops) => {
            for op in ops {
                let _ = writeln!(out, "  {op}");
            }
        }
        None => {
            let yaml = serde_saphyr::to_string(&s.resource).unwrap_or_default();
            for line in yaml.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

/// Wraps a paragraph at 100 columns with `indent` spaces.
fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && pad.len() + line.len() + 1 + word.len() > 100 {
            lines.push(format!("{pad}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_explanation_that_wraps() {
        for code in Code::ALL {
            let text = explain_code(code);
            assert!(text.starts_with(code.as_str()));
            assert!(text.lines().all(|l| l.len() <= 100), "{text}");
        }
    }
}
