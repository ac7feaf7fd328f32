//! From a verified Accounting-Request to an accounting [`Event`]: the event time, the
//! `acctuniqueid` of FreeRADIUS's `acct_unique` policy, and every `radacct` column value printed
//! as FreeRADIUS's stock PostgreSQL queries print it. Pure: the receive time is passed in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use md5::{Digest, Md5};
use radius::core::avp::AVP;
use radius::core::packet::Packet;
use serde::Serialize;

use super::dict::{self, name, status, Enumerated};

/// What a packet asks the store to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start, Interim-Update or Stop of one session.
    Session(Box<SessionEvent>),
    /// Accounting-On / Accounting-Off: close every open session of a NAS.
    NasReboot(NasReboot),
}

impl AsRef<Event> for Event {
    fn as_ref(&self) -> &Event {
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Start,
    Interim,
    Stop,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Start => "start",
            SessionKind::Interim => "interim",
            SessionKind::Stop => "stop",
        }
    }
}

/// One session event with every column value it may write. Field names are short because
/// batches travel to the database as JSON (see `store`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    #[serde(skip)]
    pub kind: SessionKind,
    /// Event time, UNIX seconds.
    pub t: i64,
    /// `acctuniqueid`.
    pub uid: String,
    /// `acctsessionid`.
    pub sid: String,
    /// `username` ('' when absent, as FreeRADIUS stores it).
    pub username: String,
    /// `nasipaddress`: NAS-IPv6-Address, else NAS-IP-Address, else the packet's source.
    pub nas: String,
    /// `nasportid`: NAS-Port-Id, else NAS-Port.
    pub port_id: Option<String>,
    pub port_type: String,
    pub authentic: String,
    /// Connect-Info: `connectinfo_start` on Start, `connectinfo_stop` on Stop.
    pub connect_info: String,
    pub called: String,
    pub calling: String,
    pub service: String,
    pub protocol: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub prefix6: Option<String>,
    pub ifid: Option<String>,
    pub delegated6: Option<String>,
    pub class: Option<String>,
    /// Acct-Session-Time, when sent.
    pub session_time: Option<i64>,
    /// Octets including Gigawords.
    pub input_octets: i64,
    pub output_octets: i64,
    /// Acct-Terminate-Cause ('' when absent).
    pub cause: String,
    /// Acct-Interim-Interval, when the NAS sends it (used by the stale-session reaper).
    pub interim_interval: Option<i64>,
}

/// Accounting-On / Accounting-Off.
#[derive(Debug, Clone, PartialEq)]
pub struct NasReboot {
    pub nas: String,
    pub t: i64,
    pub cause: String,
}

/// What became of a packet that verified but does not map to an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(Event),
    /// A status type with nothing to store (Tunnel-*, Failed): acknowledged, not stored.
    Ignored(u32),
}

/// Why a verified packet cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("Acct-Status-Type is missing")]
    MissingStatusType,
    #[error("attribute {0} has an invalid length")]
    BadLength(u8),
}

