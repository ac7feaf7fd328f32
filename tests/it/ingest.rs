//! The accounting ladder of SPEC §3 through real UDP packets, checked in `radacct` rows.

use std::time::Duration;

use radacctd::metrics::DropReason;
use radacctd::radius::dict::{self, status};

use crate::both_backends;
use crate::harness::{eventually, spawn_app, spawn_app_on, Backend, Nas, TestDb};

/// A recent event time, fixed for the test (each test runs on its own thread): the
/// stale-session reaper runs during the tests and would close sessions that look old.
fn t0() -> u32 {
    thread_local! {
        static T0: u32 = (chrono::Utc::now().timestamp() - 100) as u32;
    }
    T0.with(|t| *t)
}

both_backends!(
    start_interim_stop_keep_one_row_with_freeradius_values,
    duplicate_start_updates_the_existing_row,
    interim_without_start_inserts_a_row_that_started_session_time_ago,
    stop_without_start_inserts_a_closed_row,
    late_packets_never_reopen_a_stopped_session,
    the_last_stop_wins,
    accounting_on_closes_only_that_nas_sessions_started_before_it,
    accounting_off_without_nas_address_uses_the_source_address,
    a_retransmit_is_answered_from_the_cache_and_applied_once,
    gigawords_ipv6_and_class_are_stored,
    acct_delay_time_shifts_the_event_time,
    every_user_name_gets_a_users_row,
    bad_packets_are_dropped_counted_and_change_nothing,
    status_server_is_answered,
    stale_sessions_are_closed_at_their_last_update,
    many_sessions_in_one_burst_are_all_stored,
);

async fn start_interim_stop_keep_one_row_with_freeradius_values(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "alice", "sess-1")
            .u32(dict::EVENT_TIMESTAMP, t0())
            .string(dict::CALLING_STATION_ID, "00-11-22-33-44-55")
            .string(dict::CONNECT_INFO, "1000BASE-T")
            .u32(dict::SERVICE_TYPE, 2)
            .u32(dict::FRAMED_PROTOCOL, 1)
            .u32(dict::ACCT_AUTHENTIC, 1)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 10].into()),
    )
    .await;
    let s = app.session("sess-1").await;
    assert_eq!(s.username.as_deref(), Some("alice"));
    assert_eq!(s.nasipaddress, "192.0.2.1");
    assert_eq!(s.nasportid.as_deref(), Some("7"));
    assert_eq!(s.nasporttype.as_deref(), Some("Ethernet"));
    assert_eq!(s.acctstarttime, Some(i64::from(t0())));
    assert_eq!(s.acctupdatetime, Some(i64::from(t0())));
    assert_eq!(s.acctstoptime, None);
    assert_eq!(s.acctsessiontime, Some(0));
    assert_eq!(s.acctinputoctets, Some(0));
    assert_eq!(s.acctauthentic.as_deref(), Some("RADIUS"));
    assert_eq!(s.servicetype.as_deref(), Some("Framed-User"));
    assert_eq!(s.framedprotocol.as_deref(), Some("PPP"));
    assert_eq!(s.connectinfo_start.as_deref(), Some("1000BASE-T"));
    assert_eq!(s.connectinfo_stop, None);
    assert_eq!(s.calledstationid.as_deref(), Some(""));
    assert_eq!(s.callingstationid.as_deref(), Some("00-11-22-33-44-55"));
    assert_eq!(s.framedipaddress.as_deref(), Some("100.64.0.10"));
    assert_eq!(s.acctterminatecause, None);
    assert_eq!(s.realm, None);
    assert_eq!(s.acctuniqueid.len(), 32);

    nas.send(
        nas.session(status::INTERIM_UPDATE, "alice", "sess-1")
            .u32(dict::EVENT_TIMESTAMP, t0() + 300)
            .u32(dict::ACCT_SESSION_TIME, 300)
            .u32(dict::ACCT_INPUT_OCTETS, 1000)
            .u32(dict::ACCT_OUTPUT_OCTETS, 2000)
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, 11].into()),
    )
    .await;
    let s = app.session("sess-1").await;
    assert_eq!(s.acctupdatetime, Some(i64::from(t0() + 300)));
    assert_eq!(s.acctinterval, Some(300));
    assert_eq!(s.acctsessiontime, Some(300));
    assert_eq!(s.acctinputoctets, Some(1000));
    assert_eq!(s.acctoutputoctets, Some(2000));
    assert_eq!(s.framedipaddress.as_deref(), Some("100.64.0.11"));
    assert_eq!(s.acctstoptime, None);

    nas.send(
        nas.session(status::STOP, "alice", "sess-1")
            .u32(dict::EVENT_TIMESTAMP, t0() + 500)
            .u32(dict::ACCT_SESSION_TIME, 500)
            .u32(dict::ACCT_INPUT_OCTETS, 3000)
            .u32(dict::ACCT_OUTPUT_OCTETS, 4000)
            .u32(dict::ACCT_TERMINATE_CAUSE, 1)
            .string(dict::CONNECT_INFO, "bye"),
    )
    .await;
    let s = app.session("sess-1").await;
    assert_eq!(s.acctstoptime, Some(i64::from(t0() + 500)));
    assert_eq!(s.acctupdatetime, Some(i64::from(t0() + 500)));
    assert_eq!(s.acctsessiontime, Some(500));
    assert_eq!(s.acctinputoctets, Some(3000));
    assert_eq!(s.acctterminatecause.as_deref(), Some("User-Request"));
    assert_eq!(s.connectinfo_stop.as_deref(), Some("bye"));
    // Stop without Framed-IP-Address clears it, as FreeRADIUS's stop query does.
    assert_eq!(s.framedipaddress, None);
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

