"""harness: reproducible TCP teardown experiments on real containers."""

__version__ = "0.2.0"
