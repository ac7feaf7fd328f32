//! Datagrams for fuzzing the RADIUS receive path, and the model that predicts what radacctd
//! must do with each one. Shared by the fuzz test (`tests/it/fuzz.rs`) and the fuzz program
//! (`benches/udp_fuzz.rs`, which includes this file by path), so both send the same kinds of
//! input and judge them the same way.
//!
//! The model is written from the RFCs, not from radacctd's code: RFC 2865 §3 (the Length
//! field, padding, the 20..4096 range), §5 (attribute lengths and data types), RFC 2866 §3 (the
//! Request Authenticator, the codes an accounting port serves), RFC 3579 §3.2
//! (Message-Authenticator) and RFC 5997 (Status-Server). The one thing it takes from SPEC §3 is
//! the drop reasons' names.

use std::net::Ipv6Addr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::sample::Index;
use radacctd::metrics::DropReason;
use radacctd::radius::builder::Request;
use radacctd::radius::dict::{self, status};

/// The largest datagram radacctd reads (RFC 2865 §3: 4096 octets).
pub const MAX_DATAGRAM: usize = 4096;
const HEADER: usize = 20;
const CODE_ACCOUNTING_REQUEST: u8 = 4;
pub const CODE_STATUS_SERVER: u8 = 12;

/// Every drop reason, in the order of `DropReason`'s variants.
pub const REASONS: [DropReason; 9] = [
    DropReason::UnknownClient,
    DropReason::Malformed,
    DropReason::BadAuthenticator,
    DropReason::BadMessageAuthenticator,
    DropReason::UnsupportedCode,
    DropReason::DuplicateInFlight,
    DropReason::QueueFull,
    DropReason::StoreRejected,
    DropReason::ShuttingDown,
];

/// What radacctd must do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// An authentic, well-formed request: it is stored (or is a Status-Server, or a status type
    /// with nothing to store) and answered with an authentic Accounting-Response.
    Answered,
    /// No answer, nothing stored, one drop counted under this reason.
    Dropped(DropReason),
}