async fn duplicate_start_updates_the_existing_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "bob", "dup")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    let first = app.session("dup").await;
    nas.send(
        nas.session(status::START, "bob", "dup")
            .u32(dict::EVENT_TIMESTAMP, t0() + 10)
            .string(dict::CONNECT_INFO, "again"),
    )
    .await;
    let again = app.session("dup").await;
    assert_eq!(again.radacctid, first.radacctid);
    assert_eq!(again.acctstarttime, Some(i64::from(t0() + 10)));
    assert_eq!(again.connectinfo_start.as_deref(), Some("again"));
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

async fn interim_without_start_inserts_a_row_that_started_session_time_ago(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::INTERIM_UPDATE, "carol", "no-start")
            .u32(dict::EVENT_TIMESTAMP, t0() + 600)
            .u32(dict::ACCT_SESSION_TIME, 600)
            .u32(dict::ACCT_INPUT_OCTETS, 5),
    )
    .await;
    let s = app.session("no-start").await;
    assert_eq!(s.acctstarttime, Some(i64::from(t0())));
    assert_eq!(s.acctupdatetime, Some(i64::from(t0() + 600)));
    assert_eq!(s.acctstoptime, None);
    assert_eq!(s.acctsessiontime, Some(600));
    assert_eq!(s.acctinputoctets, Some(5));
    app.stop().await;
}

async fn stop_without_start_inserts_a_closed_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::STOP, "dave", "only-stop")
            .u32(dict::EVENT_TIMESTAMP, t0() + 100)
            .u32(dict::ACCT_SESSION_TIME, 100)
            .u32(dict::ACCT_TERMINATE_CAUSE, 4),
    )
    .await;
    let s = app.session("only-stop").await;
    assert_eq!(s.acctstarttime, Some(i64::from(t0())));
    assert_eq!(s.acctstoptime, Some(i64::from(t0() + 100)));
    assert_eq!(s.acctsessiontime, Some(100));
    assert_eq!(s.acctterminatecause.as_deref(), Some("Idle-Timeout"));
    app.stop().await;
}

