//! The discount host.
