//! The HTTP connection loop, with the limits that keep slow and abusive clients from holding
//! the server: at most [`MAX_CONNECTIONS`] connections at a time, request headers within
//! `http.header_timeout` (also the longest an idle keep-alive connection is kept), a request
//! body within `http.body_timeout` of its headers (else 408). WebSocket upgrades leave this
//! loop once upgraded, so none of these limits applies to a live subscription; a WebSocket
//! must send its `connection_init` within `http.header_timeout` instead (see `graphql`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures_util::Stream;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::AppState;

/// Connections served at once. Past it the node stops accepting (new clients wait in the
/// kernel's backlog) until one closes, so a flood of connections costs a bounded number of
/// file descriptors, hyper connections and request buffers (up to 1 MiB each).
pub const MAX_CONNECTIONS: usize = 1024;

/// After an accept error other than a connection reset (e.g. out of file descriptors), wait
/// this long before accepting again instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// How long slow clients are given.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// From the moment hyper starts reading a request (a new connection, or the end of the
    /// previous answer on a keep-alive connection) until its headers are complete; past it the
    /// connection is closed. A slowloris client holds a connection this long at most.
    pub header_timeout: Duration,
    /// From the complete headers until the complete body; past it the request gets 408 and
    /// the connection is closed.
    pub body_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets the
/// connections finish what they are doing (hyper's graceful shutdown) and returns when all of
/// them are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // Never closed; if it were, there is nothing left to serve.
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Answers are small and written whole: do not hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                // A Router is always ready; `call` clones nothing but an Arc.
                let mut router = router.clone();
                async move {
                    Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|e| match e {}))
                }
            });
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts, resets and broken requests: the client's doing, not worth more.
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    // Every connection task holds a permit until it ends.
    let _ = permits.acquire_many(MAX_CONNECTIONS as u32).await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Gives a request body `http.body_timeout` from now to arrive whole. A handler that is still
/// reading it then sees the body fail; whatever it answers is replaced by 408 (in the
/// endpoint's error shape) and the connection is closed, as the rest of the body may still be
/// on its way. Requests without a body pass untouched.
pub async fn body_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let path = request.uri().path().to_owned();
    let request = request.map(|body| {
        Body::from_stream(DeadlineStream {
            inner: body.into_data_stream(),
            deadline: Box::pin(tokio::time::sleep(state.config.http.body_timeout)),
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    let mut response = super::error_response(
        &path,
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline has passed.
struct DeadlineStream {
    inner: BodyDataStream,
    deadline: Pin<Box<Sleep>>,
    /// Set when the deadline cut the body off.
    expired: Arc<AtomicBool>,
}

impl Stream for DeadlineStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item.map(|r| r.map_err(std::io::Error::other)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body timeout",
            ))));
        }
        Poll::Pending
    }
}
