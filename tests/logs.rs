//! `meshmedic logs`: fixtures per format, one test per mapping rule (positive and negative),
//! malformed input, gzip, and the CLI.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use meshmedic::logs::diagnose::{Confidence, Diagnosis, Timing};
use meshmedic::logs::format::{Format, ISTIO_TEXT_FORMAT};
use meshmedic::logs::report::Report;
use meshmedic::logs::stats::Limits;
use meshmedic::logs::{Analyzer, feed};

const CUSTOM: &str = "%START_TIME(%s)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% \"%REQ(:AUTHORITY)%\" %RESPONSE_CODE_DETAILS% %BYTES_SENT%";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name)
}

fn analyze_with(names: &[&str], format: &str, limits: Limits) -> Report {
    let mut a = Analyzer::new(Format::compile(format).expect("format"), limits);
    for (i, n) in names.iter().enumerate() {
        let f = std::fs::File::open(fixture(n)).expect("fixture");
        feed(&mut a, f, i).expect("read");
    }
    let inputs: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    Report::build(&a.stats, &inputs)
}

fn analyze(name: &str) -> Report {
    analyze_with(&[name], ISTIO_TEXT_FORMAT, Limits::default())
}

fn find<'a>(r: &'a Report, code: &str) -> Vec<&'a Diagnosis> {
    r.diagnoses.iter().filter(|d| d.code == code).collect()
}

fn codes(r: &Report) -> Vec<&'static str> {
    r.diagnoses.iter().map(|d| d.code).collect()
}

#[test]
fn idle_timeout_steady_uc_on_inbound() {
    let r = analyze("idle-timeout.log");
    assert_eq!(r.records, 300);
    assert_eq!(r.malformed.count, 0);
    let d = find(&r, "idle-timeout-mismatch");
    assert_eq!(d.len(), 1, "{:?}", codes(&r));
    assert_eq!(d[0].confidence, Confidence::High);
    assert_eq!(d[0].cluster, "inbound|9080||");
    assert_eq!(d[0].evidence.uc_503, 20);
    assert_eq!(d[0].evidence.timing, Timing::Steady);
    assert!(find(&r, "listener-change-503").is_empty());
    // Retries with `reset` would absorb these; on the server side we cannot see the client's
    // policy, so medium.
    let m = find(&r, "missing-reset-retry");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].confidence, Confidence::Medium);
}

#[test]
fn listener_change_uc_burst_shared_by_clusters_json() {
    let r = analyze("listener-change.jsonl");
    assert_eq!(r.json_records, 720);
    let d = find(&r, "listener-change-503");
    assert_eq!(d.len(), 2, "{:?}", codes(&r));
    assert!(
        d.iter()
            .all(|d| d.confidence == Confidence::High && d.evidence.timing == Timing::Bursty)
    );
    assert_eq!(d[0].evidence.windows.len(), 1);
    assert_eq!(d[0].evidence.windows[0].start, "2024-05-01T10:30:00Z");
    assert!(find(&r, "idle-timeout-mismatch").is_empty());
    let m = find(&r, "missing-reset-retry");
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|d| d.confidence == Confidence::High));
}

#[test]
fn listener_change_single_cluster_is_medium() {
    // Only the first cluster's lines: the burst is no longer shared.
    let text = std::fs::read_to_string(fixture("listener-change.jsonl")).expect("fixture");
    let only: String = text
        .lines()
        .filter(|l| l.contains("v1|reviews."))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut a = Analyzer::new(Format::istio_text(), Limits::default());
    feed(&mut a, only.as_bytes(), 0).expect("read");
    let r = Report::build(&a.stats, &["x".into()]);
    let d = find(&r, "listener-change-503");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].confidence, Confidence::Medium);
}

#[test]
fn sidecar_lifecycle_connection_failure_bursts_with_recovery() {
    let r = analyze("sidecar-lifecycle.log");
    let d = find(&r, "sidecar-lifecycle");
    assert_eq!(d.len(), 1, "{:?}", codes(&r));
    assert_eq!(d[0].confidence, Confidence::High);
    assert_eq!(d[0].evidence.windows.len(), 2);
    assert_eq!(d[0].name.service.as_deref(), Some("details"));
    assert!(find(&r, "localhost-binding").is_empty());
    assert!(find(&r, "idle-timeout-mismatch").is_empty());
}

