//! Fuzzing the whole receive path (SPEC §3, §8): random datagrams and mutations of valid
//! Accounting-Requests (flipped bytes, truncation, extension, a wrong Length, wrong attribute
//! lengths, repeated attributes, wrong authenticators, a wrong secret, an unknown source) go
//! over UDP to a running node, one at a time. For every datagram the model of
//! `fuzz_cases::predict` says what must happen, and the test checks that it did: an authentic
//! answer for an authentic well-formed request; otherwise no answer, exactly one drop counted
//! under the predicted reason, and no row changed in any table. At the end the node still
//! answers a valid packet and `/healthz`, and `/metrics` shows every drop under its reason.
//!
//! proptest generates the cases from a fixed seed, so a run is repeatable, and shrinks a
//! failing case to a small one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use radacctd::metrics::DropReason;
use radacctd::radius::builder::is_accounting_response;
use radacctd::radius::dict::{self, status};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::fuzz_cases::{base_packets, cases, predict, Case, Fate, CODE_STATUS_SERVER, REASONS};
use crate::harness::{dropped_by_reason, spawn_app_with, Backend, TestApp, SECRET};

/// Cases per backend, and the seed they come from.
const CASES: u32 = 2_500;
const SEED: [u8; 32] = *b"radacctd fuzz the receive path!!";
/// How long one datagram may take to be answered or counted.
const SETTLE: Duration = Duration::from_secs(3);

both_backends!(every_datagram_is_answered_or_dropped_as_predicted_and_bad_ones_change_nothing);

#[test]
fn the_model_answers_the_base_packets_and_refuses_them_under_another_secret() {
    let secret = SECRET.as_bytes();
    for p in base_packets(secret, "t") {
        assert_eq!(predict(&p, secret, true), Fate::Answered, "{p:02x?}");
        let expected = if p[0] == CODE_STATUS_SERVER {
            DropReason::BadMessageAuthenticator
        } else {
            DropReason::BadAuthenticator
        };
        assert_eq!(predict(&p, b"other", true), Fate::Dropped(expected));
        assert_eq!(
            predict(&p, secret, false),
            Fate::Dropped(DropReason::UnknownClient)
        );
    }
}

/// The node under test and what the test knows about it.
struct Fuzz {
    app: TestApp,
    bases: Vec<Vec<u8>>,
    /// Sends as a RADIUS client (127.0.0.1).
    client: UdpSocket,
    /// Sends from an address that is no client (127.0.0.2).
    stranger: UdpSocket,
    state: Mutex<State>,
}

struct State {
    /// The tables as the last answered request left them.
    baseline: Vec<(&'static str, Vec<String>)>,
    /// Drops the test caused, by reason.
    expected_drops: BTreeMap<&'static str, u64>,
    answered: u64,
}

impl Fuzz {
    fn drops(&self) -> [u64; 9] {
        REASONS.map(|r| self.app.metrics.dropped(r))
    }

    /// Runs one case; after a failure the baseline is taken again, so that each case proptest
    /// tries while shrinking is judged on its own.
    async fn case(&self, case: &Case) -> Result<(), TestCaseError> {
        let outcome = self.try_case(case).await;
        if outcome.is_err() {
            // Let a stray answer or commit land first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut buf = [0u8; 4096];
            while self.client.try_recv_from(&mut buf).is_ok() {}
            let baseline = self.app.snapshot_all().await;
            self.state.lock().unwrap().baseline = baseline;
        }
        outcome
    }

