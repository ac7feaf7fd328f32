//! Attribute numbers and the dictionary names of enumerated values, as FreeRADIUS prints them.
//!
//! FreeRADIUS stores enumerated attributes in `radacct` by their dictionary name
//! (`Wireless-802.11`, `Framed-User`, `User-Request`); a value the dictionary does not name is
//! stored as its decimal number. [`name`] does the same, with the names FreeRADIUS 3.2's
//! default dictionary prints: where several dictionaries name one value, the one loaded last
//! wins (Service-Type 12 prints as `Sip-session`, not RFC 2865's `Voice`), vendor dictionaries
//! name some values of standard attributes (`HP-Oper`, `Ascend-MPP`), and values registered
//! after that dictionary was written have no name (NAS-Port-Type 37, Service-Type 19). The
//! differential test (tests/it/freeradius/) checks every value any of its dictionaries names.

pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const NAS_PORT: u8 = 5;
pub const SERVICE_TYPE: u8 = 6;
pub const FRAMED_PROTOCOL: u8 = 7;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const CLASS: u8 = 25;
pub const CALLED_STATION_ID: u8 = 30;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const ACCT_INPUT_OCTETS: u8 = 42;
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_AUTHENTIC: u8 = 45;
pub const ACCT_SESSION_TIME: u8 = 46;
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
pub const EVENT_TIMESTAMP: u8 = 55;
pub const NAS_PORT_TYPE: u8 = 61;
pub const CONNECT_INFO: u8 = 77;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
pub const NAS_PORT_ID: u8 = 87;
pub const NAS_IPV6_ADDRESS: u8 = 95;
pub const FRAMED_INTERFACE_ID: u8 = 96;
pub const FRAMED_IPV6_PREFIX: u8 = 97;
pub const DELEGATED_IPV6_PREFIX: u8 = 123;
pub const FRAMED_IPV6_ADDRESS: u8 = 168;
pub const ERROR_CAUSE: u8 = 101;

/// Acct-Status-Type values (RFC 2866, RFC 2867).
pub mod status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

const SERVICE_TYPE_NAMES: &[(u32, &str)] = &[
    (1, "Login-User"),
    (2, "Framed-User"),
    (3, "Callback-Login-User"),
    (4, "Callback-Framed-User"),
    (5, "Outbound-User"),
    (6, "Administrative-User"),
    (7, "NAS-Prompt-User"),
    (8, "Authenticate-Only"),
    (9, "Callback-NAS-Prompt"),
    (10, "Call-Check"),
    (11, "Callback-Administrative"),
    (12, "Sip-session"),
    (13, "Fax"),
    (14, "Modem-Relay"),
    (15, "IAPP-Register"),
    (16, "IAPP-AP-Check"),
    (17, "Authorize-Only"),
    (18, "Framed-Management"),
    (252, "HP-Oper"),
    (255, "HP-User"),
    (0x0630_0001, "Annex-Authorize-Only"),
    (0x0630_0002, "Annex-Framed-Tunnel"),
    (0x38df_0001, "ChilliSpot-Authorize-Only"),
];

const FRAMED_PROTOCOL_NAMES: &[(u32, &str)] = &[
    (1, "PPP"),
    (2, "SLIP"),
    (3, "ARAP"),
    (4, "Gandalf-SLML"),
    (5, "Xylogics-IPX-SLIP"),
    (6, "X.75-Synchronous"),
    (7, "GPRS-PDP-Context"),
    (9, "PPTP"),
    (255, "Ascend-ARA"),
    (256, "Ascend-MPP"),
    (257, "Ascend-EURAW"),
    (258, "Ascend-EUUI"),
    (259, "Ascend-X25"),
    (260, "Ascend-COMB"),
    (261, "Ascend-FR"),
    (262, "Ascend-MP"),
    (263, "Ascend-FR-CIR"),
    (0x0110_0002, "Bintec-X25"),
    (0x0110_0003, "Bintec-X25-PPP"),
    (0x0110_0004, "Bintec-IP-LAPB"),
    (0x0110_0006, "Bintec-IP-HDLC"),
    (0x0110_0007, "Bintec-MPR-LAPB"),
    (0x0110_0008, "Bintec-MPR-HDLC"),
    (0x0110_0009, "Bintec-FRAME-RELAY"),
    (0x0110_000a, "Bintec-X31-BCHAN"),
    (0x0110_000b, "Bintec-X75-PPP"),
    (0x0110_000c, "Bintec-X75BTX-PPP"),
    (0x0110_000d, "Bintec-X25-NOSIG"),
    (0x0110_000e, "Bintec-X25-PPP-OPT"),
];

const ACCT_AUTHENTIC_NAMES: &[(u32, &str)] =
    &[(1, "RADIUS"), (2, "Local"), (3, "Remote"), (4, "Diameter")];