/// The valid packets that mutations start from: a session's Start, Interim-Update and Stop
/// with most attributes a BRAS sends, a Start with a Message-Authenticator and IPv6, an
/// Accounting-On for a NAS without sessions, a Status-Server, a Tunnel-Start (acknowledged,
/// not stored). None carries Event-Timestamp: their event time is the receive time, so no
/// session they open looks stale.
pub fn base_packets(secret: &[u8], tag: &str) -> Vec<Vec<u8>> {
    let user = format!("fuzz-{tag}");
    let session = |status_type: u32, sid: &str| {
        Request::accounting(status_type, secret, 0)
            .string(dict::USER_NAME, &user)
            .string(dict::ACCT_SESSION_ID, sid)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::NAS_PORT, 7)
            .u32(dict::NAS_PORT_TYPE, 15)
    };
    let sid = format!("{tag}-1");
    let mut packets = vec![
        session(status::START, &sid)
            .string(dict::NAS_IDENTIFIER, "bras-1")
            .string(dict::NAS_PORT_ID, "eth0/1")
            .string(dict::CALLING_STATION_ID, "00-11-22-33-44-55")
            .string(dict::CALLED_STATION_ID, "bras-1:isp")
            .string(dict::CONNECT_INFO, "1000BASE-T")
            .u32(dict::SERVICE_TYPE, 2)
            .u32(dict::FRAMED_PROTOCOL, 1)
            .u32(dict::ACCT_AUTHENTIC, 1)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 10].into())
            .ipv6_prefix(
                dict::FRAMED_IPV6_PREFIX,
                "2001:db8:1::".parse::<Ipv6Addr>().expect("literal"),
                64,
            )
            .bytes(dict::FRAMED_INTERFACE_ID, &[0, 0, 0, 0, 0, 0, 0, 1])
            .bytes(dict::CLASS, b"ai:0123456789abcdef0123456789abcdef")
            .encode(),
        session(status::INTERIM_UPDATE, &sid)
            .string(dict::NAS_IDENTIFIER, "bras-1")
            .string(dict::NAS_PORT_ID, "eth0/1")
            .bytes(dict::CLASS, b"ai:0123456789abcdef0123456789abcdef")
            .u32(dict::ACCT_SESSION_TIME, 300)
            .u32(dict::ACCT_INPUT_OCTETS, 1000)
            .u32(dict::ACCT_OUTPUT_OCTETS, 2000)
            .u32(dict::ACCT_INPUT_GIGAWORDS, 1)
            .u32(dict::ACCT_INTERIM_INTERVAL, 600)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 11].into())
            .encode(),
        session(status::STOP, &sid)
            .string(dict::NAS_IDENTIFIER, "bras-1")
            .string(dict::NAS_PORT_ID, "eth0/1")
            .bytes(dict::CLASS, b"ai:0123456789abcdef0123456789abcdef")
            .u32(dict::ACCT_SESSION_TIME, 500)
            .u32(dict::ACCT_INPUT_OCTETS, 3000)
            .u32(dict::ACCT_OUTPUT_OCTETS, 4000)
            .u32(dict::ACCT_TERMINATE_CAUSE, 1)
            .string(dict::CONNECT_INFO, "bye")
            .encode(),
        Request::accounting(status::START, secret, 0)
            .string(dict::USER_NAME, &user)
            .string(dict::ACCT_SESSION_ID, &format!("{tag}-2"))
            .ipv6(
                dict::NAS_IPV6_ADDRESS,
                "2001:db8::1".parse().expect("literal"),
            )
            .ipv6(
                dict::FRAMED_IPV6_ADDRESS,
                "2001:db8:2::7".parse().expect("literal"),
            )
            .ipv6_prefix(
                dict::DELEGATED_IPV6_PREFIX,
                "2001:db8:ff00::".parse::<Ipv6Addr>().expect("literal"),
                56,
            )
            .bytes(dict::MESSAGE_AUTHENTICATOR, &[0; 16])
            .encode(),
        Request::accounting(status::ACCOUNTING_ON, secret, 0)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 250].into())
            .u32(dict::ACCT_TERMINATE_CAUSE, 7)
            .encode(),
        Request::accounting(9, secret, 0)
            .string(dict::USER_NAME, &user)
            .encode(),
    ];
    // Status-Server: its own code, a random Request Authenticator and a Message-Authenticator.
    let mut status_server = Request::accounting(status::START, secret, 0)
        .bytes(dict::MESSAGE_AUTHENTICATOR, &[0; 16])
        .encode();
    status_server[0] = CODE_STATUS_SERVER;
    status_server[4..HEADER].copy_from_slice(&[0x5a; 16]);
    packets.push(status_server);
    for p in &mut packets {
        sign(p, secret);
    }
    packets
}

/// One fuzz case: a starting datagram, mutations, how it is signed, and where it comes from.
#[derive(Debug, Clone)]
pub struct Case {
    pub start: Start,
    pub mutations: Vec<Mutation>,
    pub signing: Signing,
    /// Sent from an address that is no RADIUS client (127.0.0.2).
    pub unknown_client: bool,
    /// The identifier the datagram gets (before signing), so that mutations of the same base
    /// are distinct requests.
    pub identifier: u8,
}