    async fn try_case(&self, case: &Case) -> Result<(), TestCaseError> {
        let secret = SECRET.as_bytes();
        let datagram = case.datagram(&self.bases, secret);
        let fate = predict(&datagram, secret, !case.unknown_client);
        let socket = if case.unknown_client {
            &self.stranger
        } else {
            &self.client
        };

        if fate == Fate::Answered {
            // Everything dropped since the last answer changed nothing.
            let now = self.app.snapshot_all().await;
            let state = self.state.lock().unwrap();
            for ((table, before), (_, after)) in state.baseline.iter().zip(&now) {
                if before != after {
                    return Err(TestCaseError::fail(format!(
                        "dropped datagrams changed {table}:\nbefore {before:#?}\nafter {after:#?}"
                    )));
                }
            }
        }

        let before = self.drops();
        socket
            .send_to(&datagram, self.app.radius)
            .await
            .expect("send");
        let deadline = Instant::now() + SETTLE;
        let mut buf = vec![0u8; 4096];
        match fate {
            Fate::Answered => {
                let answer = tokio::time::timeout_at(deadline.into(), socket.recv_from(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok);
                let after = self.drops();
                let Some((n, _)) = answer else {
                    return Err(TestCaseError::fail(format!(
                        "no answer within {SETTLE:?}, though the model says it is authentic and \
                         well-formed: {datagram:02x?}; drops before {before:?}, after {after:?}"
                    )));
                };
                if !is_accounting_response(&buf[..n], &datagram, secret) {
                    return Err(TestCaseError::fail(format!(
                        "the answer {:02x?} is no authentic Accounting-Response to {datagram:02x?}",
                        &buf[..n]
                    )));
                }
                if after != before {
                    return Err(TestCaseError::fail(format!(
                        "answered and counted as dropped: {before:?} -> {after:?}"
                    )));
                }
                let baseline = self.app.snapshot_all().await;
                let mut state = self.state.lock().unwrap();
                state.answered += 1;
                state.baseline = baseline;
            }
            Fate::Dropped(reason) => {
                // The drop is counted synchronously in the receive loop: wait for the count, or
                // for an answer that must not come.
                let mut after = self.drops();
                while after.iter().sum::<u64>() == before.iter().sum::<u64>() {
                    if let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                        return Err(TestCaseError::fail(format!(
                            "answered with {:02x?}, but the model says drop as {}: {datagram:02x?}",
                            &buf[..n],
                            reason.as_str()
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(TestCaseError::fail(format!(
                            "neither answered nor counted within {SETTLE:?} (expected a drop as \
                             {}): {datagram:02x?}",
                            reason.as_str()
                        )));
                    }
                    tokio::task::yield_now().await;
                    after = self.drops();
                }
                let changed: Vec<(&str, u64)> = REASONS
                    .iter()
                    .zip(before.iter().zip(after))
                    .filter(|(_, (b, a))| *b != a)
                    .map(|(r, (b, a))| (r.as_str(), a - b))
                    .collect();
                if changed != [(reason.as_str(), 1)] {
                    return Err(TestCaseError::fail(format!(
                        "expected one drop as {}, counted {changed:?}: {datagram:02x?}",
                        reason.as_str()
                    )));
                }
                // No answer may be on its way: the drop happened instead of it.
                if let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                    return Err(TestCaseError::fail(format!(
                        "a dropped datagram was answered with {:02x?}: {datagram:02x?}",
                        &buf[..n]
                    )));
                }
                let mut state = self.state.lock().unwrap();
                *state.expected_drops.entry(reason.as_str()).or_default() += 1;
            }
        }
        Ok(())
    }
}

async fn every_datagram_is_answered_or_dropped_as_predicted_and_bad_ones_change_nothing(
    backend: Backend,
) {
    // Nothing in the background may change rows while the test compares them: no archiving,
    // and no session without an interval goes stale (the base packets carry no old times).
    let app = spawn_app_with(backend, |c| {
        c.accounting.archive_after = None;
        c.accounting.stale_after = None;
    })
    .await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let stranger = UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2 (the loopback network must answer on all of 127.0.0.0/8)");
    let bases = base_packets(SECRET.as_bytes(), "f");

    // The base packets are valid and open the sessions that mutations then hit.
    let nas = app.nas();
    for p in &bases {
        assert!(
            nas.send_on(&client, p, Duration::from_secs(10))
                .await
                .is_some(),
            "base packet not answered: {p:02x?}"
        );
    }
    assert_eq!(app.sessions().await.len(), 2, "the two base sessions");
    let metrics_before = dropped_by_reason(&app.metrics_text().await);

    let baseline = app.snapshot_all().await;
    let fuzz = Arc::new(Fuzz {
        app,
        bases,
        client,
        stranger,
        state: Mutex::new(State {
            baseline,
            expected_drops: BTreeMap::new(),
            answered: 0,
        }),
    });

    let started = Instant::now();
    let runner_fuzz = fuzz.clone();
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases: CASES,
            failure_persistence: None,
            max_shrink_iters: 200,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
        runner
            .run(&cases(), |case| handle.block_on(runner_fuzz.case(&case)))
            .map_err(|e| e.to_string())
    })
    .await
    .expect("the fuzz runner");
    if let Err(e) = outcome {
        panic!("{backend:?}: {e}");
    }
    let elapsed = started.elapsed();

    // Whatever came after the last answer changed nothing either.
    let Ok(fuzz) = Arc::try_unwrap(fuzz) else {
        panic!("the runner still holds the node")
    };
    let state = fuzz.state.into_inner().unwrap();
    assert_eq!(
        fuzz.app.snapshot_all().await,
        state.baseline,
        "dropped datagrams after the last answer changed rows"
    );

    // /metrics shows every drop under its reason, and nothing else was dropped.
    let metrics_after = dropped_by_reason(&fuzz.app.metrics_text().await);
    for reason in REASONS {
        let name = reason.as_str();
        let counted = metrics_after.get(name).copied().unwrap_or_default()
            - metrics_before.get(name).copied().unwrap_or_default();
        assert_eq!(
            counted,
            state.expected_drops.get(name).copied().unwrap_or_default(),
            "radacctd_dropped_packets_total{{reason=\"{name}\"}} in /metrics"
        );
    }
    let total_drops: u64 = state.expected_drops.values().sum();
    println!(
        "{backend:?}: {CASES} cases in {:.1} s: {} answered, {total_drops} dropped {:?}",
        elapsed.as_secs_f64(),
        state.answered,
        state.expected_drops
    );
    // The cases must exercise both sides: enough answered, and every kind of drop the
    // mutations can cause.
    assert!(
        state.answered >= u64::from(CASES) / 10,
        "too few answered cases"
    );
    for reason in [
        DropReason::UnknownClient,
        DropReason::Malformed,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::UnsupportedCode,
    ] {
        assert!(
            state.expected_drops.get(reason.as_str()).copied() >= Some(10),
            "too few cases dropped as {}",
            reason.as_str()
        );
    }

    // Still alive: a valid packet is answered and stored, and /healthz is 200.
    let nas = fuzz.app.nas();
    nas.send(
        nas.session(status::START, "after-fuzz", "after-fuzz")
            .u32(dict::ACCT_SESSION_TIME, 0),
    )
    .await;
    fuzz.app.session("after-fuzz").await;
    let health = reqwest::get(fuzz.app.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    fuzz.app.stop().await;
}
