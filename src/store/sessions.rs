//! Reading accounting sessions back (the APIs): row type and query parameters shared by both
//! backends.

/// A `radacct` / `radacct_history` row as the APIs show it (times as UNIX seconds, addresses as
/// text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub radacctid: i64,
    pub acctsessionid: String,
    pub acctuniqueid: String,
    pub username: Option<String>,
    pub nasipaddress: String,
    pub nasportid: Option<String>,
    pub nasporttype: Option<String>,
    pub acctstarttime: Option<i64>,
    pub acctupdatetime: Option<i64>,
    pub acctstoptime: Option<i64>,
    pub acctsessiontime: Option<i64>,
    pub acctinputoctets: Option<i64>,
    pub acctoutputoctets: Option<i64>,
    pub connectinfo_start: Option<String>,
    pub connectinfo_stop: Option<String>,
    pub calledstationid: Option<String>,
    pub callingstationid: Option<String>,
    pub acctterminatecause: Option<String>,
    pub framedipaddress: Option<String>,
    pub framedipv6address: Option<String>,
    pub framedipv6prefix: Option<String>,
    pub delegatedipv6prefix: Option<String>,
}

/// Filters of `onlineSessions`; all optional.
#[derive(Debug, Clone, Default)]
pub struct OnlineFilter {
    pub nas: Option<String>,
    pub username_prefix: Option<String>,
    pub framed_ip: Option<String>,
}

/// A keyset cursor: sessions strictly after (start time, radacctid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub start: i64,
    pub id: i64,
}

macro_rules! session_row {
    ($r:expr) => {
        $crate::store::sessions::SessionRow {
            radacctid: $r.try_get("radacctid")?,
            acctsessionid: $r.try_get("acctsessionid")?,
            acctuniqueid: $r.try_get("acctuniqueid")?,
            username: $r.try_get("username")?,
            nasipaddress: $r.try_get("nasipaddress")?,
            nasportid: $r.try_get("nasportid")?,
            nasporttype: $r.try_get("nasporttype")?,
            acctstarttime: $r.try_get("acctstarttime")?,
            acctupdatetime: $r.try_get("acctupdatetime")?,
            acctstoptime: $r.try_get("acctstoptime")?,
            acctsessiontime: $r.try_get("acctsessiontime")?,
            acctinputoctets: $r.try_get("acctinputoctets")?,
            acctoutputoctets: $r.try_get("acctoutputoctets")?,
            connectinfo_start: $r.try_get("connectinfo_start")?,
            connectinfo_stop: $r.try_get("connectinfo_stop")?,
            calledstationid: $r.try_get("calledstationid")?,
            callingstationid: $r.try_get("callingstationid")?,
            acctterminatecause: $r.try_get("acctterminatecause")?,
            framedipaddress: $r.try_get("framedipaddress")?,
            framedipv6address: $r.try_get("framedipv6address")?,
            framedipv6prefix: $r.try_get("framedipv6prefix")?,
            delegatedipv6prefix: $r.try_get("delegatedipv6prefix")?,
        }
    };
}

pub(crate) use session_row;

/// The networks that may hold `ip` as stored in the prefix columns (`network/length` with host
/// bits cleared): all of its /0 to /128 networks for IPv6, none for IPv4.
pub fn enclosing_prefixes(ip: std::net::IpAddr) -> Vec<String> {
    match ip {
        std::net::IpAddr::V4(_) => Vec::new(),
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (0..=128u32)
                .map(|len| {
                    let mask = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    format!("{}/{len}", std::net::Ipv6Addr::from(bits & mask))
                })
                .collect()
        }
    }
}
