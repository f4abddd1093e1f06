//! The Sluice server: the only place that performs I/O.

fn main() {
    println!("sluice: not built yet");
}
