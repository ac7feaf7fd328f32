//! The UDP receive loop, and the only place that sends an Accounting-Response.
//!
//! The path of a packet: socket → client lookup → decode and verify → duplicate check →
//! writer queue (bounded) → one transaction per batch → commit → [`Reply::send`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::accounting::{self, Decoded, Event, SessionKind};
use super::clients::Clients;
use super::dedup::{DedupCache, Key, Seen};
use super::dict::{self, Enumerated};
use super::packet::{self, Request, MAX_PACKET_LEN};
use crate::config::normalize_ip;
use crate::metrics::{DropReason, Metrics};
use crate::store::writer::{Job, JobSender};

/// Everything a receive loop needs; one per bound socket.
pub struct Listener {
    /// The bound socket (shared with the replies it creates).
    pub socket: Arc<UdpSocket>,
    /// Allowed clients and their secrets.
    pub clients: Clients,
    /// Retransmit detection, shared by all sockets.
    pub dedup: Arc<DedupCache>,
    /// The writer's queue.
    pub jobs: JobSender,
    pub metrics: Arc<Metrics>,
    /// Woken when an unknown client sends, so the `nas` table is re-read promptly.
    pub unknown_client: Arc<Notify>,
}

/// How to answer one request once its event is committed.
#[derive(Debug)]
pub struct Reply {
    socket: Arc<UdpSocket>,
    key: Key,
    secret: Vec<u8>,
    dedup: Arc<DedupCache>,
}

impl Reply {
    /// Sends the Accounting-Response (the event is committed) and remembers it for
    /// retransmits.
    pub fn send(self, metrics: &Metrics, event: &Event) {
        metrics.packet(status_label(event), "acked");
        self.respond();
    }

    fn respond(self) {
        let response = packet::accounting_response(&self.key.header, &self.secret);
        self.dedup.answered(&self.key, response);
        // A full socket buffer loses this answer; the NAS retransmits and gets it from the cache.
        if let Err(e) = self.socket.try_send_to(&response, self.key.peer) {
            tracing::debug!(peer = %self.key.peer, error = %e, "could not send Accounting-Response");
        }
    }

    /// The event was not stored: no answer, and a retransmit may try again.
    pub fn drop_unanswered(self, metrics: &Metrics, reason: DropReason) {
        self.dedup.forget(&self.key);
        metrics.drop_packet(reason, self.key.peer);
    }
}

fn status_label(event: &Event) -> &'static str {
    match event {
        Event::Session(s) => match s.kind {
            SessionKind::Start => "Start",
            SessionKind::Interim => "Interim-Update",
            SessionKind::Stop => "Stop",
        },
        Event::NasReboot(_) => "Accounting-On/Off",
    }
}

impl Listener {
    /// Receives until `shutdown` is cancelled. Dropping `self` at the end releases this
    /// listener's handle on the writer queue, which lets the writer drain and stop.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut buf = vec![0u8; MAX_PACKET_LEN];
        loop {
            let (len, peer) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP errors surface here on some systems; they concern no request.
                        tracing::debug!(error = %e, "UDP receive error");
                        continue;
                    }
                },
            };
            self.handle(&buf[..len], peer);
        }
    }

    fn handle(&self, datagram: &[u8], peer: SocketAddr) {
        let clients = self.clients.current();
        let Some(client) = clients.find(peer.ip()) else {
            self.unknown_client.notify_one();
            return self.metrics.drop_packet(DropReason::UnknownClient, peer);
        };
        let secret = client.secret.expose().as_bytes();
        let request = match packet::verify(datagram, secret) {
            Ok(r) => r,
            Err(reason) => return self.metrics.drop_packet(reason, peer),
        };
        let Some(header) = packet::header(datagram) else {
            return self.metrics.drop_packet(DropReason::Malformed, peer);
        };
        let packet = match request {
            Request::StatusServer => {
                // RFC 5997 §3: answer on the accounting port with an Accounting-Response.
                let response = packet::accounting_response(&header, secret);
                // Counted before it is sent: whoever gets the answer finds it counted.
                self.metrics.packet("Status-Server", "acked");
                if let Err(e) = self.socket.try_send_to(&response, peer) {
                    tracing::debug!(%peer, error = %e, "could not answer Status-Server");
                }
                return;
            }
            Request::Accounting(p) => p,
        };

        let key = Key { peer, header };
        match self.dedup.check(key, Instant::now()) {
            Seen::New => {}
            Seen::InFlight => {
                return self
                    .metrics
                    .drop_packet(DropReason::DuplicateInFlight, peer)
            }
            Seen::Full => return self.metrics.drop_packet(DropReason::QueueFull, peer),
            Seen::Answered(response) => {
                self.metrics.retransmit_answered();
                if let Err(e) = self.socket.try_send_to(&response, peer) {
                    tracing::debug!(%peer, error = %e, "could not resend Accounting-Response");
                }
                return;
            }
        }
        let reply = Reply {
            socket: self.socket.clone(),
            key,
            secret: secret.to_vec(),
            dedup: self.dedup.clone(),
        };

        let received = chrono::Utc::now().timestamp();
        match accounting::decode(&packet, normalize_ip(peer.ip()), received) {
            Err(e) => {
                tracing::debug!(%peer, error = %e, "unusable Accounting-Request");
                reply.drop_unanswered(&self.metrics, DropReason::Malformed);
            }
            Ok(Decoded::Ignored(status_type)) => {
                // Nothing to store for this status type: acknowledge it so the NAS moves on.
                self.metrics.packet(
                    &dict::name(Enumerated::AcctStatusType, status_type),
                    "ignored",
                );
                reply.respond();
            }
            Ok(Decoded::Event(event)) => match self.jobs.try_send(Job { event, reply }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(job)) => job
                    .reply
                    .drop_unanswered(&self.metrics, DropReason::QueueFull),
                Err(mpsc::error::TrySendError::Closed(job)) => job
                    .reply
                    .drop_unanswered(&self.metrics, DropReason::ShuttingDown),
            },
        }
    }
}