#[test]
fn localhost_binding_persistent_refused_no_success() {
    let r = analyze("localhost-binding.log");
    let d = find(&r, "localhost-binding");
    assert_eq!(d.len(), 1, "{:?}", codes(&r));
    assert_eq!(d[0].confidence, Confidence::High);
    assert_eq!(d[0].evidence.refused_503, 120);
    assert_eq!(d[0].evidence.answered, 0);
    assert!(find(&r, "sidecar-lifecycle").is_empty());
}

#[test]
fn steady_connection_failures_match_neither_lifecycle_nor_localhost() {
    let r = analyze("steady-connection-failures.log");
    assert!(r.diagnoses.is_empty(), "{:?}", codes(&r));
}

#[test]
fn healthy_traffic_gives_no_diagnosis_and_notes_nr() {
    let r = analyze("healthy.log");
    assert!(r.diagnoses.is_empty(), "{:?}", codes(&r));
    assert!(r.cannot_tell.iter().any(|n| n.contains("NR")));
    assert_eq!(r.status[0].code, 200);
}

#[test]
fn no_healthy_upstream_hints_probe_failure_at_low_confidence() {
    let r = analyze("no-healthy-upstream.log");
    let d = find(&r, "mtls-probe-failure");
    assert_eq!(d.len(), 1, "{:?}", codes(&r));
    assert_eq!(d[0].confidence, Confidence::Low);
    // UH failures are connection failures, but with no successes at all and not refused:
    // localhost-binding at medium at most.
    assert!(
        find(&r, "localhost-binding")
            .iter()
            .all(|d| d.confidence == Confidence::Medium)
    );
}

#[test]
fn too_few_uc_is_no_diagnosis_and_short_log_is_low_confidence() {
    let mut a = Analyzer::new(Format::istio_text(), Limits::default());
    let text = std::fs::read_to_string(fixture("idle-timeout.log")).expect("fixture");
    // The first 2 UC lines only.
    let mut seen = 0;
    let few: String = text
        .lines()
        .filter(|l| {
            let uc = l.contains(" UC ");
            seen += uc as usize;
            !uc || seen <= 2
        })
        .map(|l| format!("{l}\n"))
        .collect();
    feed(&mut a, few.as_bytes(), 0).expect("read");
    assert!(Report::build(&a.stats, &["x".into()]).diagnoses.is_empty());

    // One minute of UC: timing unknown, so low confidence.
    let mut b = Analyzer::new(Format::istio_text(), Limits::default());
    let minute: String = text
        .lines()
        .take(5)
        .map(|l| {
            l.replace(
                " 200 - via_upstream",
                " 503 UC upstream_reset_before_response_started{connection_termination}",
            ) + "\n"
        })
        .collect();
    feed(&mut b, minute.as_bytes(), 0).expect("read");
    let r = Report::build(&b.stats, &["x".into()]);
    let d = find(&r, "idle-timeout-mismatch");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].confidence, d[0].evidence.timing),
        (Confidence::Low, Timing::Unknown)
    );
}

#[test]
fn custom_format_string() {
    let r = analyze_with(&["custom-format.log"], CUSTOM, Limits::default());
    assert_eq!(r.records, 160);
    assert_eq!(r.malformed.count, 0);
    let d = find(&r, "idle-timeout-mismatch");
    assert_eq!(d.len(), 1, "{:?}", codes(&r));
    assert_eq!(d[0].cluster, "inbound|8080||");
    assert_eq!(r.authorities[0].key, "cart.shop:8080");
    // Istio's default format does not match these lines.
    let wrong = analyze("custom-format.log");
    assert_eq!(wrong.malformed.count, 160);
    assert_eq!(wrong.malformed.first.len(), 5);
    assert_eq!(wrong.malformed.first[0], "custom-format.log:1");
}

