//! Helpers shared by the integration tests: the embedded stack and its requests, every store
//! port on either backend, the binaries as a user runs them, the moto server, the property tests' model, and the fronts and
//! proxies put before moto.

pub mod fault_proxy;
pub mod fuzz;
pub mod local_server;
pub mod moto;
pub mod resource_server;
pub mod rotation_front;
pub mod stack;
pub mod stores;
