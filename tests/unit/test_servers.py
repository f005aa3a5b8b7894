"""The `server:` section (a server of the user's own), the client's message and reply, the restart
styles: their fields, their one-line errors, and what the lab runs for them."""

import signal

import pytest

from harness import analyze, plan, spec
from harness.lab import roles
from harness.servers import DOCKER_STOP_S

from .specs import BASE, assert_refused, parse

SERVER = BASE + """server:
  packages: [redis-server]
  command: [redis-server, --port, "6379"]
  port: 6379
"""
CASES = "cases:\n  - {name: c}\n"


def test_a_server_of_ones_own_parses_with_its_defaults():
    exp = parse(SERVER + CASES)
    assert exp.server is not None and exp.port == 6379 and exp.reply == "any"
    assert exp.server.command == ("redis-server", "--port", "6379") and exp.server.label == "redis-server"
    assert exp.server.stop.signal == signal.SIGTERM and exp.server.caps == () and exp.server.user is None
    again = spec.Experiment.from_json(exp.to_json(), "x", exp.text)
    assert again.server == exp.server and again.reply == exp.reply


@pytest.mark.parametrize(("stop", "expected"), [
    ("SIGQUIT", ["-k", str(signal.SIGQUIT.value)]),
    ("docker-stop", ["-k", str(signal.SIGTERM.value), "-t", f"{DOCKER_STOP_S:g}"]),
    ("{signal: SIGINT, kill_after_s: 2}", ["-k", str(signal.SIGINT.value), "-t", "2"]),
    ("{command: [nginx, -s, quit]}", ["-K", "nginx", "-K", "-s", "-K", "quit"]),
])
def test_each_way_to_stop_reaches_the_keeper(stop, expected):
    exp = parse(SERVER + f"  stop: {stop}\n" + CASES)
    (t,) = plan.trials(exp)
    argv = roles.keeper(roles.Setup(exp, t.params, t.port))
    assert argv[argv.index("-w") + 2:argv.index("--")] == expected
    assert argv[argv.index("--") + 1:] == ["redis-server", "--port", "6379"]
    assert roles.BY_ROLE["keeper"].command(roles.Setup(exp, t.params, t.port)) == argv  # no setpriv: any image


def test_the_keeper_only_stops_when_the_container_restarts_it():
    exp = parse(SERVER + "cases:\n  - {name: c, restart: container}\n")
    (t,) = plan.trials(exp)
    s = roles.Setup(exp, t.params, t.port)
    assert roles.keeper(s)[1] == "-N" and roles.restarted_keeper(s)[1] == "-R"
    assert "-x" in roles.BY_ROLE["agent"].argv(s)  # the agent only watches a server of one's own
    assert "restarted by container" in t.params.label()


def test_the_server_container_holds_only_what_it_asks_for():
    exp = parse(SERVER.replace("  port: 6379\n", "  port: 6379\n  caps: [NET_BIND_SERVICE]\n") + CASES)
    (t,) = plan.trials(exp)
    s = roles.Setup(exp, t.params, t.port)
    # the agent's side's container does not get the guest's capabilities (it has its own container)
    assert roles.side_caps(s, "server") == ["SETPCAP", "SYS_NICE"]
    assert exp.server is not None and exp.server.caps == ("NET_BIND_SERVICE",)


@pytest.mark.parametrize(("text", "field", "allowed"), [
    (SERVER.replace('[redis-server, --port, "6379"]', "redis-server --port 6379"), "server.command",
     "a list of 1 to 32 words"),
    (SERVER.replace("port: 6379", "port: 70000"), "server.port", "from 1 to 65535"),
    (SERVER.replace("  packages: [redis-server]\n", ""), "server", "either image"),
    (SERVER.replace("  packages: [redis-server]\n", "  packages: [redis-server]\n  image: redis:7\n"), "server",
     "either image"),
    (SERVER.replace("[redis-server]", "['Redis Server']"), "server.packages[0]", "a Debian package name"),
    (SERVER + "  stop: SIGFOO\n", "server.stop", "a signal name"),
    (SERVER + "  stop: {command: [x], signal: SIGTERM}\n", "server.stop", "goes alone"),
    (SERVER + "  caps: [NET_ADMIN]\n", "server.caps", "capabilities from"),
    (SERVER + "  user: 'a b'\n", "server.user", "a user name or id"),
    (SERVER + "  env: {1X: y}\n", "server.env", "letters, digits and _"),
    (SERVER + "  sideways: 1\n", "server.sideways", "unknown field"),
    (SERVER + "port: 7000\n", "port", "give the port once"),
    (SERVER + "cases:\n  - {name: c, close_first: client}\n", "cases[0].close_first", "allowed: server"),
    (SERVER + "cases:\n  - {name: c, server_stop: close}\n", "cases[0].server_stop", "server.stop"),
    (BASE + "cases:\n  - {name: c, restart: container}\n", "cases[0].restart", "server: section"),
    (SERVER + "cases:\n  - {name: c, restart: pod}\n", "cases[0].restart", "namespace, container"),
    (SERVER + "matrix:\n  keep_restarted: [false, true]\n", "matrix.keep_restarted", "the harness's echo server"),
    (SERVER + "cases:\n  - {name: c, bind_probe: {user: other}}\n", "cases[0].bind_probe.user", "allowed: same"),
    (BASE + 'message: "a\\0b"\n' + CASES, "message", "control character"),
    (BASE + "message: ''\n" + CASES, "message", "non-empty: it is echoed"),
    (BASE + "reply: maybe\n" + CASES, "reply", "echo, any, none"),
])
def test_each_bad_field_is_one_line(text, field, allowed):
    assert_refused(text if "cases:" in text else text + CASES, field, allowed)


def test_a_message_may_carry_line_ends_and_be_empty_when_no_echo_is_awaited():
    assert parse(BASE + 'message: "PING\\r\\n"\nreply: any\n' + CASES).message == "PING\r\n"
    assert parse(SERVER + 'message: ""\nreply: none\n' + CASES).message == ""


@pytest.mark.parametrize(("tw_seen", "rebind_reuseaddr", "restart", "failed_in_tw", "expected"), [
    (None, 0.001, 0.002, False, (None, None)),  # no TIME_WAIT: nothing told
    (61.0, 61.01, 61.1, True, (False, None)),  # the old one did not set it; the new one cannot be told
    (61.0, 0.001, 0.01, False, (True, True)),  # both (the book's fix)
    (61.0, 0.001, 61.1, True, (True, False)),  # the old one did, the restart was refused: the new one did not
])
def test_so_reuseaddr_is_inferred_from_the_kernels_answers(tw_seen, rebind_reuseaddr, restart, failed_in_tw,
                                                            expected):
    assert analyze.inferred_reuseaddr(tw_seen, rebind_reuseaddr, restart, failed_in_tw) == expected
