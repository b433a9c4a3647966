"""The connection layer: the gate (accept, TLS, complete requests), framing, cheroot."""