/// Maps a verified Accounting-Request to an event. `received` is the receive time (UNIX
/// seconds) and `source` the UDP source address (already normalised).
pub fn decode(packet: &Packet, source: IpAddr, received: i64) -> Result<Decoded, AttributeError> {
    let a = Attrs(packet);
    let status_type = a
        .u32(dict::ACCT_STATUS_TYPE)?
        .ok_or(AttributeError::MissingStatusType)?;
    let t = event_time(
        a.u32(dict::EVENT_TIMESTAMP)?,
        a.u32(dict::ACCT_DELAY_TIME)?,
        received,
    );
    let nas = match (
        a.ipv6(dict::NAS_IPV6_ADDRESS)?,
        a.ipv4(dict::NAS_IP_ADDRESS)?,
    ) {
        (Some(v6), _) => IpAddr::V6(v6),
        (None, Some(v4)) => IpAddr::V4(v4),
        (None, None) => source,
    };
    let kind = match status_type {
        status::START => SessionKind::Start,
        status::STOP => SessionKind::Stop,
        status::INTERIM_UPDATE => SessionKind::Interim,
        status::ACCOUNTING_ON | status::ACCOUNTING_OFF => {
            let cause = a
                .enumerated(dict::ACCT_TERMINATE_CAUSE, Enumerated::AcctTerminateCause)?
                .unwrap_or_else(|| "NAS-Reboot".to_owned());
            return Ok(Decoded::Event(Event::NasReboot(NasReboot {
                nas: nas.to_string(),
                t,
                cause,
            })));
        }
        other => return Ok(Decoded::Ignored(other)),
    };

    let user = a.bytes(dict::USER_NAME);
    let sid = a.bytes(dict::ACCT_SESSION_ID);
    let nas_identifier = a.bytes(dict::NAS_IDENTIFIER);
    let nas_port_id = a.bytes(dict::NAS_PORT_ID);
    let nas_port = a.u32(dict::NAS_PORT)?;
    let nas_text = nas.to_string();
    let class = a.bytes(dict::CLASS);
    let uid = acct_unique_id(
        class.as_deref(),
        user.as_deref().unwrap_or_default(),
        sid.as_deref().unwrap_or_default(),
        &nas_text,
        nas_identifier.as_deref().unwrap_or_default(),
        nas_port_id.as_deref().unwrap_or_default(),
        nas_port,
    );
    let octets = |low: u8, high: u8| -> Result<i64, AttributeError> {
        Ok((i64::from(a.u32(high)?.unwrap_or(0)) << 32) + i64::from(a.u32(low)?.unwrap_or(0)))
    };

    Ok(Decoded::Event(Event::Session(Box::new(SessionEvent {
        kind,
        t,
        uid,
        sid: text(sid.as_deref().unwrap_or_default()),
        username: text(user.as_deref().unwrap_or_default()),
        nas: nas_text,
        port_id: nas_port_id
            .as_deref()
            .map(text)
            .or_else(|| nas_port.map(|p| p.to_string()))
            .filter(|s| !s.is_empty()),
        port_type: a
            .enumerated(dict::NAS_PORT_TYPE, Enumerated::NasPortType)?
            .unwrap_or_default(),
        authentic: a
            .enumerated(dict::ACCT_AUTHENTIC, Enumerated::AcctAuthentic)?
            .unwrap_or_default(),
        connect_info: text(a.bytes(dict::CONNECT_INFO).as_deref().unwrap_or_default()),
        called: text(
            a.bytes(dict::CALLED_STATION_ID)
                .as_deref()
                .unwrap_or_default(),
        ),
        calling: text(
            a.bytes(dict::CALLING_STATION_ID)
                .as_deref()
                .unwrap_or_default(),
        ),
        service: a
            .enumerated(dict::SERVICE_TYPE, Enumerated::ServiceType)?
            .unwrap_or_default(),
        protocol: a
            .enumerated(dict::FRAMED_PROTOCOL, Enumerated::FramedProtocol)?
            .unwrap_or_default(),
        ip: a.ipv4(dict::FRAMED_IP_ADDRESS)?.map(|ip| ip.to_string()),
        ip6: a.ipv6(dict::FRAMED_IPV6_ADDRESS)?.map(|ip| ip.to_string()),
        prefix6: a.ipv6_prefix(dict::FRAMED_IPV6_PREFIX)?,
        ifid: a.interface_id(dict::FRAMED_INTERFACE_ID)?,
        delegated6: a.ipv6_prefix(dict::DELEGATED_IPV6_PREFIX)?,
        class: class.map(|c| format!("0x{}", hex::encode(c))),
        session_time: a.u32(dict::ACCT_SESSION_TIME)?.map(i64::from),
        input_octets: octets(dict::ACCT_INPUT_OCTETS, dict::ACCT_INPUT_GIGAWORDS)?,
        output_octets: octets(dict::ACCT_OUTPUT_OCTETS, dict::ACCT_OUTPUT_GIGAWORDS)?,
        cause: if kind == SessionKind::Stop {
            a.enumerated(dict::ACCT_TERMINATE_CAUSE, Enumerated::AcctTerminateCause)?
                .unwrap_or_default()
        } else {
            String::new()
        },
        interim_interval: a
            .u32(dict::ACCT_INTERIM_INTERVAL)?
            .map(i64::from)
            .filter(|&i| i > 0),
    }))))
}

