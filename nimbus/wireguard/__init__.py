"""WireGuard as data (config) and the code that applies it to the OS (apply); shared."""
