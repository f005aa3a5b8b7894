"""Helpers the experiment-file tests share (test_spec.py, test_catalog_spec.py): parse a file's
text, and the one-line refusals it gets."""

import pytest

from harness import spec
from harness.errors import SpecError

BASE = "name: t\ndescription: d\n"


def parse(text: str) -> spec.Experiment:
    return spec.parse(text, "exp.yaml")


def error(text: str) -> str:
    with pytest.raises(SpecError) as exc:
        parse(text)
    return str(exc.value)


def assert_refused(text: str, field: str, allowed: str) -> None:
    """Refused in one line that names the file, the field and what is allowed."""
    msg = error(text)
    assert msg.startswith(f"exp.yaml: {field}: ")
    assert allowed in msg
    assert "\n" not in msg
