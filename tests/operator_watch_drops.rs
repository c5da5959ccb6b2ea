//! Watch connections end routinely (the API server or the client closes long-running watches; in
//! the test control plane about a minute in). The operator must resume them without calling its
//! stores unsynced: before this test, every Remediation turned `Synced=False` a minute after
//! start and approvals stopped applying.

mod support;

use std::time::{Duration, Instant};

use support::control_plane;
use support::operator::{Replica, http_get, install_once, shop};

#[tokio::test]
async fn dropped_watch_connections_do_not_unsync_the_stores() {
    install_once().await;
    let cp = control_plane();
    let _ns = shop(&cp.admin(), "watch-drops", Some("propose")).await;
    let replica = Replica::start(cp.meshmedic_config(), "lease-watch-drops", "watch-drops-0");
    let port = replica.metrics_port;
    let start = Instant::now();
    let ready =
        || http_get(port, "/readyz").is_some_and(|(code, body)| code == 200 && body.trim() == "ok");
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never ready: {:?}",
            http_get(port, "/readyz")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Long enough for the watches to be closed and resumed at least once.
    let until = Instant::now() + Duration::from_secs(150);
    while Instant::now() < until {
        let answer = http_get(port, "/readyz");
        assert!(
            answer
                .as_ref()
                .is_some_and(|(code, body)| *code == 200 && body.trim() == "ok"),
            "{}s after start: {answer:?}",
            start.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    replica.stop();
}