async fn late_packets_never_reopen_a_stopped_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "erin", "late")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "erin", "late")
            .u32(dict::EVENT_TIMESTAMP, t0() + 100)
            .u32(dict::ACCT_SESSION_TIME, 100)
            .u32(dict::ACCT_INPUT_OCTETS, 77),
    )
    .await;
    let stopped = app.session("late").await;

    // A late Interim-Update changes nothing.
    nas.send(
        nas.session(status::INTERIM_UPDATE, "erin", "late")
            .u32(dict::EVENT_TIMESTAMP, t0() + 50)
            .u32(dict::ACCT_SESSION_TIME, 50)
            .u32(dict::ACCT_INPUT_OCTETS, 9),
    )
    .await;
    assert_eq!(app.session("late").await, stopped);

    // A late Start rewrites only the start fields; the session stays stopped.
    nas.send(
        nas.session(status::START, "erin", "late")
            .u32(dict::EVENT_TIMESTAMP, t0() + 1)
            .string(dict::CONNECT_INFO, "late-start"),
    )
    .await;
    let s = app.session("late").await;
    assert_eq!(s.acctstoptime, Some(i64::from(t0() + 100)));
    assert_eq!(s.acctstarttime, Some(i64::from(t0() + 1)));
    assert_eq!(s.connectinfo_start.as_deref(), Some("late-start"));
    assert_eq!(s.acctinputoctets, Some(77));
    assert_eq!(app.sessions().await.len(), 1);
    app.stop().await;
}

async fn the_last_stop_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "fay", "two-stops")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "fay", "two-stops")
            .u32(dict::EVENT_TIMESTAMP, t0() + 100)
            .u32(dict::ACCT_SESSION_TIME, 100)
            .u32(dict::ACCT_TERMINATE_CAUSE, 1),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "fay", "two-stops")
            .u32(dict::EVENT_TIMESTAMP, t0() + 120)
            .u32(dict::ACCT_SESSION_TIME, 120)
            .u32(dict::ACCT_OUTPUT_OCTETS, 55)
            .u32(dict::ACCT_TERMINATE_CAUSE, 2),
    )
    .await;
    let s = app.session("two-stops").await;
    assert_eq!(s.acctstoptime, Some(i64::from(t0() + 120)));
    assert_eq!(s.acctsessiontime, Some(120));
    assert_eq!(s.acctoutputoctets, Some(55));
    assert_eq!(s.acctterminatecause.as_deref(), Some("Lost-Carrier"));
    app.stop().await;
}

async fn accounting_on_closes_only_that_nas_sessions_started_before_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    for (sid, start) in [("a1", t0()), ("a2", t0() + 10), ("after", t0() + 1000)] {
        nas.send(
            nas.session(status::START, "gil", sid)
                .u32(dict::EVENT_TIMESTAMP, start),
        )
        .await;
    }
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "hal")
            .string(dict::ACCT_SESSION_ID, "other-nas")
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 99].into())
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    nas.send(
        nas.request(status::ACCOUNTING_ON)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
            .u32(dict::EVENT_TIMESTAMP, t0() + 500),
    )
    .await;
    for sid in ["a1", "a2"] {
        let s = app.session(sid).await;
        assert_eq!(s.acctstoptime, Some(i64::from(t0() + 500)), "{sid}");
        assert_eq!(s.acctterminatecause.as_deref(), Some("NAS-Reboot"));
        assert_eq!(
            s.acctsessiontime,
            Some(i64::from(t0() + 500) - s.acctstarttime.unwrap())
        );
    }
    assert_eq!(app.session("after").await.acctstoptime, None);
    assert_eq!(app.session("other-nas").await.acctstoptime, None);

    // Accounting-Off with its own terminate cause.
    nas.send(
        nas.request(status::ACCOUNTING_OFF)
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 99].into())
            .u32(dict::ACCT_TERMINATE_CAUSE, 6)
            .u32(dict::EVENT_TIMESTAMP, t0() + 600),
    )
    .await;
    let s = app.session("other-nas").await;
    assert_eq!(s.acctstoptime, Some(i64::from(t0() + 600)));
    assert_eq!(s.acctterminatecause.as_deref(), Some("Admin-Reset"));
    app.stop().await;
}

async fn accounting_off_without_nas_address_uses_the_source_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "ivy")
            .string(dict::ACCT_SESSION_ID, "src")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    assert_eq!(app.session("src").await.nasipaddress, "127.0.0.1");
    nas.send(
        nas.request(status::ACCOUNTING_OFF)
            .u32(dict::EVENT_TIMESTAMP, t0() + 5),
    )
    .await;
    assert_eq!(
        app.session("src").await.acctstoptime,
        Some(i64::from(t0() + 5))
    );
    app.stop().await;
}

