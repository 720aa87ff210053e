"""A toy recipe with real (fast) steps, for testing the launcher's orchestration without minutes of training."""
