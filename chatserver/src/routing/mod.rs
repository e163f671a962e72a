//! Routing: the pure decision ([`core`]) and the worker that carries it out ([`worker`]).

pub mod core;
pub mod worker;