async fn a_retransmit_is_answered_from_the_cache_and_applied_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "jay", "rt")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    let interim = nas
        .session(status::INTERIM_UPDATE, "jay", "rt")
        .u32(dict::EVENT_TIMESTAMP, t0() + 60)
        .u32(dict::ACCT_SESSION_TIME, 60)
        .encode();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = nas
        .send_on(&socket, &interim, Duration::from_secs(10))
        .await
        .expect("answer");
    let after_first = app.session("rt").await;
    assert_eq!(after_first.acctinterval, Some(60));
    let again = nas
        .send_on(&socket, &interim, Duration::from_secs(10))
        .await
        .expect("answer to retransmit");
    assert_eq!(first, again, "the retransmit gets the same response");
    // Applied twice, acctinterval would have become 0.
    assert_eq!(app.session("rt").await, after_first);
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("radacctd_retransmits_answered_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

async fn gigawords_ipv6_and_class_are_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    let class = b"ai:0123456789abcdef0123456789abcdef";
    nas.send(
        nas.request(status::INTERIM_UPDATE)
            .string(dict::USER_NAME, "kim")
            .string(dict::ACCT_SESSION_ID, "v6")
            .ipv6(dict::NAS_IPV6_ADDRESS, "2001:db8::1".parse().unwrap())
            .string(dict::NAS_PORT_ID, "ae0.100:200")
            .u32(dict::EVENT_TIMESTAMP, t0() + 10)
            .u32(dict::ACCT_SESSION_TIME, 10)
            .u32(dict::ACCT_INPUT_OCTETS, 7)
            .u32(dict::ACCT_INPUT_GIGAWORDS, 2)
            .u32(dict::ACCT_OUTPUT_GIGAWORDS, 1)
            .ipv6(dict::FRAMED_IPV6_ADDRESS, "2001:db8:1::5".parse().unwrap())
            .ipv6_prefix(
                dict::FRAMED_IPV6_PREFIX,
                "2001:db8:1::".parse().unwrap(),
                64,
            )
            .ipv6_prefix(
                dict::DELEGATED_IPV6_PREFIX,
                "2001:db8:ff00::".parse().unwrap(),
                56,
            )
            .bytes(dict::FRAMED_INTERFACE_ID, &[0, 0, 0, 0, 0, 0, 0, 5])
            .bytes(dict::CLASS, class),
    )
    .await;
    let s = app.session("v6").await;
    assert_eq!(s.nasipaddress, "2001:db8::1");
    assert_eq!(s.nasportid.as_deref(), Some("ae0.100:200"));
    assert_eq!(s.acctinputoctets, Some((2 << 32) + 7));
    assert_eq!(s.acctoutputoctets, Some(1 << 32));
    assert_eq!(s.framedipv6address.as_deref(), Some("2001:db8:1::5"));
    assert_eq!(s.framedipv6prefix.as_deref(), Some("2001:db8:1::/64"));
    assert_eq!(s.delegatedipv6prefix.as_deref(), Some("2001:db8:ff00::/56"));
    assert_eq!(s.framedinterfaceid.as_deref(), Some("0:0:0:5"));
    assert_eq!(
        s.class.as_deref(),
        Some(format!("0x{}", hex::encode(class)).as_str())
    );
    // The Class `ai:` case of acct_unique: md5("<32 hex digits>,<Acct-Session-Id>").
    use md5::Digest;
    let expected = hex::encode(md5::Md5::digest(b"0123456789abcdef0123456789abcdef,v6"));
    assert_eq!(s.acctuniqueid, expected);
    app.stop().await;
}

async fn acct_delay_time_shifts_the_event_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    let before = chrono::Utc::now().timestamp();
    nas.send(
        nas.session(status::START, "lee", "delayed")
            .u32(dict::ACCT_DELAY_TIME, 3600),
    )
    .await;
    let after = chrono::Utc::now().timestamp();
    let start = app.session("delayed").await.acctstarttime.unwrap();
    assert!(
        start >= before - 3600 && start <= after - 3600,
        "{start} not in [{before}-3600, {after}-3600]"
    );
    app.stop().await;
}

