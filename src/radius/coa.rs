//! RFC 5176 Disconnect-Request: ask a NAS to end a session and report its answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use radius::core::avp::AVP;
use radius::core::code::Code;
use radius::core::packet::Packet;
use tokio::net::UdpSocket;

use super::clients::Client;
use super::dict;
use crate::store::sessions::SessionRow;

/// How long to wait for each try, and how many tries.
pub const COA_TIMEOUT: Duration = Duration::from_secs(2);
pub const COA_TRIES: u32 = 2;

const CODE_DISCONNECT_ACK: u8 = 41;
const CODE_DISCONNECT_NAK: u8 = 42;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ack,
    /// With the Error-Cause the NAS gave, if any.
    Nak(Option<u32>),
    Timeout,
}

/// The Disconnect-Request for a session: identified by Acct-Session-Id, User-Name, the NAS
/// address and, when known, Framed-IP-Address.
pub fn request(session: &SessionRow, nas: IpAddr, secret: &[u8], identifier: u8) -> Vec<u8> {
    let mut p = Packet::new_with_identifier(Code::DisconnectRequest, secret, identifier);
    if let Some(user) = session.username.as_deref().filter(|u| !u.is_empty()) {
        p.add(AVP::from_string(dict::USER_NAME, user));
    }
    p.add(AVP::from_string(
        dict::ACCT_SESSION_ID,
        &session.acctsessionid,
    ));
    match nas {
        IpAddr::V4(v4) => p.add(AVP::from_ipv4(dict::NAS_IP_ADDRESS, &v4)),
        IpAddr::V6(v6) => p.add(AVP::from_ipv6(dict::NAS_IPV6_ADDRESS, &v6)),
    }
    if let Some(ip) = session
        .framedipaddress
        .as_deref()
        .and_then(|s| s.parse().ok())
    {
        p.add(AVP::from_ipv4(dict::FRAMED_IP_ADDRESS, &ip));
    }
    p.encode()
        .expect("a Disconnect-Request of a few short attributes encodes")
}

/// Sends the Disconnect-Request to the client's CoA port and waits for an authentic answer.
pub async fn disconnect(
    client: &Client,
    nas: IpAddr,
    session: &SessionRow,
) -> std::io::Result<Answer> {
    let secret = client.secret.expose().as_bytes();
    let target = SocketAddr::new(nas, client.coa_port);
    let bind: SocketAddr = if nas.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal");
    let socket = UdpSocket::bind(bind).await?;
    let identifier = rand::random::<u8>();
    let bytes = request(session, nas, secret, identifier);
    let mut buf = [0u8; 4096];
    for _ in 0..COA_TRIES {
        socket.send_to(&bytes, target).await?;
        let deadline = tokio::time::Instant::now() + COA_TIMEOUT;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
            let Ok(Ok((n, from))) = received else { break };
            let response = &buf[..n];
            if from != target
                || n < 20
                || response[1] != identifier
                || !Packet::is_authentic_response(response, &bytes, secret)
            {
                continue;
            }
            return Ok(match response[0] {
                CODE_DISCONNECT_ACK => Answer::Ack,
                CODE_DISCONNECT_NAK => {
                    let cause = Packet::decode(response, secret).ok().and_then(|p| {
                        p.lookup(dict::ERROR_CAUSE)
                            .and_then(|a| a.encode_u32().ok())
                    });
                    Answer::Nak(cause)
                }
                _ => continue,
            });
        }
    }
    Ok(Answer::Timeout)
}
