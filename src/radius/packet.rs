//! Pure packet handling: decode a datagram, verify it against the client's secret, and encode
//! the Accounting-Response. No I/O and no clock: bytes in, values out.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use radius::core::code::Code;
use radius::core::packet::Packet;

use super::dict;
use crate::metrics::DropReason;

/// RFC 2865 §3: the smallest and largest valid packet.
pub const MIN_PACKET_LEN: usize = 20;
pub const MAX_PACKET_LEN: usize = 4096;
const AUTH_LEN: usize = 16;

pub const CODE_ACCOUNTING_REQUEST: u8 = 4;
pub const CODE_ACCOUNTING_RESPONSE: u8 = 5;
pub const CODE_STATUS_SERVER: u8 = 12;

/// What a verified datagram asks for.
#[derive(Debug)]
pub enum Request {
    /// An Accounting-Request whose Request Authenticator (and Message-Authenticator, if any)
    /// matched the client's secret.
    Accounting(Packet),
    /// An RFC 5997 Status-Server with a valid Message-Authenticator.
    StatusServer,
}

/// The header fields needed to answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub identifier: u8,
    pub authenticator: [u8; AUTH_LEN],
}

/// Reads the identifier and Request Authenticator of a datagram long enough to have them.
pub fn header(datagram: &[u8]) -> Option<Header> {
    if datagram.len() < MIN_PACKET_LEN {
        return None;
    }
    let mut authenticator = [0u8; AUTH_LEN];
    authenticator.copy_from_slice(&datagram[4..MIN_PACKET_LEN]);
    Some(Header {
        identifier: datagram[1],
        authenticator,
    })
}

