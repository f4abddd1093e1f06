//! Prints the DTLS loss matrix as a Markdown table (the one kept in docs/dtls.md).
//!
//!     cargo run --release -p sluice-dtls --example matrix [-- SEEDS [FILTER]]
//!
//! Every cell runs SEEDS handshakes (default 200) on virtual time through netsim.

#[path = "../tests/sim/mod.rs"]
mod sim;

fn main() {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let filter = args.next().unwrap_or_default();
    let cells = sim::main_matrix()
        .into_iter()
        .chain(sim::disorder_matrix())
        .chain(sim::targeted_matrix())
        .chain(sim::naive_matrix())
        .chain(sim::matrix_13())
        .filter(|s| s.name.contains(&filter));
    println!("{}", sim::TABLE_HEADER);
    for scenario in cells {
        let r = sim::run_cell(&scenario, 0..seeds);
        println!("{}", r.row());
        if let Some((seed, run)) = &r.first_failure {
            eprintln!(
                "  first failure in '{}': seed {seed}: client {:?}, server {:?}, {} datagrams",
                r.name, run.client_error, run.server_error, run.datagrams
            );
        }
    }
}
