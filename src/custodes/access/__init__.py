"""Access: identities, roles, sessions, suspension, separation of duties, access log."""