async fn every_user_name_gets_a_users_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "mo", "u1")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    nas.send(
        nas.session(status::START, "mo", "u2")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    nas.send(
        nas.session(status::STOP, "nia", "u3")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;
    assert_eq!(
        app.user_logins().await,
        vec!["mo".to_owned(), "nia".to_owned()]
    );
    app.stop().await;
}

async fn bad_packets_are_dropped_counted_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = app.nas();
    // Wrong secret.
    let wrong = Nas::new(app.radius, "not-the-secret");
    good.send_unanswered(&wrong.session(status::START, "x", "bad-secret").encode())
        .await;
    // Truncated (Length larger than the datagram).
    let bytes = good.session(status::START, "x", "short").encode();
    good.send_unanswered(&bytes[..bytes.len() - 3]).await;
    // A bad attribute length.
    let mut bad_attr = good.session(status::START, "x", "bad-attr").encode();
    bad_attr[21] = 0;
    good.send_unanswered(&bad_attr).await;
    // Access-Request to the accounting port.
    let mut access = good.session(status::START, "x", "access").encode();
    access[0] = 1;
    good.send_unanswered(&access).await;
    // No Acct-Status-Type.
    let no_status = radacctd::radius::builder::Request::accounting(1, b"testing123", 9).encode();
    let mut stripped = no_status.clone();
    // Rebuild without the status attribute: header + no attributes, re-signed.
    stripped.truncate(20);
    stripped[3] = 20;
    let stripped = resign(&stripped, b"testing123");
    good.send_unanswered(&stripped).await;

    assert!(app.sessions().await.is_empty());
    assert!(app.user_logins().await.is_empty());
    let m = &app.metrics;
    assert_eq!(m.dropped(DropReason::BadAuthenticator), 1);
    assert_eq!(m.dropped(DropReason::Malformed), 3);
    assert_eq!(m.dropped(DropReason::UnsupportedCode), 1);
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("radacctd_dropped_packets_total{reason=\"malformed\"} 3"),
        "{text}"
    );
    app.stop().await;
}

fn resign(bytes: &[u8], secret: &[u8]) -> Vec<u8> {
    use md5::Digest;
    let mut out = bytes.to_vec();
    let mut h = md5::Md5::new();
    h.update(&out[..4]);
    h.update([0u8; 16]);
    h.update(&out[20..]);
    h.update(secret);
    out[4..20].copy_from_slice(&h.finalize());
    out
}

async fn status_server_is_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    // Status-Server with a Message-Authenticator, built by hand as a NAS would.
    use hmac::Mac;
    let secret = b"testing123";
    let mut bytes = vec![12u8, 42, 0, 38];
    bytes.extend_from_slice(&[7u8; 16]);
    bytes.extend_from_slice(&[80, 18]);
    bytes.extend_from_slice(&[0u8; 16]);
    let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(secret).unwrap();
    mac.update(&bytes);
    let ma = mac.finalize().into_bytes();
    bytes[22..38].copy_from_slice(&ma);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&bytes, app.radius).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("Status-Server answered")
        .unwrap();
    assert_eq!(buf[0], 5, "Accounting-Response");
    assert!(radius::core::packet::Packet::is_authentic_response(
        &buf[..n],
        &bytes,
        secret
    ));
    app.stop().await;
}