#[test]
fn mixed_input_malformed_proxy_lines_timestamps_crlf() {
    let r = analyze("mixed.log");
    assert_eq!(r.lines, 12);
    assert_eq!(r.blank_lines, 1);
    assert_eq!(r.proxy_log_lines, 2);
    assert_eq!(r.records, 6);
    assert_eq!(r.json_records, 1);
    assert_eq!(r.malformed.count, 3);
    assert_eq!(
        r.malformed.first,
        vec!["mixed.log:5", "mixed.log:9", "mixed.log:10"]
    );
    let flag = |f: &str| r.flags.iter().find(|x| x.flag == f).map_or(0, |x| x.count);
    assert_eq!(
        (flag("UF"), flag("URX"), flag("UC"), flag("NR"), flag("UT")),
        (1, 1, 1, 1, 1)
    );
    assert!(
        r.cannot_tell
            .iter()
            .any(|n| n.contains("filter_chain_not_found"))
    );
    assert!(
        r.status_flags
            .iter()
            .any(|s| s.code == 503 && s.flags == "UF,URX")
    );
    assert!(
        r.methods
            .iter()
            .any(|m| m.key == "POST" && m.status_503 == 1)
    );
}

#[test]
fn gzip_input_by_magic_bytes_and_multiple_members() {
    let plain = std::fs::read(fixture("idle-timeout.log")).expect("fixture");
    let (first, second) = plain.split_at(plain.len() / 2);
    let mut gz = Vec::new();
    for part in [first, second] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).expect("gzip");
        gz.extend(e.finish().expect("gzip"));
    }
    // A name without .gz: detection is by content.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    std::fs::write(&path, &gz).expect("write");
    let mut a = Analyzer::new(Format::istio_text(), Limits::default());
    feed(&mut a, std::fs::File::open(&path).expect("open"), 0).expect("read");
    let r = Report::build(&a.stats, &["access.log".into()]);
    assert_eq!(r.records, 300);
    assert_eq!(find(&r, "idle-timeout-mismatch").len(), 1);
}

#[test]
fn key_caps_bound_memory_and_keep_totals() {
    let limits = Limits {
        max_keys: 1,
        ..Limits::default()
    };
    let r = analyze_with(&["listener-change.jsonl"], ISTIO_TEXT_FORMAT, limits);
    assert_eq!(r.overflow.clusters, 360);
    let total: u64 = r.clusters.iter().map(|c| c.requests).sum();
    assert_eq!(total, 720);
    assert!(r.clusters.iter().any(|c| c.cluster == "(other)"));
}

#[test]
fn long_logs_widen_buckets() {
    let limits = Limits {
        max_buckets: 16,
        ..Limits::default()
    };
    let r = analyze_with(&["idle-timeout.log"], ISTIO_TEXT_FORMAT, limits);
    assert!(r.time.bucket_seconds >= 240, "{}", r.time.bucket_seconds);
    assert!(r.timeline.len() <= 16);
    assert_eq!(
        r.timeline.iter().map(|b| b.requests as u64).sum::<u64>(),
        300
    );
}

