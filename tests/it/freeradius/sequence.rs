//! The packet sequence of the differential test, read from `fixtures/freeradius/sequence.txt`
//! (radclient's format) and encoded with radacctd's request builder. Attribute names, types
//! and value names come from FreeRADIUS's own RFC dictionaries, so the fixture says what
//! FreeRADIUS would read and radacctd's dictionary is not used to build its own input.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use radacctd::radius::builder::Request;
use radacctd::radius::dict;

use crate::harness::Nas;

/// Where Debian's FreeRADIUS keeps its dictionaries.
const DICTIONARY_DIR: &str = "/usr/share/freeradius";

/// The fixture.
pub fn fixture_path() -> String {
    format!(
        "{}/fixtures/freeradius/sequence.txt",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One datagram to send to both servers.
pub struct Packet {
    /// The `## title` of the scenario it belongs to.
    pub scenario: String,
    /// Line of the fixture where its block starts.
    pub line: usize,
    /// Whether this is a retransmission of an earlier datagram.
    pub retransmit: bool,
    pub bytes: Vec<u8>,
}

/// The data types of the attributes the fixture uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    String,
    Octets,
    Integer,
    Date,
    Ipv4,
    Ipv6,
    Ipv6Prefix,
    InterfaceId,
}

/// FreeRADIUS's RFC attributes: name -> (number, type), and (attribute, value name) -> number.
struct Dictionary {
    attributes: HashMap<String, (u8, Kind)>,
    values: HashMap<(String, String), u32>,
}

impl Dictionary {
    /// Reads `dictionary.rfc*` (standard attributes only: vendor blocks and extended
    /// attributes are skipped).
    fn load() -> Self {
        let mut files: Vec<_> = std::fs::read_dir(DICTIONARY_DIR)
            .unwrap_or_else(|e| {
                panic!(
                    "FreeRADIUS's dictionaries are needed in {DICTIONARY_DIR} (Debian package \
                     freeradius-common): {e}"
                )
            })
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dictionary.rfc"))
            })
            .collect();
        files.sort();
        let mut attributes = HashMap::new();
        let mut values = HashMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("dictionary is readable");
            let mut in_vendor = false;
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["BEGIN-VENDOR", ..] => in_vendor = true,
                    ["END-VENDOR", ..] => in_vendor = false,
                    _ if in_vendor => {}
                    ["ATTRIBUTE", name, number, typ, ..] => {
                        let kind = match *typ {
                            "string" => Kind::String,
                            "octets" => Kind::Octets,
                            "integer" => Kind::Integer,
                            "date" => Kind::Date,
                            "ipaddr" => Kind::Ipv4,
                            "ipv6addr" => Kind::Ipv6,
                            "ipv6prefix" => Kind::Ipv6Prefix,
                            "ifid" => Kind::InterfaceId,
                            _ => continue,
                        };
                        if let Ok(number) = number.parse::<u8>() {
                            attributes.insert(name.to_lowercase(), (number, kind));
                        }
                    }
                    ["VALUE", attribute, name, number, ..] => {
                        if let Ok(number) = number.parse::<u32>() {
                            values
                                .entry((attribute.to_lowercase(), name.to_lowercase()))
                                .or_insert(number);
                        }
                    }
                    _ => {}
                }
            }
        }
        Self { attributes, values }
    }
}

/// Consecutive non-comment lines of the fixture.
struct Block<'a> {
    line: usize,
    scenario: String,
    lines: Vec<&'a str>,
}

/// A parse error with the fixture line it comes from.
fn bad(line: usize, what: impl std::fmt::Display) -> ! {
    panic!("{}:{line}: {what}", fixture_path())
}

