"""Command line: one module per verb (flags -> options dataclass -> API call -> exit code)."""
