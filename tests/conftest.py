pytest_plugins = ["handoff.testing.fixtures"]
