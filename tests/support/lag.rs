//! A watch that lags: a tower layer for the operator's kube client that holds back every event a
//! watch of one resource (by its plural) delivers, by a delay that a test sets while it runs.
//! The apiserver is real and answers at once; only what the operator's stores see arrives late,
//! as it does from a loaded apiserver or a watch that lists again. Reads and writes pass as they
//! are.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The delay, shared between the test and the layer (zero: no lag).
#[derive(Clone)]
pub struct WatchLag {
    plural: &'static str,
    delay: Arc<Mutex<Duration>>,
}

impl WatchLag {
    /// Lags the watches of `plural` (e.g. `destinationrules`), from when [`WatchLag::set`] says.
    pub fn of(plural: &'static str) -> WatchLag {
        WatchLag {
            plural,
            delay: Arc::default(),
        }
    }

    /// Events that reach the client from now on are delivered `delay` after they arrived.
    pub fn set(&self, delay: Duration) {
        *self.delay.lock().expect("lag") = delay;
    }

    fn delay(&self) -> Duration {
        *self.delay.lock().expect("lag")
    }

    fn lags(&self, request: &Request<kube::client::Body>) -> bool {
        request.uri().path().ends_with(&format!("/{}", self.plural))
            && request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true"))
    }
}

impl<S> tower::Layer<S> for WatchLag {
    type Service = Lagging<S>;

    fn layer(&self, inner: S) -> Lagging<S> {
        Lagging {
            inner,
            lag: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Lagging<S> {
    inner: S,
    lag: WatchLag,
}

type Lagged = UnsyncBoxBody<Bytes, BoxError>;

impl<S, B> tower::Service<Request<kube::client::Body>> for Lagging<S>
where
    S: tower::Service<Request<kube::client::Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Lagged>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Lagged>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let lag = self.lag.lags(&request).then(|| self.lag.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| match lag {
                Some(lag) => held_back(body, lag),
                None => body.map_err(Into::into).boxed_unsync(),
            }))
        })
    }
}

/// The body, each frame delivered the lag after it arrived. A task reads the frames as they come
/// and stamps them, so frames that arrive together are late by the lag, not by a multiple of it.
fn held_back<B>(body: B, lag: WatchLag) -> Lagged
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut frames = std::pin::pin!(BodyStream::new(body.map_err(Into::into)));
        while let Some(frame) = frames.next().await {
            let due = Instant::now() + lag.delay();
            if tx.send((due, frame)).is_err() {
                break;
            }
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let (due, frame) = rx.recv().await?;
        tokio::time::sleep_until(due).await;
        Some((frame, rx))
    });
    StreamBody::new(frames).boxed_unsync()
}