/// Reads the fixture; `base` is the time `T` of `Event-Timestamp = T+n`. Requests are built
/// with `nas` (fresh identifiers from its counter).
pub fn load(base: i64, nas: &Nas) -> Vec<Packet> {
    let text = std::fs::read_to_string(fixture_path()).expect("the sequence fixture is readable");
    let dictionary = Dictionary::load();
    let mut packets: Vec<Packet> = Vec::new();
    let mut named: HashMap<String, usize> = HashMap::new();
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut current: Option<Block<'_>> = None;
    let mut scenario = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("## ") {
            blocks.extend(current.take());
            if let Some(title) = line.strip_prefix("## ") {
                scenario = title.to_owned();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        current
            .get_or_insert_with(|| Block {
                line: i + 1,
                scenario: scenario.clone(),
                lines: Vec::new(),
            })
            .lines
            .push(line);
    }
    blocks.extend(current);
    for Block {
        line: first_line,
        scenario,
        lines,
    } in blocks
    {
        let head = lines[0];
        if let Some(rest) = head.strip_prefix("retransmit") {
            let index = match rest.trim() {
                "" => packets.len().checked_sub(1),
                name => named.get(name).copied(),
            }
            .unwrap_or_else(|| bad(first_line, "nothing to retransmit"));
            let bytes = packets[index].bytes.clone();
            packets.push(Packet {
                scenario: scenario.clone(),
                line: first_line,
                retransmit: true,
                bytes,
            });
            continue;
        }
        let (values, body): (Vec<String>, &[&str]) = match head.strip_prefix("for V in ") {
            Some(list) => (expand_list(list, first_line), &lines[1..]),
            None => (vec![String::new()], &lines[..]),
        };
        for value in values {
            let mut name = None;
            let mut attributes = Vec::new();
            for line in body {
                if let Some(n) = line.strip_prefix("@name ") {
                    name = Some(n.trim().to_owned());
                    continue;
                }
                let line = line.replace("$V", &value);
                let (attribute, value) = line
                    .split_once('=')
                    .unwrap_or_else(|| bad(first_line, format!("not `Attribute = value`: {line}")));
                attributes.push((attribute.trim().to_owned(), value.trim().to_owned()));
            }
            let bytes = encode(&dictionary, nas, base, &attributes, first_line);
            if let Some(name) = name {
                named.insert(name, packets.len());
            }
            packets.push(Packet {
                scenario: scenario.clone(),
                line: first_line,
                retransmit: false,
                bytes,
            });
        }
    }
    packets
}

/// `0..=3 7 0x10..=0x12` -> every number listed (decimal).
fn expand_list(list: &str, line: usize) -> Vec<String> {
    let mut out = Vec::new();
    for item in list.split_whitespace() {
        let number = |s: &str| -> u32 {
            match s.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
            .unwrap_or_else(|| bad(line, "bad number"))
        };
        match item.split_once("..=") {
            Some((from, to)) => out.extend((number(from)..=number(to)).map(|v| v.to_string())),
            None => out.push(number(item).to_string()),
        }
    }
    out
}

/// One packet: Acct-Status-Type first, then the other attributes in fixture order.
fn encode(
    dictionary: &Dictionary,
    nas: &Nas,
    base: i64,
    attributes: &[(String, String)],
    line: usize,
) -> Vec<u8> {
    let lookup = |name: &str| -> (u8, Kind) {
        *dictionary
            .attributes
            .get(&name.to_lowercase())
            .unwrap_or_else(|| bad(line, format!("{name} is not in FreeRADIUS's dictionary")))
    };
    let integer = |name: &str, value: &str| -> u32 {
        value.parse().unwrap_or_else(|_| {
            *dictionary
                .values
                .get(&(name.to_lowercase(), value.to_lowercase()))
                .unwrap_or_else(|| bad(line, format!("{name} has no value {value}")))
        })
    };
    let status = attributes
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Acct-Status-Type"))
        .map(|(n, v)| integer(n, v))
        .unwrap_or_else(|| bad(line, "a packet needs Acct-Status-Type"));
    let mut request: Request = nas.request(status);
    for (name, value) in attributes {
        let (typ, kind) = lookup(name);
        if typ == dict::ACCT_STATUS_TYPE {
            continue;
        }
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        request = match kind {
            Kind::String => request.string(typ, unquoted),
            Kind::Octets => match value.strip_prefix("0x") {
                Some(hex) => request.bytes(
                    typ,
                    &hex::decode(hex).unwrap_or_else(|_| bad(line, "bad hex")),
                ),
                None => request.bytes(typ, unquoted.as_bytes()),
            },
            Kind::Integer => request.u32(typ, integer(name, value)),
            Kind::Date => {
                let t = match value.strip_prefix("T+") {
                    Some(offset) => {
                        base + offset
                            .parse::<i64>()
                            .unwrap_or_else(|_| bad(line, "bad T+n"))
                    }
                    None => value.parse().unwrap_or_else(|_| bad(line, "bad date")),
                };
                request.u32(typ, u32::try_from(t).expect("dates fit in 32 bits"))
            }
            Kind::Ipv4 => request.ipv4(
                typ,
                value
                    .parse::<Ipv4Addr>()
                    .unwrap_or_else(|_| bad(line, "bad IPv4 address")),
            ),
            Kind::Ipv6 => request.ipv6(
                typ,
                value
                    .parse::<Ipv6Addr>()
                    .unwrap_or_else(|_| bad(line, "bad IPv6 address")),
            ),
            Kind::Ipv6Prefix => {
                let (address, bits) = value
                    .split_once('/')
                    .unwrap_or_else(|| bad(line, "an IPv6 prefix is address/length"));
                request.ipv6_prefix(
                    typ,
                    address
                        .parse()
                        .unwrap_or_else(|_| bad(line, "bad IPv6 prefix")),
                    bits.parse()
                        .unwrap_or_else(|_| bad(line, "bad prefix length")),
                )
            }
            Kind::InterfaceId => {
                let groups: Vec<u16> = value
                    .split(':')
                    .map(|g| {
                        u16::from_str_radix(g, 16).unwrap_or_else(|_| bad(line, "bad interface id"))
                    })
                    .collect();
                if groups.len() != 4 {
                    bad(line, "an interface id is four groups of hex digits");
                }
                let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_be_bytes()).collect();
                request.bytes(typ, &bytes)
            }
        };
    }
    request.encode()
}
