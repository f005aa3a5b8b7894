from pathlib import Path

import pytest

from harness import spec
from harness.errors import SpecError
from tests.unit.specs import BASE, assert_refused, error, parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")))
def test_shipped_experiments_parse(path):
    exp = spec.load(path)
    assert exp.name == path.stem
    assert exp.cases or exp.matrix


def test_defaults_and_case_fields():
    exp = parse(BASE + "cases:\n  - {close_first: client, final_ack_loss: 3, family: ipv6}\n")
    (case,) = exp.cases
    assert case.params.close_first == "client"
    assert case.params.final_ack_loss == spec.Loss("first", k=3)
    assert case.params.family == "ipv6"
    assert case.params.server_reuseaddr is False
    assert exp.repeat == 1 and exp.port == 7777 and exp.poll_ms == 10 and exp.fault_backend == "auto"


def test_restart_reuseaddr_defaults_to_the_old_servers():
    exp = parse(BASE + "cases:\n  - {server_reuseaddr: true}\n  - {server_reuseaddr: true, restart_reuseaddr: false}\n")
    assert exp.cases[0].params.restart_with_reuseaddr is True
    assert exp.cases[1].params.restart_with_reuseaddr is False


@pytest.mark.parametrize("value, expected", [
    ("0", spec.Loss("none")),
    ("1", spec.Loss("first", k=1)),
    ("all", spec.Loss("all")),
    ("{p: 0.5, seed: 7}", spec.Loss("random", p=0.5, seed=7)),
])
def test_loss_forms(value, expected):
    exp = parse(BASE + f"cases:\n  - final_ack_loss: {value}\n")
    assert exp.cases[0].params.final_ack_loss == expected


def test_loss_json_is_the_form_written():
    assert [spec.Loss(*a).to_json() for a in (("none",), ("first", 2), ("all",))] == [0, 2, "all"]
    assert spec.Loss("random", p=0.25, seed=3).to_json() == {"p": 0.25, "seed": 3}


@pytest.mark.parametrize("text, field, allowed", [
    ("description: d\ncases: [{}]\n", "name", "name and a description"),
    (BASE + "cases:\n  - close_first: sever\n", "cases[0].close_first", "server, client"),
    (BASE + "cases:\n  - colse_first: server\n", "cases[0].colse_first", "unknown field"),
    (BASE + "cases:\n  - final_ack_loss: some\n", "cases[0].final_ack_loss", '"all"'),
    (BASE + "cases:\n  - final_ack_loss: {p: 2, seed: 1}\n", "cases[0].final_ack_loss.p", "from 0 to 1"),
    (BASE + "cases:\n  - final_ack_loss: {p: 0.5}\n", "cases[0].final_ack_loss", "needs both p and seed"),
    (BASE + "cases:\n  - server_reuseaddr: yes please\n", "cases[0].server_reuseaddr", "true, false"),
    (BASE + "repeat: 0\ncases: [{}]\n", "repeat", "from 1 to 1000"),
    (BASE + "poll_ms: 50\ncases: [{}]\n", "poll_ms", "from 1 to 10"),
    (BASE + "fault_backend: tc\ncases: [{}]\n", "fault_backend", "auto, nftables, netem"),
    (BASE + "matrix:\n  family: []\n", "matrix.family", "non-empty list"),
    (BASE + "matrix:\n  family: [ipv5]\n", "matrix.family[0]", "ipv4, ipv6"),
    (BASE, "cases", "give a matrix, a list of cases, or both"),
    ("name: a/b\ndescription: d\ncases: [{}]\n", "name", "letters, digits"),
    (BASE + "message: " + "x" * 300 + "\ncases: [{}]\n", "message", "up to 200"),
    (BASE + "colour: blue\n", "colour", "unknown field"),
])
def test_errors_name_file_field_and_what_is_allowed(text, field, allowed):
    assert_refused(text, field, allowed)


def test_bad_yaml_names_the_line():
    msg = error("name: t\ndescription: [unclosed\n")
    assert msg.startswith("exp.yaml: not valid YAML at line")


def test_empty_file():
    assert error("") == "exp.yaml: empty; an experiment needs a name, a description and cases or a matrix"


def test_top_level_must_be_a_mapping():
    assert "allowed: a mapping" in error("- just\n- a list\n")


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        spec.load(tmp_path / "nope.yaml")