#[derive(Debug, Clone)]
pub enum Start {
    /// One of [`base_packets`].
    Valid(Index),
    /// Random bytes; with `plausible`, code 4 and the right Length are written over the header.
    Random { bytes: Vec<u8>, plausible: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Leave the authenticators as the mutations left them.
    Keep,
    /// Recompute Message-Authenticator and Request Authenticator with the client's secret, so
    /// the mutation reaches the attribute checks.
    Resign,
    /// Recompute them with another secret.
    WrongSecret,
}

#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR one byte.
    Flip { at: Index, xor: u8 },
    /// Cut the datagram.
    Truncate { keep: Index },
    /// Append bytes; with `grow_length`, the Length field covers them too.
    Extend { bytes: Vec<u8>, grow_length: bool },
    /// Write the Length field.
    SetLength(u16),
    /// Write the code.
    SetCode(u8),
    /// Write the length octet of an attribute (the attribute list no longer adds up).
    AttrLengthOctet { attr: Index, len: u8 },
    /// Give an attribute a value of another length, keeping the list and Length consistent.
    ResizeAttr { attr: Index, len: usize, fill: u8 },
    /// Repeat an attribute right after itself.
    DuplicateAttr { attr: Index },
    /// Remove an attribute.
    RemoveAttr { attr: Index },
    /// Insert an attribute of any type and value.
    InsertAttr { at: Index, typ: u8, value: Vec<u8> },
    /// Overwrite the Request Authenticator.
    Authenticator(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Attribute types the server reads get more weight than the rest of the 0..=255 space.
    let typ = prop_oneof![
        3 => prop::sample::select(vec![
            dict::USER_NAME, dict::NAS_IP_ADDRESS, dict::NAS_PORT, dict::SERVICE_TYPE,
            dict::FRAMED_PROTOCOL, dict::FRAMED_IP_ADDRESS, dict::CLASS, dict::NAS_IDENTIFIER,
            dict::ACCT_STATUS_TYPE, dict::ACCT_DELAY_TIME, dict::ACCT_INPUT_OCTETS,
            dict::ACCT_SESSION_ID, dict::ACCT_AUTHENTIC, dict::ACCT_SESSION_TIME,
            dict::ACCT_TERMINATE_CAUSE, dict::ACCT_INPUT_GIGAWORDS, dict::EVENT_TIMESTAMP,
            dict::NAS_PORT_TYPE, dict::MESSAGE_AUTHENTICATOR, dict::ACCT_INTERIM_INTERVAL,
            dict::NAS_PORT_ID, dict::NAS_IPV6_ADDRESS, dict::FRAMED_INTERFACE_ID,
            dict::FRAMED_IPV6_PREFIX, dict::DELEGATED_IPV6_PREFIX, dict::FRAMED_IPV6_ADDRESS,
        ]),
        1 => any::<u8>(),
    ];
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        1 => any::<Index>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (prop::collection::vec(any::<u8>(), 1..64), any::<bool>())
            .prop_map(|(bytes, grow_length)| Mutation::Extend { bytes, grow_length }),
        1 => prop_oneof![any::<u16>(), 0..64u16, 4000..4200u16].prop_map(Mutation::SetLength),
        1 => prop_oneof![any::<u8>(), Just(CODE_STATUS_SERVER), 1..=5u8].prop_map(Mutation::SetCode),
        2 => (any::<Index>(), prop_oneof![0..=3u8, any::<u8>()])
            .prop_map(|(attr, len)| Mutation::AttrLengthOctet { attr, len }),
        3 => (any::<Index>(), prop_oneof![0..=20usize, 0..=253usize], any::<u8>())
            .prop_map(|(attr, len, fill)| Mutation::ResizeAttr { attr, len, fill }),
        2 => any::<Index>().prop_map(|attr| Mutation::DuplicateAttr { attr }),
        1 => any::<Index>().prop_map(|attr| Mutation::RemoveAttr { attr }),
        2 => (any::<Index>(), typ, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(at, typ, value)| Mutation::InsertAttr { at, typ, value }),
        1 => prop::collection::vec(any::<u8>(), 16).prop_map(Mutation::Authenticator),
    ]
}

/// The strategy for fuzz cases.
pub fn cases() -> impl Strategy<Value = Case> {
    let start = prop_oneof![
        6 => any::<Index>().prop_map(Start::Valid),
        1 => (prop::collection::vec(any::<u8>(), 0..300), any::<bool>())
            .prop_map(|(bytes, plausible)| Start::Random { bytes, plausible }),
    ];
    let signing = prop_oneof![
        4 => Just(Signing::Keep),
        5 => Just(Signing::Resign),
        1 => Just(Signing::WrongSecret),
    ];
    (
        start,
        prop::collection::vec(mutation(), 0..4),
        signing,
        prop::bool::weighted(0.04),
        any::<u8>(),
    )
        .prop_map(
            |(start, mutations, signing, unknown_client, identifier)| Case {
                start,
                mutations,
                signing,
                unknown_client,
                identifier,
            },
        )
}

