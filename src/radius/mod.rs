//! RADIUS accounting over UDP: pure protocol code ([`packet`], [`accounting`], [`dict`]), the
//! client table, the duplicate cache, and the receive loop ([`listener`]).

pub mod accounting;
pub mod builder;
pub mod clients;
pub mod coa;
pub mod dedup;
pub mod dict;
pub mod listener;
pub mod packet;
