//! The deterministic loss matrix (virtual time, netsim links of 35 ms each way).
//! Each handshake runs our engine as client and as server at once; every cell is
//! reproducible from its seeds. `cargo run --release -p sluice-dtls --example matrix`
//! prints the same table for docs/dtls.md.

mod sim;

use sim::*;

const SEEDS: std::ops::Range<u64> = 0..200;

fn check(cells: Vec<Scenario>, required: impl Fn(&Scenario) -> Option<f64>) {
    let mut report = String::from(TABLE_HEADER);
    let mut failures = Vec::new();
    for scenario in &cells {
        let r = run_cell(scenario, SEEDS);
        report.push('\n');
        report.push_str(&r.row());
        assert_eq!(r.keys_mismatched, 0, "{}: keys differ", r.name);
        if let Some(min) = required(scenario) {
            if r.completion() < min {
                failures.push(format!(
                    "{}: {:.1} % < {:.1} %; first failure {:?}",
                    r.name,
                    100.0 * r.completion(),
                    100.0 * min,
                    r.first_failure
                ));
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn main_requirement(s: &Scenario) -> Option<f64> {
    match s.loss {
        Loss::Random(p) if p >= 0.5 => (!s.large_certificate).then_some(0.99),
        _ => Some(1.0),
    }
}

#[test]
fn matrix_small_certificate() {
    check(
        main_matrix()
            .into_iter()
            .filter(|s| !s.large_certificate)
            .collect(),
        main_requirement,
    );
}

#[test]
fn matrix_large_certificate() {
    check(
        main_matrix()
            .into_iter()
            .filter(|s| s.large_certificate)
            .collect(),
        main_requirement,
    );
}

#[test]
fn matrix_duplication_and_reordering() {
    check(disorder_matrix(), |_| Some(1.0));
}

#[test]
fn matrix_every_flight_lost_once() {
    check(targeted_matrix(), |_| Some(1.0));
}

fn requirement_13(s: &Scenario) -> Option<f64> {
    match s.loss {
        // With ACKs, even the 7 KB flight in 200-byte datagrams at 50 % loss must reach
        // 99 % (1.2 reaches 97 %: docs/dtls.md).
        Loss::Random(p) if p >= 0.5 => Some(0.99),
        _ => Some(1.0),
    }
}

#[test]
fn matrix_13_small_certificate() {
    check(
        main_matrix()
            .into_iter()
            .filter(|s| !s.large_certificate)
            .map(Scenario::dtls13)
            .collect(),
        requirement_13,
    );
}

#[test]
fn matrix_13_large_certificate() {
    check(
        main_matrix()
            .into_iter()
            .filter(|s| s.large_certificate)
            .map(Scenario::dtls13)
            .collect(),
        requirement_13,
    );
}

#[test]
fn matrix_13_duplication_and_reordering() {
    check(
        disorder_matrix()
            .into_iter()
            .map(Scenario::dtls13)
            .collect(),
        |_| Some(1.0),
    );
}

#[test]
fn matrix_13_every_flight_lost_once_including_the_ack() {
    check(targeted_matrix_13(), |_| Some(1.0));
}

#[test]
fn matrix_13_after_a_hello_retry_request() {
    check(retry_matrix_13(), requirement_13);
}

/// The hybrid's hellos (about 1,450 and 1,190 bytes) are cut into seven or eight
/// fragments at 200 bytes, and before the version is decided they are re-sent whole on
/// the timer, not selectively on ACKs: every cell completes up to 30 % loss and at 1200
/// bytes, and 200-byte datagrams at 50 % loss are measured but not held to 99 %
/// (docs/dtls.md gives the numbers).
#[test]
fn matrix_13_with_the_hybrid() {
    check(hybrid_matrix_13(), |s| match s.loss {
        Loss::Random(p) if p >= 0.5 && s.max_datagram_size <= 200 => None,
        Loss::Random(p) if p >= 0.5 => Some(0.99),
        _ => Some(1.0),
    });
}