/// Event-Timestamp if present, else the receive time minus Acct-Delay-Time (FreeRADIUS's
/// `preprocess` does the same, and ignores a delay as large as the clock itself).
pub fn event_time(event_timestamp: Option<u32>, delay: Option<u32>, received: i64) -> i64 {
    match (event_timestamp, delay) {
        (Some(ts), _) => i64::from(ts),
        (None, Some(d)) if i64::from(d) < received && d != u32::MAX => received - i64::from(d),
        _ => received,
    }
}

/// FreeRADIUS's `acct_unique` policy (policy.d/accounting): when Class starts with `ai:` and 32
/// hex digits, md5("<those digits>,<Acct-Session-Id>"); otherwise md5 of User-Name,
/// Acct-Session-Id, the NAS address, NAS-Identifier, NAS-Port-Id and NAS-Port joined by commas.
pub fn acct_unique_id(
    class: Option<&[u8]>,
    user: &[u8],
    session_id: &[u8],
    nas: &str,
    nas_identifier: &[u8],
    nas_port_id: &[u8],
    nas_port: Option<u32>,
) -> String {
    let mut md5 = Md5::new();
    if let Some(digits) = class.and_then(class_digits) {
        md5.update(digits);
        md5.update(b",");
        md5.update(session_id);
    } else {
        md5.update(user);
        md5.update(b",");
        md5.update(session_id);
        md5.update(b",");
        md5.update(nas.as_bytes());
        md5.update(b",");
        md5.update(nas_identifier);
        md5.update(b",");
        md5.update(nas_port_id);
        md5.update(b",");
        if let Some(port) = nas_port {
            md5.update(port.to_string().as_bytes());
        }
    }
    hex::encode(md5.finalize())
}

/// The 32 hex digits (either case) after `ai:` at the start of Class. The prefix itself is
/// case-sensitive: the policy compares it byte for byte (as hex) before its case-insensitive
/// regular expression looks at the digits, so `AI:...` is not the policy's prefix.
fn class_digits(class: &[u8]) -> Option<&[u8]> {
    if class.len() < 35 || &class[..3] != b"ai:" {
        return None;
    }
    let digits = &class[3..35];
    digits.iter().all(u8::is_ascii_hexdigit).then_some(digits)
}

/// A string attribute as text: invalid UTF-8 is replaced, NUL (which neither SQL database
/// stores in text) is dropped.
fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.into_owned()
    }
}

/// Typed, length-checked attribute access.
struct Attrs<'a>(&'a Packet);