async fn stale_sessions_are_closed_at_their_last_update(backend: Backend) {
    // Sessions are current now; the reaper's statement is then run "later" by passing a future
    // `now` (the background reaper, which uses the real clock, leaves them alone).
    let app = spawn_app(backend).await;
    let nas = app.nas();
    let now = chrono::Utc::now().timestamp() as u32;
    // Interim after 300 s: stale 3 x 300 + 60 s after its last update.
    nas.send(
        nas.session(status::START, "ola", "with-interval")
            .u32(dict::EVENT_TIMESTAMP, now - 300),
    )
    .await;
    nas.send(
        nas.session(status::INTERIM_UPDATE, "ola", "with-interval")
            .u32(dict::EVENT_TIMESTAMP, now)
            .u32(dict::ACCT_SESSION_TIME, 300),
    )
    .await;
    // Acct-Interim-Interval sent by the NAS is used when known: 3 x 2000 + 60 s.
    nas.send(
        nas.session(status::START, "ola", "nas-interval")
            .u32(dict::EVENT_TIMESTAMP, now)
            .u32(dict::ACCT_INTERIM_INTERVAL, 2000),
    )
    .await;
    // No interval: stale after stale_after.
    nas.send(
        nas.session(status::START, "ola", "no-interval")
            .u32(dict::EVENT_TIMESTAMP, now),
    )
    .await;
    nas.send(
        nas.session(status::START, "ola", "fresh")
            .u32(dict::EVENT_TIMESTAMP, now + 900),
    )
    .await;

    let at = |secs: u32| i64::from(now + secs);
    let store = app.store();
    let closed = |now, stale_after| {
        let store = store.clone();
        async move { store.close_stale(now, stale_after).await.unwrap() }
    };
    assert_eq!(closed(at(959), Some(7200)).await, Vec::<String>::new());
    let s = app.session("with-interval").await;
    assert_eq!(closed(at(1000), Some(7200)).await, vec![s.acctuniqueid]);
    let s = app.session("with-interval").await;
    assert_eq!(s.acctstoptime, Some(i64::from(now)));
    assert_eq!(s.acctterminatecause.as_deref(), Some("Stale-Session"));
    assert_eq!(s.acctsessiontime, Some(300));
    for sid in ["nas-interval", "no-interval", "fresh"] {
        assert_eq!(app.session(sid).await.acctstoptime, None, "{sid}");
    }
    assert_eq!(closed(at(7300), Some(7200)).await.len(), 2);
    assert_eq!(
        app.session("nas-interval").await.acctstoptime,
        Some(i64::from(now))
    );
    assert_eq!(
        app.session("no-interval").await.acctstoptime,
        Some(i64::from(now))
    );
    assert_eq!(app.session("fresh").await.acctstoptime, None);
    // With stale_after off, a session without a known interval is never stale.
    assert!(closed(at(1_000_000), None).await.is_empty());
    assert_eq!(app.session("fresh").await.acctstoptime, None);
    app.stop().await;
}

async fn many_sessions_in_one_burst_are_all_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let nas = std::sync::Arc::new(app.nas());
    let t0 = t0();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let nas = nas.clone();
        tasks.spawn(async move {
            let sid = format!("burst-{i}");
            let user = format!("user{}", i % 20);
            nas.send(
                nas.session(status::START, &user, &sid)
                    .u32(dict::EVENT_TIMESTAMP, t0),
            )
            .await;
            nas.send(
                nas.session(status::INTERIM_UPDATE, &user, &sid)
                    .u32(dict::EVENT_TIMESTAMP, t0 + 60)
                    .u32(dict::ACCT_SESSION_TIME, 60),
            )
            .await;
            if i % 2 == 0 {
                nas.send(
                    nas.session(status::STOP, &user, &sid)
                        .u32(dict::EVENT_TIMESTAMP, t0 + 90)
                        .u32(dict::ACCT_SESSION_TIME, 90),
                )
                .await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let rows = app.sessions().await;
    assert_eq!(rows.len(), 200);
    assert!(rows
        .iter()
        .all(|s| s.acctupdatetime >= Some(i64::from(t0 + 60))));
    assert_eq!(
        rows.iter().filter(|s| s.acctstoptime.is_some()).count(),
        100
    );
    assert_eq!(app.user_logins().await.len(), 20);
    app.stop().await;
}

/// PostgreSQL commits two batches at once. An Accounting-On that takes long (here: stuck on a
/// row lock another client holds on one of its NAS's sessions, as closing 100,000 sessions
/// takes seconds) holds back only its own NAS: another NAS is answered meanwhile, and the
/// rebooting NAS's next packet is answered only after the Accounting-On has committed.
/// (SQLite has one writer: there everything waits its turn.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_accounting_on_holds_back_its_own_nas_only() {
    let app = spawn_app(Backend::Postgres).await;
    let nas = app.nas();
    nas.send(
        nas.session(status::START, "ivy", "rebooting-1")
            .u32(dict::EVENT_TIMESTAMP, t0()),
    )
    .await;

    let db = sqlx::PgPool::connect(&app.db.url).await.expect("connect");
    let mut lock = db.begin().await.expect("begin");
    sqlx::query("SELECT radacctid FROM radacct WHERE acctsessionid = 'rebooting-1' FOR UPDATE")
        .fetch_one(&mut *lock)
        .await
        .expect("lock the session's row");

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let on = nas
        .request(status::ACCOUNTING_ON)
        .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
        .u32(dict::EVENT_TIMESTAMP, t0() + 100)
        .encode();
    assert!(
        nas.send_on(&socket, &on, Duration::from_millis(500))
            .await
            .is_none(),
        "answered before its UPDATE could run"
    );

    // Another NAS is served while the Accounting-On waits.
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "jon")
            .string(dict::ACCT_SESSION_ID, "other-nas")
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 99].into())
            .u32(dict::EVENT_TIMESTAMP, t0() + 101),
    )
    .await;
    assert_eq!(app.session("other-nas").await.acctstoptime, None);

    // The rebooting NAS's next session waits for its Accounting-On.
    let after = nas
        .session(status::START, "ivy", "rebooting-2")
        .u32(dict::EVENT_TIMESTAMP, t0() + 102)
        .encode();
    let after_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        nas.send_on(&after_socket, &after, Duration::from_millis(500))
            .await
            .is_none(),
        "a packet after the Accounting-On was answered before it"
    );

    lock.rollback().await.expect("release the lock");
    assert!(
        nas.send_on(&socket, &on, Duration::from_secs(10))
            .await
            .is_some(),
        "the Accounting-On was not answered once the lock was gone"
    );
    assert!(
        nas.send_on(&after_socket, &after, Duration::from_secs(10))
            .await
            .is_some(),
        "the packet after it was not answered"
    );
    let closed = app.session("rebooting-1").await;
    assert_eq!(closed.acctstoptime, Some(i64::from(t0() + 100)));
    assert_eq!(
        app.session("rebooting-2").await.acctstoptime,
        None,
        "opened after the reboot"
    );
    db.close().await;
    app.stop().await;
}

