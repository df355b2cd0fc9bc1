//! loyalty-tier
