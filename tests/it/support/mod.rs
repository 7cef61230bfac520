//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod fault_proxy;
pub mod moto;
pub mod resource_server;
pub mod rotation_front;
pub mod stores;
