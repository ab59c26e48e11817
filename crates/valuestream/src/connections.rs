//! Serving HTTP/1 connections within the limits: at most `--max-connections`
//! served at once (a few more are answered 503, then the listener waits), a
//! deadline for each request's headers (`--header-timeout`) and for idle
//! kept-alive connections (`--idle-timeout`), and graceful shutdown. The
//! body's deadline and the in-flight budget are the webhook route's
//! (`body.rs`): they need the request.

use crate::config::Limits;
use crate::http::ApiError;
use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Connections past `--max-connections` that are still answered 503 (and
/// closed); past those, new connections wait in the listen backlog.
const SPARE_CONNECTIONS: usize = 64;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets each connection finish the request it is on and returns
/// when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let sockets = limits.max_connections + SPARE_CONNECTIONS;
    let open = Arc::new(Semaphore::new(sockets));
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            _ = &mut shutdown => break,
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tracing::warn!(%error, "Could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match served.clone().try_acquire_owned() {
            Ok(slot) => {
                let (app, limits, stopping) = (app.clone(), limits.clone(), stopping.clone());
                tokio::spawn(async move {
                    serve_connection(stream, app, &limits, stopping).await;
                    drop((slot, socket));
                });
            }
            Err(_) => {
                tracing::info!(
                    max_connections = limits.max_connections,
                    "Connection refused: --max-connections reached."
                );
                let (header_timeout, max) = (limits.header_timeout, limits.max_connections);
                tokio::spawn(async move {
                    refuse_connection(stream, header_timeout, max).await;
                    drop(socket);
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = open.acquire_many(sockets as u32).await;
    Ok(())
}

/// Serves one connection, closing it when a deadline of [`Activity`] passes.
async fn serve_connection(stream: TcpStream, app: Router, limits: &Limits, mut stopping: watch::Receiver<bool>) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { stream, activity: activity.clone() });
    let requests = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let token = Arc::new(requests.begin());
        let request = request.map(|body| Tracked { body, _request: token.clone() });
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _request: token }))
        }
    });
    let mut builder = http1::Builder::new();
    // Ours below: hyper's would also count the idle time before a request.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let changed = activity.changed.notified();
        let deadline = activity.deadline(limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "A connection ended with an error.");
                }
                return;
            }
            _ = stopping.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = changed => {}
            _ = sleep_until(deadline) => {
                if activity.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = activity.phase_name(), "Closing a connection past its deadline.");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Answers a connection past `--max-connections`: 503 to its first request, then closed.
async fn refuse_connection(stream: TcpStream, header_timeout: Duration, max_connections: usize) {
    let service = service_fn(move |_: Request<Incoming>| async move {
        let message =
            format!("this server already serves {max_connections} connections (--max-connections); retry later");
        Ok::<_, Infallible>(ApiError::Busy(message).into_response())
    });
    let mut builder = http1::Builder::new();
    builder.keep_alive(false).header_read_timeout(None);
    let _ = tokio::time::timeout(header_timeout, builder.serve_connection(TokioIo::new(stream), service)).await;
}

/// Where a connection is, for its deadlines.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for the rest of a request's headers since then (connected, or
    /// the first byte of a next request arrived).
    Headers(Instant),
    /// This many requests are being read or answered: no connection deadline
    /// (the body has its own, in the route).
    Busy(usize),
    /// Kept alive with nothing to do since then.
    Idle(Instant),
}

/// What one connection is doing, shared by its reads, its requests and its watcher.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity { phase: Mutex::new(Phase::Headers(Instant::now())), changed: Notify::new() }
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *phase = change(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection, a next request has begun.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's headers were read; it is busy until the token is dropped.
    fn begin(self: &Arc<Self>) -> RequestToken {
        self.set(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        RequestToken(self.clone())
    }

    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Headers(since) => Some(since + limits.header_timeout),
            Phase::Busy(_) => None,
            Phase::Idle(since) => Some(since + limits.idle_timeout),
        }
    }

    fn phase_name(&self) -> &'static str {
        match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Headers(_) => "headers not complete by --header-timeout",
            Phase::Busy(_) => "busy",
            Phase::Idle(_) => "idle past --idle-timeout",
        }
    }
}

/// Held by a request's body and by its response's body: the request is done
/// when both are dropped (read or abandoned, and written).
struct RequestToken(Arc<Activity>);

impl Drop for RequestToken {
    fn drop(&mut self) {
        self.0.set(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// A body that keeps its request busy while it lives.
struct Tracked<B> {
    body: B,
    _request: Arc<RequestToken>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
