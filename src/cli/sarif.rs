//! `meshmedic analyze -o sarif`: SARIF 2.1.0 (the typed models of `serde-sarif`) for code
//! scanning: one rule per finding code, results at the file position of the field the fix
//! changes (else of the object), and the fix itself as a SARIF `fixes` entry when it is an edit
//! of the file (the same minimal edit `meshmedic fix` writes).

use serde_json::json;
use serde_sarif::sarif::{
    ArtifactChange, ArtifactContent, ArtifactLocation, Fix, Location as SarifLocation, Message,
    MultiformatMessageString, PhysicalLocation, Region, Replacement, ReportingConfiguration,
    ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif, Tool, ToolComponent,
};

use crate::analysis::{Code, Finding, Report, Severity};
use crate::error::{Error, Result};
use crate::positions::edit::{ObjectPatch, edit_text};
use crate::positions::{self, Location, Locator};
use crate::remediation::Action;
use crate::snapshot::Snapshot;

/// The README section every rule's help points to.
pub const HELP_ANCHOR: &str = "finding-codes";

/// Short and full description of a finding code, from the troubleshooting guide meshmedic
/// implements (the causes of HTTP 503 in an Istio / ASM mesh).
pub fn describe(code: Code) -> (&'static str, &'static str) {
    match code {
        Code::IdleTimeoutMismatch => (
            "The sidecar keeps idle connections to the app longer than the app does (503 UC).",
            "The sidecar proxy and the application have different idle connection timeouts (the proxy's default is 1 hour). When the proxy's is longer, the application closes an idle connection first while the proxy still considers it active; a request sent on it fails with HTTP 503, response flag UC. Set idleTimeout in a DestinationRule slightly shorter than the application's idle timeout.",
        ),
        Code::MissingResetRetry => (
            "The route's retry policy lacks `reset`: a reset upstream connection reaches the caller as 503.",
            "Istio's default retry policy covers connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes, but not reset, which covers upstream disconnects and connection resets. A reset connection (503 UC) is then not retried. Add reset (and optionally 503) to retryOn in the VirtualService; retries of non-idempotent requests (such as POST) can duplicate operations.",
        ),
        Code::ListenerChange503 => (
            "A metrics customisation (istio.stats EnvoyFilter / Telemetry) resets in-flight requests on every change.",
            "Metric customisation generates an Envoy filter that updates the istio.stats configuration. The update is delivered through the Listener Discovery Service (LDS) and modifies the Envoy listener: existing connections are terminated and requests in transit on them receive 503. The default retry policy does not retry on reset; add reset to the retryOn of the affected services' VirtualServices.",
        ),
        Code::SidecarLifecycle => (
            "The sidecar's lifecycle is not aligned with the app's: 503s while pods restart.",
            "The sidecar proxy container lifecycle is misconfigured: the proxy may shut down before the application finishes draining connections, or begin receiving traffic before the application is ready. Configure the proxy's lifecycle (proxy.istio.io/config: terminationDrainDuration, EXIT_ON_ZERO_ACTIVE_CONNECTIONS, holdApplicationUntilProxyStarts) to match the application's startup and shutdown.",
        ),
        Code::LocalhostBinding => (
            "The app listens on localhost: every request from another pod answers 503.",
            "The application binds to localhost (127.0.0.1) instead of 0.0.0.0. The sidecar proxy forwards traffic to the application's port on the pod IP, and the application rejects connections from non-loopback addresses. Bind the application to 0.0.0.0; meanwhile a Sidecar with ingress defaultEndpoint 127.0.0.1:<port> reaches it.",
        ),
        Code::MtlsProbeFailure => (
            "Kubelet probes go through the sidecar under STRICT mTLS and fail.",
            "With mutual TLS enabled, the sidecar proxy intercepts all traffic to the pod, including kubelet's health checks. Kubelet has no Istio-issued certificate, cannot complete the mTLS handshake, and every liveness and readiness probe fails (503). Exclude the health check port from interception, or let the sidecar rewrite the probes.",
        ),
    }
}

