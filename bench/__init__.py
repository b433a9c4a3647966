"""Nimbus benchmark suite with budgets: `python -m bench [--quick] [--only NAME…]`."""
