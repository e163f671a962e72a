//! Fakes of the messenger platforms, at their HTTP boundary, for tests and benchmarks (feature
//! `fake`).

pub mod telegram;
