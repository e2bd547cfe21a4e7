//! Ticketbound: just-in-time access bound to support tickets.
//!
//! The crate reads top-down like the architecture (DESIGN §3):
//! - [`domain`]: plain types and rules (grants, durations, identities, resources) with no I/O;
//! - [`ports`]: the traits the use cases need (store, scheduler, provisioner, clock, ...);
//! - [`service`]: the use cases (request, approve, deny, revoke, end a grant, run a scheduled job);
//! - [`adapters`]: one module per technology (DynamoDB, EventBridge Scheduler, embedded SQLite, HTTP provisioner);
//! - [`http`]: the axum routers, extractors and the error body of DESIGN §5;
//! - [`config`] and [`telemetry`]: what every binary reads at start.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod handlers;
pub mod http;
pub mod ports;
pub mod service;
pub mod telemetry;
/// The composition root builds an application over the AWS adapters (`aws`) or the local ones (`embedded`);
/// with neither feature there is nothing to compose, so the module is not compiled.
#[cfg(any(feature = "aws", feature = "embedded"))]
pub mod wiring;
