"""Suite-wide configuration: fixtures live in tests/support/, one plugin module per area."""

pytest_plugins = [
    "net_fixtures",
    "model_fixtures",
    "runtime_fixtures",
    "function_fixtures",
    "plane_fixtures",
]