/// Decodes and verifies one datagram: exactly `Length` bytes are used (trailing bytes are
/// padding, RFC 2865 §3), every attribute length is checked, and the authenticators are
/// checked against `secret`.
pub fn verify(datagram: &[u8], secret: &[u8]) -> Result<Request, DropReason> {
    if datagram.len() < MIN_PACKET_LEN {
        return Err(DropReason::Malformed);
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if !(MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&length) || length > datagram.len() {
        return Err(DropReason::Malformed);
    }
    let bytes = &datagram[..length];
    let code = bytes[0];
    if code != CODE_ACCOUNTING_REQUEST && code != CODE_STATUS_SERVER {
        return Err(DropReason::UnsupportedCode);
    }
    let packet = Packet::decode(bytes, secret).map_err(|_| DropReason::Malformed)?;
    let message_authenticators = packet.lookup_all(dict::MESSAGE_AUTHENTICATOR);
    if message_authenticators.len() > 1 {
        return Err(DropReason::Malformed);
    }
    let message_authenticator = message_authenticators.first().map(|avp| avp.encode_bytes());
    if let Some(ma) = &message_authenticator {
        if ma.len() != AUTH_LEN {
            return Err(DropReason::Malformed);
        }
    }

    if code == CODE_STATUS_SERVER {
        // RFC 5997 §3: a Status-Server without a valid Message-Authenticator is discarded.
        return match message_authenticator {
            Some(_) if message_authenticator_ok(bytes, secret, false) => Ok(Request::StatusServer),
            _ => Err(DropReason::BadMessageAuthenticator),
        };
    }

    if !request_authenticator_ok(bytes, secret) {
        return Err(DropReason::BadAuthenticator);
    }
    if message_authenticator.is_some() && !message_authenticator_ok(bytes, secret, true) {
        return Err(DropReason::BadMessageAuthenticator);
    }
    Ok(Request::Accounting(packet))
}

/// RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
fn request_authenticator_ok(bytes: &[u8], secret: &[u8]) -> bool {
    let mut md5 = Md5::new();
    md5.update(&bytes[..4]);
    md5.update([0u8; AUTH_LEN]);
    md5.update(&bytes[MIN_PACKET_LEN..]);
    md5.update(secret);
    constant_time_eq(&md5.finalize(), &bytes[4..MIN_PACKET_LEN])
}

/// RFC 3579 §3.2: HMAC-MD5 over the packet with the Message-Authenticator value zeroed; for
/// Accounting-Request the Request Authenticator field is zeroed too (it is computed over the
/// packet that already holds the Message-Authenticator).
fn message_authenticator_ok(bytes: &[u8], secret: &[u8], zero_authenticator: bool) -> bool {
    let mut copy = bytes.to_vec();
    if zero_authenticator {
        copy[4..MIN_PACKET_LEN].fill(0);
    }
    let mut expected = [0u8; AUTH_LEN];
    let mut offset = MIN_PACKET_LEN;
    while offset + 2 <= copy.len() {
        let typ = copy[offset];
        let len = usize::from(copy[offset + 1]);
        if len < 2 || offset + len > copy.len() {
            return false;
        }
        if typ == dict::MESSAGE_AUTHENTICATOR && len == 2 + AUTH_LEN {
            expected.copy_from_slice(&copy[offset + 2..offset + len]);
            copy[offset + 2..offset + len].fill(0);
        }
        offset += len;
    }
    let Ok(mut mac) = Hmac::<Md5>::new_from_slice(secret) else {
        return false;
    };
    mac.update(&copy);
    mac.verify_slice(&expected).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Encodes an Accounting-Response with no attributes (RFC 2866 §4.2): Response Authenticator =
/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
pub fn accounting_response(request: &Header, secret: &[u8]) -> [u8; MIN_PACKET_LEN] {
    let mut out = [0u8; MIN_PACKET_LEN];
    out[0] = CODE_ACCOUNTING_RESPONSE;
    out[1] = request.identifier;
    out[2..4].copy_from_slice(&(MIN_PACKET_LEN as u16).to_be_bytes());
    let mut md5 = Md5::new();
    md5.update(&out[..4]);
    md5.update(request.authenticator);
    md5.update(secret);
    out[4..].copy_from_slice(&md5.finalize());
    out
}

/// Builds a signed Accounting-Request: for tests, benchmarks and tools.
pub fn encode_accounting_request(packet: &Packet) -> Vec<u8> {
    debug_assert_eq!(packet.get_code(), Code::AccountingRequest);
    packet
        .encode()
        .expect("an Accounting-Request built from valid attributes encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use radius::core::rfc2865;
    use radius::core::rfc2866;

    const SECRET: &[u8] = b"testing123";

    fn start_packet() -> Vec<u8> {
        let mut p = Packet::new(Code::AccountingRequest, SECRET);
        rfc2865::add_user_name(&mut p, "alice");
        rfc2866::add_acct_status_type(&mut p, rfc2866::ACCT_STATUS_TYPE_START);
        rfc2866::add_acct_session_id(&mut p, "s1");
        encode_accounting_request(&p)
    }

    #[test]
    fn a_signed_accounting_request_verifies() {
        let bytes = start_packet();
        assert!(matches!(verify(&bytes, SECRET), Ok(Request::Accounting(_))));
    }

    #[test]
    fn a_wrong_secret_is_a_bad_authenticator() {
        let bytes = start_packet();
        assert!(matches!(
            verify(&bytes, b"other"),
            Err(DropReason::BadAuthenticator)
        ));
    }

    #[test]
    fn trailing_padding_is_ignored_and_short_datagrams_are_malformed() {
        let mut bytes = start_packet();
        bytes.extend_from_slice(&[0xAA; 7]);
        assert!(verify(&bytes, SECRET).is_ok());
        let bytes = start_packet();
        assert!(matches!(
            verify(&bytes[..bytes.len() - 1], SECRET),
            Err(DropReason::Malformed)
        ));
        assert!(matches!(
            verify(&bytes[..10], SECRET),
            Err(DropReason::Malformed)
        ));
    }

    #[test]
    fn a_bad_attribute_length_is_malformed() {
        let mut bytes = start_packet();
        bytes[MIN_PACKET_LEN + 1] = 1; // first attribute claims length 1
        assert!(matches!(verify(&bytes, SECRET), Err(DropReason::Malformed)));
    }

    #[test]
    fn other_codes_are_unsupported() {
        let mut bytes = start_packet();
        bytes[0] = 1; // Access-Request
        assert!(matches!(
            verify(&bytes, SECRET),
            Err(DropReason::UnsupportedCode)
        ));
    }

    #[test]
    fn response_authenticator_matches_the_radius_crate() {
        let bytes = start_packet();
        let h = header(&bytes).unwrap();
        let response = accounting_response(&h, SECRET);
        assert!(Packet::is_authentic_response(&response, &bytes, SECRET));
    }

    fn with_message_authenticator(code: Code) -> Vec<u8> {
        // Build with a zeroed Message-Authenticator, then fill it in as a NAS would.
        let mut p = Packet::new(code, SECRET);
        rfc2866::add_acct_status_type(&mut p, rfc2866::ACCT_STATUS_TYPE_START);
        p.add(radius::core::avp::AVP::from_bytes(
            dict::MESSAGE_AUTHENTICATOR,
            &[0u8; 16],
        ));
        let mut bytes = p.encode().unwrap();
        let zero_auth = code == Code::AccountingRequest;
        let mut copy = bytes.clone();
        if zero_auth {
            copy[4..20].fill(0);
        }
        let mut mac = Hmac::<Md5>::new_from_slice(SECRET).unwrap();
        mac.update(&copy);
        let ma = mac.finalize().into_bytes();
        let pos = bytes.len() - 16;
        bytes[pos..].copy_from_slice(&ma);
        if zero_auth {
            // Recompute the Request Authenticator over the final attributes.
            let mut md5 = Md5::new();
            md5.update(&bytes[..4]);
            md5.update([0u8; 16]);
            md5.update(&bytes[20..]);
            md5.update(SECRET);
            let auth = md5.finalize();
            bytes[4..20].copy_from_slice(&auth);
        }
        bytes
    }

    #[test]
    fn message_authenticator_is_checked() {
        let good = with_message_authenticator(Code::AccountingRequest);
        assert!(verify(&good, SECRET).is_ok());
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        // Re-sign the Request Authenticator so only the Message-Authenticator is wrong.
        let mut md5 = Md5::new();
        md5.update(&bad[..4]);
        md5.update([0u8; 16]);
        md5.update(&bad[20..]);
        md5.update(SECRET);
        let auth = md5.finalize();
        bad[4..20].copy_from_slice(&auth);
        assert!(matches!(
            verify(&bad, SECRET),
            Err(DropReason::BadMessageAuthenticator)
        ));
    }

    #[test]
    fn status_server_needs_a_message_authenticator() {
        let good = with_message_authenticator(Code::StatusServer);
        assert!(matches!(verify(&good, SECRET), Ok(Request::StatusServer)));
        let mut p = Packet::new(Code::StatusServer, SECRET);
        rfc2866::add_acct_status_type(&mut p, rfc2866::ACCT_STATUS_TYPE_START);
        let bare = p.encode().unwrap();
        assert!(matches!(
            verify(&bare, SECRET),
            Err(DropReason::BadMessageAuthenticator)
        ));
    }
}