#[test]
fn json_output_is_deterministic_across_inputs_order() {
    let a = analyze_with(
        &["idle-timeout.log", "sidecar-lifecycle.log"],
        ISTIO_TEXT_FORMAT,
        Limits::default(),
    );
    let b = analyze_with(
        &["idle-timeout.log", "sidecar-lifecycle.log"],
        ISTIO_TEXT_FORMAT,
        Limits::default(),
    );
    assert_eq!(a.to_json(), b.to_json());
    let v: serde_json::Value = serde_json::from_str(&a.to_json()).expect("json");
    for key in [
        "lines",
        "records",
        "malformed",
        "status",
        "flags",
        "clusters",
        "diagnoses",
        "cannot_tell",
        "timeline",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let codes: Vec<&str> = v["diagnoses"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert!(codes.contains(&"sidecar-lifecycle") && codes.contains(&"idle-timeout-mismatch"));
}

// ---- CLI ----

fn meshmedic(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshmedic"));
    cmd.arg("logs").args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(mut si) = child.stdin.take() {
        si.write_all(stdin.unwrap_or_default()).expect("stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_table_and_json() {
    let f = fixture("localhost-binding.log");
    let (code, out, _) = meshmedic(&[f.to_str().expect("utf8")], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("localhost-binding [High] inbound|8080||"),
        "{out}"
    );
    assert!(out.contains("CANNOT TELL"));
    let (code, out, _) = meshmedic(&["-o", "json", f.to_str().expect("utf8")], None);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["diagnoses"][0]["code"], "localhost-binding");
    assert_eq!(v["diagnoses"][0]["direction"], "inbound");
    assert_eq!(v["diagnoses"][0]["port"], 8080);
}

#[test]
fn cli_stdin_dash_and_custom_format() {
    let data = std::fs::read(fixture("custom-format.log")).expect("fixture");
    let (code, out, _) = meshmedic(&["-o", "json", "--format", CUSTOM, "-"], Some(&data));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["records"], 160);
    assert_eq!(v["inputs"][0], "-");
}

#[test]
fn cli_unreadable_file_exits_2_naming_it() {
    let (code, _, err) = meshmedic(&["/nonexistent/access.log"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/access.log"), "{err}");
}

#[test]
fn cli_bad_format_exits_2() {
    let (code, _, err) = meshmedic(&["--format", "%BYTES_SENT%", "-"], Some(b""));
    assert_eq!(code, 2);
    assert!(err.contains("--format"), "{err}");
}

#[test]
fn parallel_matches_sequential_across_block_edges() {
    let names = [
        "idle-timeout.log",
        "mixed.log",
        "listener-change.jsonl",
        "custom-format.log",
        "sidecar-lifecycle.log",
    ];
    let run = |threads: usize, block: usize| {
        let mut a = Analyzer::new(Format::istio_text(), Limits::default())
            .with_threads(threads)
            .with_block_size(block);
        for (i, n) in names.iter().enumerate() {
            feed(&mut a, std::fs::File::open(fixture(n)).expect("fixture"), i).expect("read");
        }
        Report::build(
            &a.stats,
            &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .to_json()
    };
    let reference = run(1, 1 << 20);
    for (threads, block) in [(2, 64), (3, 1000), (2, 4096), (1, 100)] {
        assert_eq!(
            run(threads, block),
            reference,
            "threads {threads}, block {block}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&reference).expect("json");
    // custom-format.log lines are malformed in the default format: numbered within their file.
    assert_eq!(v["malformed"]["first"][0], "mixed.log:5");
}

#[test]
fn json_shaped_custom_format_is_matched_as_a_format() {
    let fmt = r#"{"code":"%RESPONSE_CODE%","flags":"%RESPONSE_FLAGS%","cluster":"%UPSTREAM_CLUSTER%","at":"%START_TIME%"}"#;
    let mut a = Analyzer::new(Format::compile(fmt).expect("format"), Limits::default());
    let lines = "{\"code\":\"503\",\"flags\":\"UC\",\"cluster\":\"inbound|80||\",\"at\":\"2024-05-01T10:00:00Z\"}\n\
                 {\"start_time\":\"2024-05-01T10:00:01Z\",\"response_code\":200,\"upstream_cluster\":\"inbound|80||\"}\n";
    feed(&mut a, lines.as_bytes(), 0).expect("read");
    let r = Report::build(&a.stats, &["x".into()]);
    assert_eq!((r.records, r.json_records, r.malformed.count), (2, 1, 0));
    assert!(
        r.status_flags
            .iter()
            .any(|s| s.code == 503 && s.flags == "UC")
    );
}

#[test]
fn retried_uc_lowers_missing_reset_retry_to_medium() {
    // The caller did retry (URX on the UC lines): a reset retry exists, it just ran out.
    let text = std::fs::read_to_string(fixture("listener-change.jsonl")).expect("fixture");
    let retried = text.replace(r#""response_flags":"UC""#, r#""response_flags":"UC,URX""#);
    let mut a = Analyzer::new(Format::istio_text(), Limits::default());
    feed(&mut a, retried.as_bytes(), 0).expect("read");
    let r = Report::build(&a.stats, &["x".into()]);
    let m = find(&r, "missing-reset-retry");
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|d| d.confidence == Confidence::Medium));
}