const ACCT_STATUS_TYPE_NAMES: &[(u32, &str)] = &[
    (1, "Start"),
    (2, "Stop"),
    (3, "Interim-Update"),
    (7, "Accounting-On"),
    (8, "Accounting-Off"),
    (9, "Tunnel-Start"),
    (10, "Tunnel-Stop"),
    (11, "Tunnel-Reject"),
    (12, "Tunnel-Link-Start"),
    (13, "Tunnel-Link-Stop"),
    (14, "Tunnel-Link-Reject"),
    (15, "Failed"),
];

const ACCT_TERMINATE_CAUSE_NAMES: &[(u32, &str)] = &[
    (1, "User-Request"),
    (2, "Lost-Carrier"),
    (3, "Lost-Service"),
    (4, "Idle-Timeout"),
    (5, "Session-Timeout"),
    (6, "Admin-Reset"),
    (7, "Admin-Reboot"),
    (8, "Port-Error"),
    (9, "NAS-Error"),
    (10, "NAS-Request"),
    (11, "NAS-Reboot"),
    (12, "Port-Unneeded"),
    (13, "Port-Preempted"),
    (14, "Port-Suspended"),
    (15, "Service-Unavailable"),
    (16, "Callback"),
    (17, "User-Error"),
    (18, "Host-Request"),
    (19, "Supplicant-Restart"),
    (20, "Reauthentication-Failure"),
    (21, "Port-Reinit"),
    (22, "Port-Disabled"),
];

const NAS_PORT_TYPE_NAMES: &[(u32, &str)] = &[
    (0, "Async"),
    (1, "Sync"),
    (2, "ISDN"),
    (3, "ISDN-V120"),
    (4, "ISDN-V110"),
    (5, "Virtual"),
    (6, "PIAFS"),
    (7, "HDLC-Clear-Channel"),
    (8, "X.25"),
    (9, "X.75"),
    (10, "G.3-Fax"),
    (11, "SDSL"),
    (12, "ADSL-CAP"),
    (13, "ADSL-DMT"),
    (14, "IDSL"),
    (15, "Ethernet"),
    (16, "xDSL"),
    (17, "Cable"),
    (18, "Wireless-Other"),
    (19, "Wireless-802.11"),
    (20, "Token-Ring"),
    (21, "FDDI"),
    (22, "Wireless-CDMA2000"),
    (23, "Wireless-UMTS"),
    (24, "Wireless-1X-EV"),
    (25, "IAPP"),
    (26, "FTTP"),
    (27, "Wireless-802.16"),
    (28, "Wireless-802.20"),
    (29, "Wireless-802.22"),
    (30, "PPPoA"),
    (31, "PPPoEoA"),
    (32, "PPPoEoE"),
    (33, "PPPoEoVLAN"),
    (34, "PPPoEoQinQ"),
    (35, "xPON"),
    (36, "Wireless-XGP"),
];

/// The enumerated attributes radacctd stores by name.
#[derive(Debug, Clone, Copy)]
pub enum Enumerated {
    ServiceType,
    FramedProtocol,
    AcctAuthentic,
    AcctStatusType,
    AcctTerminateCause,
    NasPortType,
}

/// The dictionary name of `value`, or its decimal number when the dictionary has none.
pub fn name(attribute: Enumerated, value: u32) -> String {
    let table = match attribute {
        Enumerated::ServiceType => SERVICE_TYPE_NAMES,
        Enumerated::FramedProtocol => FRAMED_PROTOCOL_NAMES,
        Enumerated::AcctAuthentic => ACCT_AUTHENTIC_NAMES,
        Enumerated::AcctStatusType => ACCT_STATUS_TYPE_NAMES,
        Enumerated::AcctTerminateCause => ACCT_TERMINATE_CAUSE_NAMES,
        Enumerated::NasPortType => NAS_PORT_TYPE_NAMES,
    };
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_freeradius_dictionary() {
        assert_eq!(name(Enumerated::NasPortType, 19), "Wireless-802.11");
        assert_eq!(name(Enumerated::NasPortType, 15), "Ethernet");
        assert_eq!(name(Enumerated::NasPortType, 5), "Virtual");
        assert_eq!(name(Enumerated::AcctTerminateCause, 11), "NAS-Reboot");
        assert_eq!(name(Enumerated::ServiceType, 2), "Framed-User");
        assert_eq!(name(Enumerated::NasPortType, 9999), "9999");
        // FreeRADIUS 3.2's dictionary: the last name loaded wins, vendors name some values,
        // newer registrations are numbers.
        assert_eq!(name(Enumerated::ServiceType, 12), "Sip-session");
        assert_eq!(name(Enumerated::FramedProtocol, 256), "Ascend-MPP");
        assert_eq!(name(Enumerated::NasPortType, 37), "37");
    }
}