/// SQLite: committed pages reach the database file through the checkpointer task, while the
/// WAL is far below the size at which a commit checkpoints by itself (SQLite's default: 1,000
/// pages, reached several times a second under load, each time inside a commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_are_checkpointed_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("radacctd.db");
    let app = spawn_app_on(TestDb::sqlite_at(&path), |_| {}).await;
    let nas = app.nas();
    for i in 0..50 {
        nas.send(
            nas.session(status::START, &format!("wal{i}"), &format!("wal-{i}"))
                .u32(dict::EVENT_TIMESTAMP, t0()),
        )
        .await;
    }
    let wal_pages = std::fs::metadata(dir.path().join("radacctd.db-wal"))
        .map(|m| m.len() / 4096)
        .unwrap_or(0);
    assert!(wal_pages < 1_000, "WAL of {wal_pages} pages");
    // The database file alone (a copy without its WAL) holds what has been checkpointed.
    let in_file = || async {
        let copy = dir
            .path()
            .join(format!("copy-{}.db", uuid::Uuid::new_v4().simple()));
        std::fs::copy(&path, &copy).ok()?;
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            copy.display()
        ))
        .await
        .ok()?;
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM radacct")
            .fetch_one(&mut conn)
            .await
            .ok()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            in_file().await == Some(50)
        })
        .await,
        "the database file holds {:?} of the 50 sessions",
        in_file().await
    );
    app.stop().await;
}

/// PostgreSQL: once a good part of `radacct` has changed, radacctd refreshes its planner
/// statistics itself (an ANALYZE, seen as `last_analyze`; autovacuum's would be
/// `last_autoanalyze`), so that plans do not go on assuming the old share of open sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_are_refreshed_after_many_changes() {
    let app = spawn_app(Backend::Postgres).await;
    let db = sqlx::PgPool::connect(&app.db.url).await.expect("connect");
    let analyzed = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'radacct'",
        )
        .fetch_one(&db)
        .await
        .expect("pg_stat_user_tables")
    };
    assert!(!analyzed().await, "analyzed before any change");
    let nas = std::sync::Arc::new(app.nas());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_200u32 {
        let nas = nas.clone();
        tasks.spawn(async move {
            nas.send(
                nas.session(status::START, &format!("st{}", i % 50), &format!("st-{i}"))
                    .u32(dict::EVENT_TIMESTAMP, t0()),
            )
            .await;
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(40), analyzed).await,
        "radacct was not analyzed after 1,200 new rows"
    );
    app.stop().await;
}

