"""odqa-bench benchmark suites (their module names name the baseline files)."""
