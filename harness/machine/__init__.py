"""The machine the harness runs on: the host tools it needs, the one set-up step that adds
them, and `harness doctor`, which says what is there."""
