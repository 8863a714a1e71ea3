"""Real models trained in the tests (filled in by the model-formats work)."""
