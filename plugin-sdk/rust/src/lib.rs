//! The discount policy SDK.
