//! What each finding code means, in the words of the source document meshmedic is built on
//! (Alibaba Cloud's *Troubleshoot HTTP 503 status codes in ASM*), for `meshmedic explain` and the
//! SARIF rules.

use super::Code;

/// One line: the scenario, as the 503 guide names it.
pub fn title(code: Code) -> &'static str {
    match code {
        Code::IdleTimeoutMismatch => {
            "Intermittent 503 (UC) from an idle connection timeout mismatch"
        }
        Code::MissingResetRetry => {
            "503 (UC) on connection resets that the retry policy does not retry"
        }
        Code::ListenerChange503 => "Brief 503 spike after a metric customization (listener) change",
        Code::SidecarLifecycle => "503 during pod restarts from the sidecar proxy's lifecycle",
        Code::LocalhostBinding => "Persistent 503: the application listens on localhost",
        Code::MtlsProbeFailure => "Health checks fail (503) after enabling mTLS",
    }
}

/// The root cause and the cure, a short paragraph.
pub fn explanation(code: Code) -> &'static str {
    match code {
        Code::IdleTimeoutMismatch => {
            "The sidecar proxy keeps idle connections to the app longer than the app does (the proxy's default is 1 hour). The app closes an idle connection first; the proxy still thinks it is open, forwards the next request on it, and answers 503 with response flag UC. It shows up intermittently, more under load, with no configuration change. An ingress gateway in front of an app without a sidecar does the same with its own connections to the app. Cure: set the DestinationRule's idleTimeout slightly below the app's own idle timeout (too short only costs more connections); retries that open a new connection also help."
        }
        Code::MissingResetRetry => {
            "A connection reset upstream (the app or a listener closing it) reaches the caller as 503 UC, and only the retry condition `reset` retries it. Istio's default policy (connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes) does not include it. Cure: add `reset` (and `503`) to the route's retryOn, with attempts. Retrying non-idempotent requests (POST) can duplicate work: decide per route."
        }
        Code::ListenerChange503 => {
            "Changing custom metrics regenerates the istio.stats Envoy filter; the update arrives through LDS and rewrites the listener, which closes existing connections, so requests in flight get 503 from the client-side proxy. Cure: retry on `reset` for the affected routes, so the spike is absorbed."
        }
        Code::SidecarLifecycle => {
            "The proxy's lifecycle does not match the app's: it may stop before the app has drained its connections, or the app may receive traffic before the proxy is ready, so requests fail with 503 around every restart. Cure: align them (drain duration at least the app's shutdown time, exit on zero active connections, hold the app until the proxy starts), or run the proxy as a Kubernetes native sidecar."
        }
        Code::LocalhostBinding => {
            "The app binds 127.0.0.1 instead of 0.0.0.0. The sidecar forwards inbound traffic to the pod IP, which the app does not listen on, so every request from another pod answers 503. Cure: bind 0.0.0.0; until then a Sidecar whose ingress sends the port to 127.0.0.1 restores traffic."
        }
        Code::MtlsProbeFailure => {
            "With mTLS on, the sidecar intercepts all inbound traffic, kubelet's health checks included; kubelet has no Istio certificate, so the handshake fails and every probe fails (503). The kubelet sends a container's HTTP lifecycle hooks the same way, and they fail too: a failing postStart kills the container, a failing preStop skips the app's shutdown step. Cure: let kubelet reach the app directly: exclude the probe port from interception, or have the injector rewrite the probes (and, since Istio 1.25, the hooks)."
        }
    }
}