impl Case {
    /// The datagram this case sends.
    pub fn datagram(&self, bases: &[Vec<u8>], secret: &[u8]) -> Vec<u8> {
        let mut d = match &self.start {
            Start::Valid(i) => bases[i.index(bases.len())].clone(),
            Start::Random { bytes, plausible } => {
                let mut d = bytes.clone();
                if *plausible && d.len() >= 4 {
                    d[0] = CODE_ACCOUNTING_REQUEST;
                    let len = u16::try_from(d.len()).unwrap_or(u16::MAX);
                    d[2..4].copy_from_slice(&len.to_be_bytes());
                }
                d
            }
        };
        if d.len() >= 2 {
            d[1] = self.identifier;
            if matches!(self.start, Start::Valid(_)) && self.signing == Signing::Keep {
                // A new identifier alone would break the authenticator: keep it valid.
                sign(&mut d, secret);
            }
        }
        for m in &self.mutations {
            apply(&mut d, m);
        }
        match self.signing {
            Signing::Keep => {}
            Signing::Resign => sign(&mut d, secret),
            Signing::WrongSecret => sign(&mut d, b"not-the-secret"),
        }
        d.truncate(MAX_DATAGRAM);
        d
    }
}

/// The `(offset, total length)` of each attribute, as far as the list can be walked.
fn attribute_offsets(d: &[u8]) -> Vec<(usize, usize)> {
    let end = declared_length(d).unwrap_or(d.len()).min(d.len());
    let mut out = Vec::new();
    let mut at = HEADER;
    while at + 2 <= end {
        let len = usize::from(d[at + 1]);
        if len < 2 || at + len > end {
            break;
        }
        out.push((at, len));
        at += len;
    }
    out
}

fn declared_length(d: &[u8]) -> Option<usize> {
    (d.len() >= 4).then(|| usize::from(u16::from_be_bytes([d[2], d[3]])))
}

/// Adds `delta` to the Length field (when there is one).
fn adjust_length(d: &mut [u8], delta: isize) {
    if let Some(len) = declared_length(d) {
        let new = (len as isize + delta).clamp(0, u16::MAX as isize) as u16;
        d[2..4].copy_from_slice(&new.to_be_bytes());
    }
}

