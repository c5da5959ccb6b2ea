//! Prometheus evidence: parsers on fixtures, and the fetch against a local HTTP server that
//! serves the Prometheus API and a sidecar's text exposition.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use meshmedic::logs::prometheus::{
    FlagCount, PromError, fetch, parse_exposition, parse_query_response, query_prometheus,
    scrape_sidecar,
};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name);
    std::fs::read_to_string(p).expect("fixture")
}

fn fc(svc: &str, flags: &str, reporter: &str, value: f64) -> FlagCount {
    FlagCount {
        destination_service: svc.into(),
        response_flags: flags.into(),
        reporter: reporter.into(),
        value,
    }
}

#[test]
fn parses_instant_query_vector() {
    let v = parse_query_response(fixture("prometheus-query.json").as_bytes()).expect("parses");
    assert_eq!(v.len(), 4);
    assert_eq!(
        v[0],
        fc("web.prod.svc.cluster.local", "UF", "destination", 1200.0)
    );
    assert_eq!(
        v[1],
        fc("ratings.prod.svc.cluster.local", "UC", "destination", 41.5)
    );
}

#[test]
fn query_errors_are_values() {
    let err = parse_query_response(
        br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
    );
    assert!(matches!(err, Err(PromError::Api(t, m)) if t == "bad_data" && m.contains("char 5")));
    assert!(matches!(
        parse_query_response(b"<html>"),
        Err(PromError::Parse(_))
    ));
    let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    assert!(matches!(
        parse_query_response(matrix),
        Err(PromError::Parse(_))
    ));
    let bad_value = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#;
    assert!(matches!(
        parse_query_response(bad_value),
        Err(PromError::Parse(_))
    ));
}

#[test]
fn parses_text_exposition_summing_other_labels() {
    let (v, bad) = parse_exposition(&fixture("prometheus-exposition.txt"), "503");
    assert_eq!(bad, 1, "the truncated last sample");
    assert_eq!(
        v,
        vec![
            fc("ratings.prod.svc.cluster.local", "UC", "destination", 22.0),
            fc("mongodb.prod.svc.cluster.local", "UF,URX", "source", 3.0),
        ]
    );
    let (ok, _) = parse_exposition(&fixture("prometheus-exposition.txt"), "200");
    assert_eq!(
        ok,
        vec![fc(
            "ratings.prod.svc.cluster.local",
            "-",
            "destination",
            10234.0
        )]
    );
}

async fn serve() -> String {
    let query = fixture("prometheus-query.json");
    let text = fixture("prometheus-exposition.txt");
    let app = Router::new()
        .route(
            "/api/v1/query",
            get(move |uri: Uri| {
                let query = query.clone();
                async move {
                    // The PromQL must arrive percent-encoded and intact.
                    let q = uri.query().unwrap_or("");
                    if q.contains("istio_requests_total%7Bresponse_code%3D%22503%22%7D")
                        && q.contains("%5B1h%5D")
                    {
                        (StatusCode::OK, query)
                    } else {
                        (StatusCode::BAD_REQUEST, format!("unexpected query {q}"))
                    }
                }
            }),
        )
        .route(
            "/stats/prometheus",
            get(move || async move { text.clone() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn fetches_both_formats_from_a_local_server() {
    let base = serve().await;
    let t = Duration::from_secs(5);
    let q = query_prometheus(&base, "1h", t).await.expect("query");
    assert_eq!(q.len(), 4);
    let s = scrape_sidecar(&format!("{base}/stats/prometheus"), t)
        .await
        .expect("scrape");
    assert_eq!(
        s[0],
        fc("ratings.prod.svc.cluster.local", "UC", "destination", 22.0)
    );
}

#[tokio::test]
async fn fetch_failures_are_values() {
    let base = serve().await;
    let slow = fetch(&format!("{base}/slow"), Duration::from_millis(200)).await;
    assert!(matches!(slow, Err(PromError::Timeout(..))), "{slow:?}");
    let fail = fetch(&format!("{base}/fail"), Duration::from_secs(5)).await;
    assert!(
        matches!(fail, Err(PromError::Status(_, 500, ref b)) if b == "boom"),
        "{fail:?}"
    );
    // A port nobody listens on: bind, learn the port, close.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let refused = fetch(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).await;
    assert!(matches!(refused, Err(PromError::Http(..))), "{refused:?}");
    assert!(matches!(
        fetch("https://example.invalid/", Duration::from_secs(1)).await,
        Err(PromError::UnsupportedScheme(_))
    ));
    assert!(matches!(
        fetch("not a url", Duration::from_secs(1)).await,
        Err(PromError::InvalidUrl(..))
    ));
}
