"""The tutorial cannot rot: its commands run as written, in order, against the compose lab.

docs/tutorial.md marks each command a reader types as a block
    ```sh {.tutorial step=NAME}
and what it printed in a real run as
    ```text {.output step=NAME}
The test runs every command block through bash, as the reader would, with two
stand-ins a script needs: `docker-compose` is the Compose tool found here,
with this test's own project name and -T (no TTY), and `harness` is this
checkout's. What the reader does by hand, the test does too: it types into
the client's stdin, and for Ctrl+C it runs the command the tutorial gives as
its equivalent (each a block of its own). Every observation the tutorial
states is asserted on the real output and must appear in the output the
tutorial shows. docs/tutorial.ko.md must have the same command and output
blocks.

Time: the lab waits for one real TIME_WAIT to end (about 60 s). The last
block, `harness run experiments/restart.yaml`, does not touch the lab, so it
starts when that wait begins and overlaps it; every other block runs in
document order, one after the other.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = (REPO / "docs" / "tutorial.md", REPO / "docs" / "tutorial.ko.md")
BLOCK = re.compile(r"^```(?:sh \{\.(tutorial)|text \{\.(output)) step=([\w-]+)\}\n(.*?)^```$", re.M | re.S)

# The reader's `docker-compose` and `harness`, for a script: the Compose tool
# found here, the test's own project, no TTY (-T); this checkout's harness.
PRELUDE = """
docker-compose() {
  case $1 in exec|run) set -- "$1" -T "${@:2}" ;; esac
  command $TUTORIAL_COMPOSE -p "$TUTORIAL_PROJECT" "$@"  # command: the tool, not this function
}
harness() { PYTHONPATH="$TUTORIAL_REPO" "$TUTORIAL_PYTHON" -m harness "$@"; }
"""

# ss prints the server's TIME_WAIT socket as "... 172.18.0.2:7777  172.18.0.3:41234  timer:(timewait,52sec,0)",
# and with nothing for the time once the timer has run out: "timer:(timewait,,0)", until the
# kernel's timer wheel removes the socket, up to about 2 s later (docs/findings.md, "The timer wheel").
SERVER_TIME_WAIT = r"\S+:{port}\s+\S+:\d+\s+timer:\(timewait,([^,)]*),"
CLIENT_FIN = r"\.\d+ > [\d.]+\.7777: Flags \[F\.\]"  # tcpdump: the client's FIN (and its re-sends)


def parse(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The tutorial's command blocks and output blocks, by step, in document order."""
    commands: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for command, _output, step, body in BLOCK.findall(path.read_text()):
        blocks = commands if command else outputs
        assert step not in blocks, f"{path.name}: two {'command' if command else 'output'} blocks for step {step}"
        blocks[step] = body
    return commands, outputs


def seconds(timer: str) -> float:
    """ss's timer text in seconds: 1min, 59sec, 250ms, and 8.592ms (its way of writing 8.592 s)."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)(?:ms|sec))?", timer)
    assert m, timer
    minutes, secs, millis = (int(g or 0) for g in m.groups())
    return 60 * minutes + secs + millis / 1000


def timer_went_up(outputs: list[str]) -> bool:
    """Some ss run shows more time left on the server's TIME_WAIT than the run before it."""
    left = [seconds(t) for out in outputs for t in re.findall(SERVER_TIME_WAIT.format(port=7777), out)]
    return any(later > earlier for earlier, later in zip(left, left[1:]))


def compose_tool() -> list[str]:
    for tool in (["docker", "compose"], ["docker-compose"]):
        try:
            if subprocess.run([*tool, "version"], capture_output=True).returncode == 0:
                return tool
        except FileNotFoundError:
            continue
    pytest.fail("no Compose tool: install the compose plugin, or docker-compose (apt-get install docker-compose)")