/// SQLite: radacctd's connections keep statement journals in memory (written to a temporary
/// file, they took a fifth of the writer's thread in a storm of Starts), in WAL mode with
/// `synchronous = NORMAL` and the busy timeout the writer's retries count on.
#[tokio::test]
async fn sqlite_connections_keep_statement_journals_in_memory() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Sqlite).await;
    let options = radacctd::store::sqlite::connect_options(&db.url).expect("options");
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect");
    let mut pragmas = Vec::new();
    for pragma in ["temp_store", "synchronous", "busy_timeout"] {
        let value: i64 = sqlx::query_scalar(&format!("PRAGMA {pragma}"))
            .fetch_one(&mut conn)
            .await
            .expect(pragma);
        pragmas.push(value);
    }
    // temp_store 2 = MEMORY, synchronous 1 = NORMAL.
    assert_eq!(pragmas, [2, 1, 5000]);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal_mode");
    assert_eq!(journal, "wal");
    conn.close().await.expect("close");
}

/// PostgreSQL: the write path finds its rows by key even where the planner has plans from a
/// time when `radacct` was empty. A prepared statement gets a generic plan after five runs,
/// made from the statistics of that moment; made on an empty table it is a scan of the whole
/// table, and it was kept as the table grew, for every batch, until the next ANALYZE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_path_probes_by_key_after_starting_empty() {
    const SESSIONS: u32 = 30;
    const BULK: i64 = 20_000;
    let app = spawn_app(Backend::Postgres).await;
    let db = sqlx::PgPool::connect(&app.db.url).await.expect("connect");
    let nas = app.nas();
    // On the empty table, enough batches (one packet each) for the writer's connections to
    // settle on generic plans for Starts and Interim-Updates.
    for i in 0..SESSIONS {
        nas.send(
            nas.session(status::START, "early", &format!("early-{i}"))
                .u32(dict::EVENT_TIMESTAMP, t0()),
        )
        .await;
    }
    let interims = |step: u32| {
        let nas = &nas;
        async move {
            for i in 0..SESSIONS {
                nas.send(
                    nas.session(status::INTERIM_UPDATE, "early", &format!("early-{i}"))
                        .u32(dict::EVENT_TIMESTAMP, t0() + step)
                        .u32(dict::ACCT_SESSION_TIME, step),
                )
                .await;
            }
        }
    };
    interims(60).await;
    // The table grows (no ANALYZE yet: radacctd's runs every 15 s, and these Interim-Updates
    // follow at once).
    sqlx::query(
        "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, \
         acctstarttime, acctupdatetime) SELECT 'bulk' || g, md5('bulk' || g), 'bulk' || g, \
         '127.0.0.1', now(), now() FROM generate_series(1, $1) g",
    )
    .bind(BULK)
    .execute(&db)
    .await
    .expect("bulk insert");
    let counters = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT n_tup_upd, seq_tup_read FROM pg_stat_user_tables WHERE relname = 'radacct'",
        )
        .fetch_one(&db)
        .await
        .expect("pg_stat_user_tables")
    };
    // Reads before this moment that are not counted yet are those of the 60 packets above, on a
    // table of at most 30 rows.
    let (_, read) = counters().await;
    interims(120).await;
    // Each backend reports its counters within about 10 s of its last statement: wait until
    // every Interim-Update is counted (the first round's and this one's).
    let reported = || async { counters().await.0 >= 2 * i64::from(SESSIONS) };
    assert!(
        eventually(Duration::from_secs(30), reported).await,
        "the Interim-Updates were not counted"
    );
    // A scan of the table would read all of it (20,030 rows) per Interim-Update; the reaper and
    // the archiver may each scan it once meanwhile.
    let scanned = counters().await.1 - read;
    assert!(
        scanned < 3 * BULK,
        "{scanned} rows read by sequential scans for {SESSIONS} Interim-Updates"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM radacct WHERE acctsessionid LIKE 'early-%' AND acctsessiontime = 120"
        )
        .fetch_one(&db)
        .await
        .expect("count"),
        i64::from(SESSIONS)
    );
    app.stop().await;
}
