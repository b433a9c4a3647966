"""SeaweedFS as data (`plan`: argv, ports, security.toml, S3 identities); shared, no I/O."""