class Terminal:
    """A block that keeps running (the server, the client, tcpdump), read as it prints."""

    def __init__(self, step: str, command: str, cwd: Path, env: dict[str, str]):
        self.step = step
        self.proc = subprocess.Popen(["bash", "-c", PRELUDE + command], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.output = ""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.output += line
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: re.search(pattern, self.output, re.M), timeout):
                pytest.fail(f"step {self.step}: no {pattern!r} within {timeout} s; it printed:\n{self.output}")

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def exit_code(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"step {self.step}: still running after {timeout} s; it printed:\n{self.output}")

    def stop(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)


class Reader:
    """Runs the tutorial's blocks the way its reader does, and checks what they print."""

    def __init__(self, tmp: Path):
        self.commands, self.outputs = parse(TUTORIALS[0])
        self.project = f"harness-tutorial-{uuid.uuid4().hex[:8]}"
        self.compose = compose_tool()
        self.env = {**os.environ, "TUTORIAL_COMPOSE": shlex.join(self.compose), "TUTORIAL_PROJECT": self.project,
                    "TUTORIAL_PYTHON": sys.executable, "TUTORIAL_REPO": str(REPO)}
        self.tmp = tmp
        self.ran: list[str] = []
        self.terminals: list[Terminal] = []

    def _command(self, step: str) -> str:
        assert step in self.commands, f"the tutorial has no command block for step {step}"
        assert step not in self.ran, f"step {step} ran twice"
        self.ran.append(step)
        return self.commands[step]

    def run(self, step: str, timeout: float = 60, cwd: Path = REPO) -> tuple[int, str]:
        """A block that finishes; what it exports stays set for the next ones, as in a shell."""
        saved = self.tmp / "env"
        script = f"{PRELUDE}\n{self._command(step)}\nrc=$?\nenv -0 > {shlex.quote(str(saved))}\nexit $rc\n"
        proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=self.env, text=True, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.env = dict(v.split("=", 1) for v in saved.read_text().split("\0") if "=" in v)
        return proc.returncode, proc.stdout

    def again(self, step: str, timeout: float = 30) -> str:
        """The same block once more (the tutorial says: run it again, or a few times)."""
        proc = subprocess.run(["bash", "-c", PRELUDE + self.commands[step]], cwd=REPO, env=self.env, text=True,
                              timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return proc.stdout

    def ok(self, step: str, timeout: float = 60) -> str:
        rc, out = self.run(step, timeout)
        assert rc == 0, f"step {step}: exit {rc}:\n{out}"
        return out

    def start(self, step: str, cwd: Path = REPO) -> Terminal:
        t = Terminal(step, self._command(step), cwd, self.env)
        self.terminals.append(t)
        return t

    def shows(self, step: str, out: str, *patterns: str) -> None:
        """Each pattern is in what the step printed here, and in what the tutorial shows it printed."""
        assert step in self.outputs, f"the tutorial shows no output for step {step}"
        for p in patterns:
            assert re.search(p, out, re.M), f"step {step}: {p!r} not in its output:\n{out}"
            assert re.search(p, self.outputs[step], re.M), f"step {step}: the tutorial's output lacks {p!r}"

    def cleanup(self) -> None:
        for t in self.terminals:
            t.stop(signal.SIGINT)  # harness run removes its containers on SIGINT; the rest just ends
        for t in self.terminals:
            try:
                t.proc.wait(60)
            except subprocess.TimeoutExpired:
                t.stop(signal.SIGKILL)
        # -v: the lab's network; --rmi local: the images built under this test's project name.
        subprocess.run([*self.compose, "-p", self.project, "down", "-v", "--rmi", "local", "--timeout", "1"],
                       cwd=REPO, capture_output=True, timeout=120)


@pytest.fixture
def reader(engine, tmp_path):
    r = Reader(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


def test_both_languages_have_the_same_command_and_output_blocks():
    en, ko = (parse(path) for path in TUTORIALS)
    assert en[0], "docs/tutorial.md has no command blocks"
    assert list(en[0].items()) == list(ko[0].items()), "the tutorials' command blocks differ"
    assert en[1] == ko[1], "the tutorials' output blocks differ"


def connect(reader: Reader, step: str, port: int = 7777) -> Terminal:
    """The client connects and the reader types hello; the echo comes back."""
    client = reader.start(step)
    client.wait_for(r"\(Q to quit\)")
    client.type("hello")
    client.wait_for("Message from server: hello")
    reader.shows(step, client.output, f"connected to server port {port}", "Message from server: hello")
    return client


def test_the_tutorial_runs_as_written(reader):
    # Setup: the base image, then the lab.
    reader.ok("images", timeout=900)  # a fresh machine makes the base with mmdebstrap first
    assert reader.env.get("BASE_IMAGE"), "harness images printed no export line"
    # Compose v1 says "Creating ..._server_1 ... done", v2 "Container ...-server-1  Started".
    reader.shows("up", reader.ok("up", timeout=900), r"server.*(done|Started)")

    # 1. The echo server and client.
    server = reader.start("server")
    server.wait_for("listening on port 7777")
    client = connect(reader, "client")
    server.wait_for("^hello$")
    reader.shows("server", server.output, "listening on port 7777", "^hello$")

    # 2. The client closes first: Q. The server serves one client, so it ends too.
    client.type("Q")
    assert client.exit_code() == 0 and server.exit_code() == 0
    out = reader.ok("client-time-wait")  # the TIME_WAIT is the client's: peer port 7777
    reader.shows("client-time-wait", out, r"\S+:\d+\s+\S+:7777\s+timer:\(timewait,")
    server = reader.start("server-again")
    server.wait_for("listening on port 7777")
    reader.shows("server-again", server.output, "listening on port 7777")

    # 3. The server closes first: Ctrl+C, and the restart fails.
    client = connect(reader, "client-again")
    reader.ok("ctrl-c")
    server.exit_code()
    client.wait_for("the server closed the connection")
    reader.shows("client-again", client.output, "the server closed the connection")
    closed = time.monotonic()
    rc, out = reader.run("restart-fails")
    assert rc == 1, f"restart-fails: exit {rc}:\n{out}"
    reader.shows("restart-fails", out, r"bind\(\) error")

    # 4. The TIME_WAIT socket and its timer.
    reader.shows("ss", reader.ok("ss"), SERVER_TIME_WAIT.format(port=7777))

    # The last block, started now: its 75 s overlap the wait for TIME_WAIT's end.
    run_dir = reader.tmp / "harness-run"
    run_dir.mkdir()
    (run_dir / "experiments").symlink_to(REPO / "experiments")
    harness_run = reader.start("harness-run", cwd=run_dir)

    # 5. About a minute later: gone, and the restart works.
    out = reader.ok("ss-after-a-minute")
    while re.search(SERVER_TIME_WAIT.format(port=7777), out):
        assert time.monotonic() - closed < 75, f"TIME_WAIT still there 75 s after the close:\n{out}"
        time.sleep(2)
        out = reader.again("ss-after-a-minute")
    assert not re.search(SERVER_TIME_WAIT.format(port=7777), reader.outputs["ss-after-a-minute"])
    server = reader.start("restart-works")
    server.wait_for("listening on port 7777")
    reader.shows("restart-works", server.output, "listening on port 7777")

    # 6. The lost final ACK: the client's FIN comes again and again, and each copy
    #    restarts the server's TIME_WAIT timer.
    tcpdump = reader.start("tcpdump")
    tcpdump.wait_for("listening on eth0")
    client = connect(reader, "client-lost-ack")
    reader.ok("drop-acks")
    reader.ok("ctrl-c-lost-ack")
    server.exit_code()
    client.wait_for("the server closed the connection")
    closed = time.monotonic()
    runs = [reader.ok("ss-timer-restarts")]
    while not timer_went_up(runs):
        # The FIN copies come 0.2, 0.4, 0.8 ... 13.5 s after the close: by 20 s, several.
        assert time.monotonic() - closed < 20, "the TIME_WAIT timer never went back up:\n" + "".join(runs)
        time.sleep(0.5)
        runs.append(reader.again("ss-timer-restarts"))
    assert timer_went_up([reader.outputs["ss-timer-restarts"]]), "the tutorial's ss runs show no restart"
    reader.shows("client-last-ack", reader.ok("client-last-ack"), r"\S+:7777\s+timer:\(on,")
    reader.ok("stop-tcpdump")
    tcpdump.exit_code()
    for capture in (tcpdump.output, reader.outputs["tcpdump"]):
        assert len(re.findall(CLIENT_FIN, capture)) >= 3, f"no FIN re-sends in the capture:\n{capture}"
    out = reader.ok("nft-counter")
    reader.shows("nft-counter", out, r"counter packets \d+ bytes \d+ drop")
    # One final ACK copy dropped per client FIN the server answered.
    assert int(re.search(r"counter packets (\d+)", out).group(1)) >= 3, out
    reader.ok("undrop")

    # 7. SO_REUSEADDR: on Linux, on both sockets.
    rc, out = reader.run("reuse-new-only")  # 7777's TIME_WAIT came from a server without it
    assert rc == 1, out
    reader.shows("reuse-new-only", out, r"bind\(\) error")
    server = reader.start("reuse-server")
    server.wait_for(r"listening on port 7778 \(SO_REUSEADDR\)")
    reader.shows("reuse-server", server.output, r"listening on port 7778 \(SO_REUSEADDR\)")
    connect(reader, "reuse-client", port=7778)
    reader.ok("reuse-ctrl-c")
    server.exit_code()
    rc, out = reader.run("reuse-old-only")
    assert rc == 1, out
    reader.shows("reuse-old-only", out, r"bind\(\) error")
    server = reader.start("reuse-restart")
    server.wait_for(r"listening on port 7778 \(SO_REUSEADDR\)", timeout=10)
    reader.shows("reuse-restart", server.output, r"listening on port 7778 \(SO_REUSEADDR\)")
    out = reader.ok("reuse-ss")  # the new listener beside the old connection's TIME_WAIT
    reader.shows("reuse-ss", out, r"^LISTEN\s.*:7778\s", r"^TIME-WAIT\s.*:7778\s.*timer:\(timewait,")
    reader.ok("reuse-stop")
    server.exit_code()
    reader.ok("down")

    # 8. The same experiment, measured by the harness: exit 0, every trial measured and every
    #    expectation (the book's claims, in the experiment file) held; the report where it says.
    rc = harness_run.exit_code(timeout=300)
    assert rc == 0, f"harness run: exit {rc} (1: an expectation failed, 4: a trial did not measure):\n" \
                    + harness_run.output
    reader.shows("harness-run", harness_run.output, r"server closes first, SO_REUSEADDR \(the book's fix\)",
                 r"^Expectations \(the experiment file's expect:\):$", r"^PASS\s+expect\[3\] restart_s <= 1 ",
                 r"^run directory: \S+$", r"^report: \S+/report\.html$")
    for shown in (harness_run.output, reader.outputs["harness-run"]):
        assert not re.search(r"^(FAIL|NO DATA)\b", shown, re.M), f"an expectation did not pass:\n{shown}"
    printed = re.search(r"^run directory: (\S+)$", harness_run.output, re.M).group(1)
    report = re.search(r"^report: (\S+)$", harness_run.output, re.M).group(1)
    assert report == f"{printed}/report.html", f"the report is not in the run directory: {report}"
    assert (run_dir / report).is_file(), f"no report at the printed path {report}"

    assert sorted(reader.ran) == sorted(reader.commands), "some command block did not run"
    lab = [step for step in reader.commands if step != "harness-run"]
    assert [step for step in reader.ran if step != "harness-run"] == lab, "the blocks ran out of order"
