//! Mints a join token for testing:
//! `cargo run -p sluice-signal --example mint_token -- <secret> <room> <identity> [ttl_secs] [kid] [name]`

use std::time::{SystemTime, UNIX_EPOCH};

use sluice_signal::token::{sign, JoinClaims, SigningKey};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(secret), Some(room), Some(sub)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: mint_token <secret> <room> <identity> [ttl_secs] [kid] [name]");
        std::process::exit(2);
    };
    let ttl_secs: u64 = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(3600);
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = JoinClaims {
        room: room.clone(),
        sub: sub.clone(),
        exp: now_unix + ttl_secs,
        nbf: None,
        name: args.get(5).cloned(),
    };
    let key = SigningKey {
        id: args.get(4).cloned().unwrap_or_default(),
        secret: secret.as_bytes().to_vec(),
    };
    println!("{}", sign(&claims, &key));
}