fn level(severity: Severity) -> ResultLevel {
    match severity {
        Severity::Error => ResultLevel::Error,
        Severity::Warning => ResultLevel::Warning,
        Severity::Info => ResultLevel::Note,
    }
}

fn help_uri() -> String {
    let base = option_env!("CARGO_PKG_REPOSITORY")
        .filter(|r| !r.is_empty())
        .map(|r| format!("{}/blob/main/README.md", r.trim_end_matches('/')))
        .unwrap_or_else(|| "https://meshmedic.io/README.md".to_string());
    format!("{base}#{HELP_ANCHOR}")
}

fn text(s: impl Into<String>) -> Message {
    Message::builder().text(s.into()).build()
}

fn rules() -> Vec<ReportingDescriptor> {
    Code::ALL
        .iter()
        .map(|&code| {
            let (short, full) = describe(code);
            ReportingDescriptor::builder()
                .id(code.as_str().to_string())
                .name(code.as_str().to_string())
                .short_description(
                    MultiformatMessageString::builder()
                        .text(short.to_string())
                        .build(),
                )
                .full_description(
                    MultiformatMessageString::builder()
                        .text(full.to_string())
                        .build(),
                )
                .help(
                    MultiformatMessageString::builder()
                        .text(format!("{full} See the README, section Finding codes."))
                        .build(),
                )
                .help_uri(help_uri())
                .default_configuration(
                    ReportingConfiguration::builder()
                        .level(json!(default_level(code)))
                        .build(),
                )
                .build()
        })
        .collect()
}

fn default_level(code: Code) -> &'static str {
    match code {
        Code::LocalhostBinding | Code::MtlsProbeFailure => "error",
        _ => "warning",
    }
}

fn region(line: usize, column: usize) -> Region {
    Region::builder()
        .start_line(line as i64)
        .start_column(column as i64)
        .build()
}

fn physical(file: &str, region: Region) -> PhysicalLocation {
    PhysicalLocation::builder()
        .artifact_location(ArtifactLocation::builder().uri(uri_of(file)).build())
        .region(region)
        .build()
}

/// A file path as a URI reference: relative paths stay relative (code scanning resolves them
/// against the repository root), absolute ones become `file://` URIs.
pub fn uri_of(file: &str) -> String {
    let path = file.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path);
    let escaped = path
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('#', "%23")
        .replace('?', "%3F");
    if escaped.starts_with('/') {
        format!("file://{escaped}")
    } else {
        escaped
    }
}

/// The SARIF log of a report. `locations` are the findings' (`positions::locate`).
pub fn render(
    snapshot: &Snapshot,
    report: &Report,
    locations: &[Option<Location>],
    locator: &mut Locator,
) -> Result<String> {
    let mut results = Vec::new();
    for (i, f) in report.findings.iter().enumerate() {
        let location = locations.get(i).cloned().flatten();
        results.push(result(snapshot, f, location.as_ref(), locator));
    }
    let driver = ToolComponent::builder()
        .name("meshmedic".to_string())
        .version(env!("CARGO_PKG_VERSION").to_string())
        .semantic_version(env!("CARGO_PKG_VERSION").to_string())
        .information_uri(help_uri())
        .rules(rules())
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .column_kind(json!("unicodeCodePoints"))
        .build();
    let log = Sarif::builder()
        .schema("https://json.schemastore.org/sarif-2.1.0.json".to_string())
        .version(json!("2.1.0"))
        .runs(vec![run])
        .build();
    serde_json::to_string_pretty(&log)
        .map(|s| s + "\n")
        .map_err(|e| Error::Other(e.to_string()))
}

