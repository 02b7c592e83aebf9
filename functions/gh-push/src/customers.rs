//! The customers list: which GitHub owners this installation builds for (shared with git-event).

pub use shared::customers::{parse_customers, Customers, CustomersUnavailable};