fn apply(d: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { at, xor } => {
            if !d.is_empty() {
                let i = at.index(d.len());
                d[i] ^= xor;
            }
        }
        Mutation::Truncate { keep } => {
            let keep = keep.index(d.len() + 1);
            d.truncate(keep);
        }
        Mutation::Extend { bytes, grow_length } => {
            if d.len() + bytes.len() <= MAX_DATAGRAM {
                d.extend_from_slice(bytes);
                if *grow_length {
                    adjust_length(d, bytes.len() as isize);
                }
            }
        }
        Mutation::SetLength(len) => {
            if d.len() >= 4 {
                d[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Mutation::SetCode(code) => {
            if let Some(c) = d.first_mut() {
                *c = *code;
            }
        }
        Mutation::AttrLengthOctet { attr, len } => {
            let attrs = attribute_offsets(d);
            if !attrs.is_empty() {
                let (at, _) = attrs[attr.index(attrs.len())];
                d[at + 1] = *len;
            }
        }
        Mutation::ResizeAttr { attr, len, fill } => {
            let attrs = attribute_offsets(d);
            if !attrs.is_empty() {
                let (at, old) = attrs[attr.index(attrs.len())];
                let new = (*len).min(253) + 2;
                let value: Vec<u8> = d[at + 2..at + old]
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(*fill))
                    .take(new - 2)
                    .collect();
                d.splice(at + 2..at + old, value);
                d[at + 1] = new as u8;
                adjust_length(d, new as isize - old as isize);
            }
        }
        Mutation::DuplicateAttr { attr } => {
            let attrs = attribute_offsets(d);
            if !attrs.is_empty() && d.len() < MAX_DATAGRAM - 255 {
                let (at, len) = attrs[attr.index(attrs.len())];
                let copy = d[at..at + len].to_vec();
                d.splice(at + len..at + len, copy);
                adjust_length(d, len as isize);
            }
        }
        Mutation::RemoveAttr { attr } => {
            let attrs = attribute_offsets(d);
            if !attrs.is_empty() {
                let (at, len) = attrs[attr.index(attrs.len())];
                d.drain(at..at + len);
                adjust_length(d, -(len as isize));
            }
        }
        Mutation::InsertAttr { at, typ, value } => {
            if d.len() >= HEADER && d.len() < MAX_DATAGRAM - 255 {
                let attrs = attribute_offsets(d);
                let end = attrs.last().map_or(HEADER, |(a, l)| a + l);
                let mut positions: Vec<usize> = attrs.iter().map(|(a, _)| *a).collect();
                positions.push(end);
                let pos = positions[at.index(positions.len())];
                let mut attr = vec![*typ, (value.len() + 2) as u8];
                attr.extend_from_slice(value);
                let n = attr.len();
                d.splice(pos..pos, attr);
                adjust_length(d, n as isize);
            }
        }
        Mutation::Authenticator(bytes) => {
            if d.len() >= HEADER {
                d[4..HEADER].copy_from_slice(&bytes[..16]);
            }
        }
    }
}

/// Signs a datagram as a NAS does: the Message-Authenticator (when the packet has one) over
/// the packet with a zero Request Authenticator for accounting, then the Request
/// Authenticator (accounting only; a Status-Server keeps its random one). Covers `Length`
/// octets (or what there is).
pub fn sign(d: &mut [u8], secret: &[u8]) {
    if d.len() < HEADER {
        return;
    }
    let end = declared_length(d).unwrap_or(d.len()).clamp(HEADER, d.len());
    let accounting = d[0] != CODE_STATUS_SERVER;
    if accounting {
        d[4..HEADER].fill(0);
    }
    let ma = attribute_offsets(d)
        .into_iter()
        .find(|&(at, len)| d[at] == dict::MESSAGE_AUTHENTICATOR && len == 18);
    if let Some((at, _)) = ma {
        d[at + 2..at + 18].fill(0);
        let mut mac = Hmac::<Md5>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(&d[..end]);
        let value = mac.finalize().into_bytes();
        d[at + 2..at + 18].copy_from_slice(&value);
    }
    if accounting {
        let mut md5 = Md5::new();
        md5.update(&d[..4]);
        md5.update([0u8; 16]);
        md5.update(&d[HEADER..end]);
        md5.update(secret);
        let auth = md5.finalize();
        d[4..HEADER].copy_from_slice(&auth);
    }
}

/// The attributes of a packet (RFC 2865 §5: type, length 2..=255 including itself, value),
/// or None when the list does not add up to the packet's Length.
fn attributes(p: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut at = HEADER;
    while at < p.len() {
        if at + 2 > p.len() {
            return None;
        }
        let len = usize::from(p[at + 1]);
        if len < 2 || at + len > p.len() {
            return None;
        }
        out.push((p[at], &p[at + 2..at + len]));
        at += len;
    }
    Some(out)
}

fn hmac_ok(p: &[u8], secret: &[u8], zero_authenticator: bool) -> bool {
    let mut copy = p.to_vec();
    if zero_authenticator {
        copy[4..HEADER].fill(0);
    }
    let mut expected = None;
    let mut at = HEADER;
    while at + 2 <= copy.len() {
        let len = usize::from(copy[at + 1]);
        if copy[at] == dict::MESSAGE_AUTHENTICATOR && len == 18 {
            expected = Some(copy[at + 2..at + 18].to_vec());
            copy[at + 2..at + 18].fill(0);
        }
        at += len.max(2);
    }
    let Some(expected) = expected else {
        return false;
    };
    let mut mac = Hmac::<Md5>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&copy);
    mac.verify_slice(&expected).is_ok()
}

/// The attribute data types of RFC 2865 §5, RFC 2866 §5, RFC 2869, RFC 3162 and RFC 6911 for
/// the attributes radacctd reads, as fixed value lengths.
const INTEGER: usize = 4;
const IPV4: usize = 4;
const IPV6: usize = 16;
const INTERFACE_ID: usize = 8;

