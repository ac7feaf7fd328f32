//! The table of RADIUS clients allowed to send accounting: `[[radius.clients]]` from the
//! config plus rows of the `nas` table, matched by source address (IPv4-mapped IPv6 addresses
//! are normalised first), most specific network first.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::config::{normalize_ip, ClientConfig, Secret};

/// One client as the receive path needs it.
#[derive(Debug, Clone)]
pub struct Client {
    /// The network the client sends from.
    pub network: IpNet,
    /// Shared secret for authenticators.
    pub secret: Secret,
    /// Short name for logs.
    pub name: String,
    /// Port for Disconnect-Requests.
    pub coa_port: u16,
}

impl From<&ClientConfig> for Client {
    fn from(c: &ClientConfig) -> Self {
        Self {
            network: c.address,
            secret: c.secret.clone(),
            name: c.name.clone(),
            coa_port: c.coa_port,
        }
    }
}

/// An immutable set of clients, sorted most specific first.
#[derive(Debug, Default)]
pub struct ClientSet {
    clients: Vec<Client>,
}

impl ClientSet {
    /// Builds the set; on equal networks the earlier entry (the config) wins.
    pub fn new(clients: impl IntoIterator<Item = Client>) -> Self {
        let mut clients: Vec<Client> = clients.into_iter().collect();
        // Stable sort keeps config entries ahead of `nas` rows for the same network.
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
        Self { clients }
    }

    /// The client whose network holds `ip`.
    pub fn find(&self, ip: IpAddr) -> Option<&Client> {
        let ip = normalize_ip(ip);
        self.clients.iter().find(|c| c.network.contains(&ip))
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// The current client set, swapped whole when the `nas` table is reloaded.
#[derive(Debug, Default, Clone)]
pub struct Clients(Arc<RwLock<Arc<ClientSet>>>);

impl Clients {
    pub fn new(set: ClientSet) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(set))))
    }

    /// A snapshot to look clients up in.
    pub fn current(&self) -> Arc<ClientSet> {
        // A poisoned lock only means a panic while swapping an Arc; the value is still whole.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: ClientSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(net: &str, name: &str) -> Client {
        Client {
            network: crate::config::parse_net(net).unwrap(),
            secret: Secret::new("s"),
            name: name.into(),
            coa_port: 3799,
        }
    }

    #[test]
    fn the_most_specific_network_wins_and_mapped_addresses_match_ipv4() {
        let set = ClientSet::new([client("10.0.0.0/8", "wide"), client("10.1.2.3", "exact")]);
        assert_eq!(set.find("10.1.2.3".parse().unwrap()).unwrap().name, "exact");
        assert_eq!(
            set.find("::ffff:10.1.2.3".parse().unwrap()).unwrap().name,
            "exact"
        );
        assert_eq!(set.find("10.9.9.9".parse().unwrap()).unwrap().name, "wide");
        assert!(set.find("192.0.2.1".parse().unwrap()).is_none());
    }
}
