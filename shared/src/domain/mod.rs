//! The domain: grants and the rules of access (DESIGN §1–2), with no AWS, HTTP or storage code.

pub mod audit;
pub mod connection;
pub mod duration;
pub mod grant;
pub mod identity;
pub mod ids;
pub mod notification;
pub mod reconcile;
pub mod resource;
pub mod secret;
pub mod side_effect;
pub mod text;
pub mod ticket_events;
pub mod ticket_writes;
pub mod url_policy;
pub mod webhook_auth;

pub use audit::{AuditEvent, AuditKind};
pub use duration::{GrantDuration, IsoDuration};
pub use grant::{
    Deprovisioning, EndReason, Grant, GrantStatus, Provisioning, SideEffectState, TicketRef,
};
pub use identity::Caller;
pub use resource::{Provisioner, Resource};