/// What radacctd must do with `datagram` from a client with `secret` (or from an address that
/// is no client).
pub fn predict(datagram: &[u8], secret: &[u8], known_client: bool) -> Fate {
    use DropReason::*;
    let d = &datagram[..datagram.len().min(MAX_DATAGRAM)];
    if !known_client {
        return Fate::Dropped(UnknownClient);
    }
    // RFC 2865 §3: at least a header; Length within 20..=4096 and within the datagram; octets
    // past Length are padding.
    let Some(length) = declared_length(d).filter(|_| d.len() >= HEADER) else {
        return Fate::Dropped(Malformed);
    };
    if !(HEADER..=MAX_DATAGRAM).contains(&length) || length > d.len() {
        return Fate::Dropped(Malformed);
    }
    let p = &d[..length];
    // An accounting port serves Accounting-Request and (RFC 5997) Status-Server.
    if p[0] != CODE_ACCOUNTING_REQUEST && p[0] != CODE_STATUS_SERVER {
        return Fate::Dropped(UnsupportedCode);
    }
    let Some(attrs) = attributes(p) else {
        return Fate::Dropped(Malformed);
    };
    let message_authenticators: Vec<&[u8]> = attrs
        .iter()
        .filter(|(t, _)| *t == dict::MESSAGE_AUTHENTICATOR)
        .map(|(_, v)| *v)
        .collect();
    // RFC 3579 §3.2: one Message-Authenticator of 16 octets at most.
    if message_authenticators.len() > 1 || message_authenticators.iter().any(|v| v.len() != 16) {
        return Fate::Dropped(Malformed);
    }
    let has_ma = !message_authenticators.is_empty();
    if p[0] == CODE_STATUS_SERVER {
        // RFC 5997 §3: a Status-Server without a valid Message-Authenticator is discarded.
        return if has_ma && hmac_ok(p, secret, false) {
            Fate::Answered
        } else {
            Fate::Dropped(BadMessageAuthenticator)
        };
    }
    // RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
    let mut md5 = Md5::new();
    md5.update(&p[..4]);
    md5.update([0u8; 16]);
    md5.update(&p[HEADER..]);
    md5.update(secret);
    if md5.finalize().as_slice() != &p[4..HEADER] {
        return Fate::Dropped(BadAuthenticator);
    }
    if has_ma && !hmac_ok(p, secret, true) {
        return Fate::Dropped(BadMessageAuthenticator);
    }

    // The attributes radacctd reads must have their type's length; where an attribute
    // repeats, the first one counts.
    let first = |t: u8| attrs.iter().find(|(typ, _)| *typ == t).map(|(_, v)| *v);
    let Some(status_type) = first(dict::ACCT_STATUS_TYPE)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_be_bytes)
    else {
        return Fate::Dropped(Malformed);
    };
    let mut fixed: Vec<(u8, usize)> = vec![
        (dict::EVENT_TIMESTAMP, INTEGER),
        (dict::ACCT_DELAY_TIME, INTEGER),
        (dict::NAS_IPV6_ADDRESS, IPV6),
        (dict::NAS_IP_ADDRESS, IPV4),
    ];
    let mut prefixes: Vec<u8> = Vec::new();
    match status_type {
        status::START | status::STOP | status::INTERIM_UPDATE => {
            fixed.extend([
                (dict::NAS_PORT, INTEGER),
                (dict::NAS_PORT_TYPE, INTEGER),
                (dict::ACCT_AUTHENTIC, INTEGER),
                (dict::SERVICE_TYPE, INTEGER),
                (dict::FRAMED_PROTOCOL, INTEGER),
                (dict::FRAMED_IP_ADDRESS, IPV4),
                (dict::FRAMED_IPV6_ADDRESS, IPV6),
                (dict::FRAMED_INTERFACE_ID, INTERFACE_ID),
                (dict::ACCT_SESSION_TIME, INTEGER),
                (dict::ACCT_INPUT_OCTETS, INTEGER),
                (dict::ACCT_OUTPUT_OCTETS, INTEGER),
                (dict::ACCT_INPUT_GIGAWORDS, INTEGER),
                (dict::ACCT_OUTPUT_GIGAWORDS, INTEGER),
                (dict::ACCT_INTERIM_INTERVAL, INTEGER),
            ]);
            if status_type == status::STOP {
                fixed.push((dict::ACCT_TERMINATE_CAUSE, INTEGER));
            }
            prefixes.extend([dict::FRAMED_IPV6_PREFIX, dict::DELEGATED_IPV6_PREFIX]);
        }
        status::ACCOUNTING_ON | status::ACCOUNTING_OFF => {
            fixed.push((dict::ACCT_TERMINATE_CAUSE, INTEGER));
        }
        _ => {}
    }
    if fixed
        .iter()
        .any(|&(t, n)| first(t).is_some_and(|v| v.len() != n))
    {
        return Fate::Dropped(Malformed);
    }
    // RFC 3162 §2.3: reserved octet, prefix length 0..=128, up to 16 prefix octets.
    if prefixes
        .iter()
        .any(|&t| first(t).is_some_and(|v| v.len() < 2 || v.len() > 18 || v[1] > 128))
    {
        return Fate::Dropped(Malformed);
    }
    Fate::Answered
}