fn result(
    snapshot: &Snapshot,
    f: &Finding,
    location: Option<&Location>,
    locator: &mut Locator,
) -> SarifResult {
    let rule_index = Code::ALL.iter().position(|c| *c == f.code).unwrap_or(0);
    let mut message = f.message.clone();
    for e in &f.evidence {
        message.push_str(&format!("\n- {e}"));
    }
    let fix_note = if f.remediation.safe_to_auto_apply {
        "safe to apply automatically (`meshmedic fix`)"
    } else {
        "a proposal for review (`meshmedic fix --include-unsafe CODE`)"
    };
    message.push_str(&format!(
        "\nFix: {} {} — {fix_note}.",
        match f.remediation.action {
            Action::Patch => "patch",
            Action::Create => "create",
        },
        f.remediation.target
    ));
    let mut builder_locations = Vec::new();
    let mut related = Vec::new();
    if let Some(l) = location {
        let (line, column) = l
            .field
            .as_ref()
            .map_or((l.line, l.column), |fl| (fl.line, fl.column));
        builder_locations.push(
            SarifLocation::builder()
                .physical_location(physical(&l.file, region(line, column)))
                .message(text(l.object.clone()))
                .build(),
        );
        if l.field.is_some() {
            related.push(
                SarifLocation::builder()
                    .id(0)
                    .physical_location(physical(&l.file, region(l.line, l.column)))
                    .message(text(format!("{} (the object)", l.object)))
                    .build(),
            );
        }
    }
    let fixes: Vec<Fix> = location
        .and_then(|l| file_fix(snapshot, f, l, locator))
        .into_iter()
        .collect();
    let mut r = SarifResult::builder()
        .rule_id(f.code.as_str().to_string())
        .rule_index(rule_index as i64)
        .level(level(f.severity))
        .message(text(message))
        .locations(builder_locations)
        .build();
    if !related.is_empty() {
        r.related_locations = Some(related);
    }
    if !fixes.is_empty() {
        r.fixes = Some(fixes);
    }
    r
}

/// The fix as replacements of whole lines of the target's file, when the fix is a patch of an
/// object read from that file.
fn file_fix(snapshot: &Snapshot, f: &Finding, l: &Location, locator: &mut Locator) -> Option<Fix> {
    let r = &f.remediation;
    if r.action != Action::Patch {
        return None;
    }
    let ops = Some(r.operations()).filter(|ops| !ops.is_empty())?;
    let source = positions::source_of(snapshot, &r.target)?.clone();
    if *source.file != *l.file {
        return None;
    }
    let old = locator.text(&source.file)?.to_string();
    let patch = ObjectPatch {
        source,
        object: r.target.to_string(),
        ops,
    };
    let new = edit_text(&l.file, &old, &[patch]).ok()?;
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut replacements = Vec::new();
    for op in diff.ops() {
        let (old_range, new_range) = (op.old_range(), op.new_range());
        if matches!(op, similar::DiffOp::Equal { .. }) {
            continue;
        }
        let start = old_range.start + 1;
        let deleted = Region::builder()
            .start_line(start as i64)
            .start_column(1)
            .end_line((old_range.end + 1) as i64)
            .end_column(1)
            .build();
        let inserted: String = new_range
            .filter_map(|i| diff.new_slice(i))
            .map(|s| s.to_string())
            .collect();
        let mut replacement = Replacement::builder().deleted_region(deleted).build();
        if !inserted.is_empty() {
            replacement.inserted_content = Some(ArtifactContent::builder().text(inserted).build());
        }
        replacements.push(replacement);
    }
    if replacements.is_empty() {
        return None;
    }
    Some(
        Fix::builder()
            .description(text(format!("meshmedic fix: {} on {}", f.code, r.target)))
            .artifact_changes(vec![
                ArtifactChange::builder()
                    .artifact_location(ArtifactLocation::builder().uri(uri_of(&l.file)).build())
                    .replacements(replacements)
                    .build(),
            ])
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri_of("./k8s/a b.yaml"), "k8s/a%20b.yaml");
        assert_eq!(uri_of("/repo/x#1.yaml"), "file:///repo/x%231.yaml");
    }

    #[test]
    fn every_code_has_a_rule_with_descriptions() {
        let rules = rules();
        assert_eq!(rules.len(), Code::ALL.len());
        for (rule, code) in rules.iter().zip(Code::ALL) {
            assert_eq!(rule.id, code.as_str());
            assert!(describe(code).1.len() > describe(code).0.len());
        }
    }
}
