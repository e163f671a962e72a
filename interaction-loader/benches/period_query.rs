//! Period-query latency on 1 million messages (written in the next commit).
fn main() {}
