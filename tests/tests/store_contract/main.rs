//! The grant store contract: the embedded (SQLite) store and the DynamoDB store (on moto) pass the same suite
//! (`suite.rs`).

use std::sync::Arc;

use ticketbound::ports::GrantStore;
use ticketbound_tests::{dynamo_store, embedded_store};

#[macro_use]
mod suite;

contract!(embedded, embedded_store());
contract!(dynamodb, dynamo_store().await);
