"""odqa-bench unit and integration tests."""
