"""Security properties of the control plane (issue 5), one claim of docs/security.md each."""
