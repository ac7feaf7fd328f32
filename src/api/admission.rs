//! Admission of HTTP requests. At most `http.max_concurrent_requests` requests are processed
//! at once; the others wait for a slot in arrival order, and one that waited
//! [`ADMISSION_WAIT`] gets 503 with `Retry-After`. A request's body is read whole (within the
//! 1 MiB limit and `http.body_timeout`) before it asks for a slot, so a slow client never
//! holds one. `/healthz` and `/metrics` are never held back: monitoring must see a node that
//! is busy, not time out on it.
//!
//! Why: every request processed at once costs CPU in this process and, behind it, in the
//! database, on the same cores as the writer. Without a bound, hundreds of clients in a tight
//! loop take nearly all of them and accounting answers slow down (README, "HTTP under load").

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::{error_response, MAX_BODY_BYTES};
use crate::metrics::Metrics;

/// How long a request may wait for a slot before it is answered 503.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// Paths served without a slot.
const EXEMPT: [&str; 2] = ["/healthz", "/metrics"];

/// The slots of one node.
#[derive(Debug)]
pub struct Admission {
    slots: Semaphore,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// `slots` requests at once (at least one); a request waits at most `wait` for one.
    pub fn new(slots: usize, wait: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            slots: Semaphore::new(slots.max(1)),
            wait,
            metrics,
        })
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn admit(
    State(admission): State<Arc<Admission>>,
    request: Request,
    next: Next,
) -> Response {
    if EXEMPT.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let request = match read_body(request).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let waiting = admission.metrics.http_request_waiting();
    let slot = tokio::time::timeout(admission.wait, admission.slots.acquire()).await;
    drop(waiting);
    let Ok(Ok(_slot)) = slot else {
        // Timed out (the semaphore is never closed).
        admission.metrics.http_request_shed();
        let mut response = error_response(
            request.uri().path(),
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let _in_progress = admission.metrics.http_request_in_progress();
    next.run(request).await
}

/// The request with its body read whole, or the answer to give instead: 413 past
/// [`MAX_BODY_BYTES`], 400 when the body cannot be read (the client went away, broken chunked
/// coding). A body cut off by `http.body_timeout` also ends here; `serve::body_deadline`
/// turns that answer into its 408.
async fn read_body(request: Request) -> Result<Request, Response> {
    use axum::body::HttpBody;
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(error_response(
                &path,
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ));
        };
        if buffer.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(error_response(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                super::OVERSIZE_MESSAGE,
            ));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Request::from_parts(parts, Body::from(Bytes::from(buffer))))
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::{get, post};
    use axum::Router;
    use tokio::sync::Notify;
    use tower_service::Service;

    /// A router whose `/hold` answers only once `release` is notified.
    fn app(admission: Arc<Admission>, release: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/hold",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "released"
                    }
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/graphql", post(|| async { "graphql" }))
            .layer(axum::middleware::from_fn_with_state(admission, admit))
    }

    async fn send(router: &Router, request: Request) -> Response {
        // A Router is always ready.
        match router.clone().call(request).await {
            Ok(response) => response,
            Err(e) => match e {},
        }
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A router with one slot, taken by a `/hold` request until `release` is notified.
    struct Held {
        metrics: Arc<Metrics>,
        router: Router,
        release: Arc<Notify>,
        held: tokio::task::JoinHandle<Response>,
    }

    async fn hold_the_only_slot(wait: Duration) -> Held {
        let metrics = Arc::new(Metrics::new());
        let admission = Admission::new(1, wait, metrics.clone());
        let release = Arc::new(Notify::new());
        let router = app(admission, release.clone());
        let held = tokio::spawn({
            let router = router.clone();
            async move { send(&router, Request::get("/hold").body(Body::empty()).unwrap()).await }
        });
        while metrics.http_requests_in_progress() == 0 {
            tokio::task::yield_now().await;
        }
        Held {
            metrics,
            router,
            release,
            held,
        }
    }

    #[tokio::test]
    async fn a_request_past_the_slots_waits_then_gets_503_and_health_is_never_held() {
        let Held {
            metrics,
            router,
            release,
            held,
        } = hold_the_only_slot(Duration::from_millis(200)).await;

        let health = send(
            &router,
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(health.status(), StatusCode::OK);

        let shed = send(
            &router,
            Request::post("/graphql").body(Body::from("{}")).unwrap(),
        )
        .await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_str(&body_text(shed).await).unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "SERVICE_UNAVAILABLE"
        );
        assert_eq!(metrics.http_requests_shed(), 1);

        release.notify_one();
        let held = held.await.unwrap();
        assert_eq!(held.status(), StatusCode::OK);
        assert_eq!(body_text(held).await, "released");
        assert_eq!(metrics.http_requests_in_progress(), 0);
        assert_eq!(metrics.http_requests_waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_runs_when_a_slot_frees() {
        let Held {
            metrics,
            router,
            release,
            held,
        } = hold_the_only_slot(Duration::from_secs(30)).await;
        let waiting = tokio::spawn({
            let router = router.clone();
            async move {
                send(
                    &router,
                    Request::post("/echo").body(Body::from("payload")).unwrap(),
                )
                .await
            }
        });
        while metrics.http_requests_waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());

        release.notify_one();
        assert_eq!(held.await.unwrap().status(), StatusCode::OK);
        let echoed = waiting.await.unwrap();
        assert_eq!(echoed.status(), StatusCode::OK);
        assert_eq!(body_text(echoed).await, "payload");
        assert_eq!(metrics.http_requests_shed(), 0);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_before_it_takes_a_slot() {
        let metrics = Arc::new(Metrics::new());
        let admission = Admission::new(1, Duration::from_secs(30), metrics.clone());
        let router = app(admission, Arc::new(Notify::new()));
        // A stream, so that no Content-Length announces the size.
        let chunks = futures_util::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))),
        );
        let response = send(
            &router,
            Request::post("/echo")
                .body(Body::from_stream(chunks))
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(body["errorCode"], 413);
        assert_eq!(metrics.http_requests_in_progress(), 0);
    }
}
