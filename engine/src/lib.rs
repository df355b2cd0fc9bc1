//! The policy engine: shared by the host and the runner, and knows nothing of HTTP.