impl Attrs<'_> {
    /// The value of the first attribute of this type (the radius crate hands out copies).
    fn bytes(&self, typ: u8) -> Option<Vec<u8>> {
        self.0.lookup(typ).map(AVP::encode_bytes)
    }

    fn fixed<const N: usize>(&self, typ: u8) -> Result<Option<[u8; N]>, AttributeError> {
        match self.bytes(typ) {
            None => Ok(None),
            Some(v) => <[u8; N]>::try_from(v.as_slice())
                .map(Some)
                .map_err(|_| AttributeError::BadLength(typ)),
        }
    }

    fn u32(&self, typ: u8) -> Result<Option<u32>, AttributeError> {
        Ok(self.fixed::<4>(typ)?.map(u32::from_be_bytes))
    }

    fn ipv4(&self, typ: u8) -> Result<Option<Ipv4Addr>, AttributeError> {
        Ok(self.fixed::<4>(typ)?.map(Ipv4Addr::from))
    }

    fn ipv6(&self, typ: u8) -> Result<Option<Ipv6Addr>, AttributeError> {
        Ok(self.fixed::<16>(typ)?.map(Ipv6Addr::from))
    }

    fn enumerated(&self, typ: u8, which: Enumerated) -> Result<Option<String>, AttributeError> {
        Ok(self.u32(typ)?.map(|v| name(which, v)))
    }

    /// RFC 3162 Framed-IPv6-Prefix: reserved octet, prefix length, then up to 16 octets.
    fn ipv6_prefix(&self, typ: u8) -> Result<Option<String>, AttributeError> {
        let Some(v) = self.bytes(typ) else {
            return Ok(None);
        };
        if v.len() < 2 || v.len() > 18 || v[1] > 128 {
            return Err(AttributeError::BadLength(typ));
        }
        let bits = v[1];
        let mut octets = [0u8; 16];
        octets[..v.len() - 2].copy_from_slice(&v[2..]);
        // Clear host bits so the value is a valid network (as PostgreSQL's inet/cidr output).
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        let network = Ipv6Addr::from(u128::from_be_bytes(octets) & mask);
        Ok(Some(format!("{network}/{bits}")))
    }

    /// Framed-Interface-Id: 8 octets printed as four groups of hex.
    fn interface_id(&self, typ: u8) -> Result<Option<String>, AttributeError> {
        Ok(self.fixed::<8>(typ)?.map(|b| {
            format!(
                "{:x}:{:x}:{:x}:{:x}",
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]])
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radius::core::code::Code;

    fn packet(attrs: &[(u8, Vec<u8>)]) -> Packet {
        let mut p = Packet::new(Code::AccountingRequest, b"s");
        for (t, v) in attrs {
            p.add(AVP::from_bytes(*t, v));
        }
        p
    }

    fn session(attrs: &[(u8, Vec<u8>)]) -> SessionEvent {
        match decode(&packet(attrs), "10.9.9.9".parse().unwrap(), 1_700_000_100).unwrap() {
            Decoded::Event(Event::Session(s)) => *s,
            other => panic!("expected a session event, got {other:?}"),
        }
    }

    fn u(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    #[test]
    fn unique_id_matches_freeradius_acct_unique() {
        // md5("alice,sess-1,192.0.2.1,,,") as FreeRADIUS computes it for a packet with only
        // those three attributes.
        let id = acct_unique_id(None, b"alice", b"sess-1", "192.0.2.1", b"", b"", None);
        let expected = hex::encode(Md5::digest(b"alice,sess-1,192.0.2.1,,,"));
        assert_eq!(id, expected);
        let with_port = acct_unique_id(None, b"bob", b"x", "192.0.2.1", b"bras1", b"eth0", Some(7));
        assert_eq!(
            with_port,
            hex::encode(Md5::digest(b"bob,x,192.0.2.1,bras1,eth0,7"))
        );
    }

    #[test]
    fn class_with_ai_prefix_keys_the_unique_id() {
        let class = b"ai:0123456789abcdef0123456789ABCDEFtrailer";
        let id = acct_unique_id(
            Some(class),
            b"alice",
            b"sess-1",
            "192.0.2.1",
            b"",
            b"",
            None,
        );
        assert_eq!(
            id,
            hex::encode(Md5::digest(b"0123456789abcdef0123456789ABCDEF,sess-1"))
        );
        let not_hex = b"ai:0123456789abcdef0123456789abcdeZ";
        let id = acct_unique_id(
            Some(not_hex),
            b"alice",
            b"sess-1",
            "192.0.2.1",
            b"",
            b"",
            None,
        );
        assert_eq!(id, hex::encode(Md5::digest(b"alice,sess-1,192.0.2.1,,,")));
        let upper_case_prefix = b"AI:0123456789abcdef0123456789abcdef";
        let id = acct_unique_id(
            Some(upper_case_prefix),
            b"alice",
            b"sess-1",
            "192.0.2.1",
            b"",
            b"",
            None,
        );
        assert_eq!(id, hex::encode(Md5::digest(b"alice,sess-1,192.0.2.1,,,")));
    }

    #[test]
    fn event_time_prefers_event_timestamp_then_subtracts_delay() {
        assert_eq!(event_time(Some(1000), Some(5), 2000), 1000);
        assert_eq!(event_time(None, Some(5), 2000), 1995);
        assert_eq!(event_time(None, None, 2000), 2000);
        assert_eq!(event_time(None, Some(u32::MAX), 2000), 2000);
    }

    #[test]
    fn columns_are_printed_like_freeradius() {
        let s = session(&[
            (dict::ACCT_STATUS_TYPE, u(2)),
            (dict::USER_NAME, b"alice".to_vec()),
            (dict::ACCT_SESSION_ID, b"s1".to_vec()),
            (dict::NAS_IP_ADDRESS, vec![192, 0, 2, 1]),
            (dict::NAS_PORT, u(12)),
            (dict::NAS_PORT_TYPE, u(19)),
            (dict::ACCT_INPUT_OCTETS, u(5)),
            (dict::ACCT_INPUT_GIGAWORDS, u(1)),
            (dict::ACCT_TERMINATE_CAUSE, u(1)),
            (
                dict::FRAMED_IPV6_PREFIX,
                vec![0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0xff],
            ),
            (dict::FRAMED_INTERFACE_ID, vec![0, 0, 0, 0, 0, 0, 0, 1]),
            (dict::ACCT_DELAY_TIME, u(100)),
        ]);
        assert_eq!(s.kind, SessionKind::Stop);
        assert_eq!(s.t, 1_700_000_000);
        assert_eq!(s.nas, "192.0.2.1");
        assert_eq!(s.port_id.as_deref(), Some("12"));
        assert_eq!(s.port_type, "Wireless-802.11");
        assert_eq!(s.input_octets, (1 << 32) + 5);
        assert_eq!(s.output_octets, 0);
        assert_eq!(s.cause, "User-Request");
        assert_eq!(s.prefix6.as_deref(), Some("2001:db8:1::/64"));
        assert_eq!(s.ifid.as_deref(), Some("0:0:0:1"));
        assert_eq!(s.called, "");
        assert_eq!(s.ip, None);
    }

    #[test]
    fn the_source_address_stands_in_for_a_missing_nas_address() {
        let s = session(&[
            (dict::ACCT_STATUS_TYPE, u(1)),
            (dict::USER_NAME, b"a".to_vec()),
        ]);
        assert_eq!(s.nas, "10.9.9.9");
    }

    #[test]
    fn accounting_on_defaults_to_nas_reboot() {
        let d = decode(
            &packet(&[
                (dict::ACCT_STATUS_TYPE, u(7)),
                (dict::NAS_IP_ADDRESS, vec![192, 0, 2, 7]),
            ]),
            "127.0.0.1".parse().unwrap(),
            100,
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded::Event(Event::NasReboot(NasReboot {
                nas: "192.0.2.7".into(),
                t: 100,
                cause: "NAS-Reboot".into()
            }))
        );
    }

    #[test]
    fn wrong_integer_lengths_and_missing_status_are_rejected() {
        let p = packet(&[(dict::ACCT_STATUS_TYPE, vec![0, 1])]);
        assert_eq!(
            decode(&p, "127.0.0.1".parse().unwrap(), 1),
            Err(AttributeError::BadLength(40))
        );
        let p = packet(&[(dict::USER_NAME, b"x".to_vec())]);
        assert_eq!(
            decode(&p, "127.0.0.1".parse().unwrap(), 1),
            Err(AttributeError::MissingStatusType)
        );
        let p = packet(&[(dict::ACCT_STATUS_TYPE, u(15))]);
        assert_eq!(
            decode(&p, "127.0.0.1".parse().unwrap(), 1),
            Ok(Decoded::Ignored(15))
        );
    }
}
