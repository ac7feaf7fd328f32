//! Building signed Accounting-Requests and checking their answers, as a NAS does: used by the
//! integration tests, the benchmark's load generator and the fuzz target.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use radius::core::avp::AVP;
use radius::core::code::Code;
use radius::core::packet::Packet;

use super::dict;

/// An Accounting-Request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    packet: Packet,
}

impl Request {
    /// A request with this Acct-Status-Type (see [`dict::status`]).
    pub fn accounting(status_type: u32, secret: &[u8], identifier: u8) -> Self {
        let mut packet = Packet::new_with_identifier(Code::AccountingRequest, secret, identifier);
        packet.add(AVP::from_u32(dict::ACCT_STATUS_TYPE, status_type));
        Self { packet }
    }

    pub fn string(mut self, typ: u8, value: &str) -> Self {
        self.packet.add(AVP::from_string(typ, value));
        self
    }

    pub fn bytes(mut self, typ: u8, value: &[u8]) -> Self {
        self.packet.add(AVP::from_bytes(typ, value));
        self
    }

    pub fn u32(mut self, typ: u8, value: u32) -> Self {
        self.packet.add(AVP::from_u32(typ, value));
        self
    }

    pub fn ip(mut self, typ: u8, value: IpAddr) -> Self {
        self.packet.add(match value {
            IpAddr::V4(v4) => AVP::from_ipv4(typ, &v4),
            IpAddr::V6(v6) => AVP::from_ipv6(typ, &v6),
        });
        self
    }

    pub fn ipv4(self, typ: u8, value: Ipv4Addr) -> Self {
        self.ip(typ, IpAddr::V4(value))
    }

    pub fn ipv6(self, typ: u8, value: Ipv6Addr) -> Self {
        self.ip(typ, IpAddr::V6(value))
    }

    /// An IPv6 prefix attribute (RFC 3162 layout).
    pub fn ipv6_prefix(mut self, typ: u8, network: Ipv6Addr, bits: u8) -> Self {
        let mut value = vec![0, bits];
        let octets = usize::from(bits).div_ceil(8);
        value.extend_from_slice(&network.octets()[..octets]);
        self.packet.add(AVP::from_bytes(typ, &value));
        self
    }

    /// The signed datagram.
    pub fn encode(&self) -> Vec<u8> {
        self.packet
            .encode()
            .expect("attributes built here are at most 253 octets and the packet at most 4096")
    }
}

/// Whether `response` is a valid Accounting-Response to `request` under `secret`.
pub fn is_accounting_response(response: &[u8], request: &[u8], secret: &[u8]) -> bool {
    response.len() >= 20
        && response[0] == super::packet::CODE_ACCOUNTING_RESPONSE
        && request.len() >= 20
        && response[1] == request[1]
        && Packet::is_authentic_response(response, request, secret)
}
