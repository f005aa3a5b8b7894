"""Runs trials, lab by lab (one trial's, or a case's repeats sharing one), labs and trials
concurrently, one record per trial whatever happens.

A run stops early for a signal (stopping.py), when the engine stops answering, or when the run
directory cannot be written: queued trials never start, no container starts after that moment,
every container and network of the run is removed, and each trial ends with why.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import analyze, stopping
from harness import events as events_
from harness.errors import EngineGone, EnvironmentProblem, HarnessError, LabError, TrialFailed, bug_line
from harness.events import AGENT, CAPTURE, CLIENT, CLIENT_AGENT, FAULT, KEEPER, SERVER, Ev
from harness.lab import roles
from harness.lab.engine import alive, remove_labelled
from harness.lab.engines import Engine
from harness.lab.streams import Event, EventStream, Stopped, waiting
from harness.lab.topology import GUEST, RESTARTED, Lab, TrialLab
from harness.plan import Trial, labs
from harness.probes import capture
from harness.progress import Progress
from harness.record import TrialResult
from harness.spec import Experiment
from harness.stopping import Flag
from harness.store import RunDir

# A program to come up, or the echo to finish. Generous: on a loaded engine (a burst of set-ups, two
# cores) an exec into a fresh container has taken over 30 s; a program that is stuck is still caught.
START_TIMEOUT_S = 120.0
# A trial's wait for the rest of its lab to be ready to close: well inside the agent's own wait
# for its close signal (120 s, tw_agent.c close_now), from its start.
READY_WAIT_S = 60.0
KEEPER_RESTARTED = "keeper-restarted"  # the keeper in a user's server's side made anew (restart: container)


THREAD_NAMES = ("lab", "trial", "rm-")  # the prefixes of the threads a run starts (labs, trials, removals)
ENGINE_CHECK_S = 2.0  # how often the run asks whether the engine still answers
ENGINE_MISSES = 3  # unanswered in a row before the run ends (the engine is gone)


@dataclass
class RunContext:
    engines: dict[str, Engine]
    exp: Experiment
    run_id: str
    store: RunDir
    progress: Progress
    stopping: Flag  # set by a signal, or by fail()
    fatal: HarnessError | None = None  # why the run must end now, when not a signal
    events: dict[str, list[Event]] = field(default_factory=dict)  # each trial's, as events.jsonl has them

    def fail(self, error: HarnessError) -> None:
        """End the run: the engine went away, or the run directory cannot be written."""
        if self.fatal is None:
            self.fatal = error
        self.stopping.set()

    @property
    def stop_reason(self) -> str:
        return str(self.fatal) if self.fatal else "interrupted"

    def store_capture(self, trial_id: str, pcap: bytes) -> str:
        """A trial's capture, kept; its path in the run directory."""
        return str(self.write(lambda: self.store.capture(trial_id, pcap)))

    def write(self, what: Callable[[], Any]) -> Any:
        """A write to the run directory; failing, it ends the run (measuring on, unrecorded, would not do)."""
        try:
            return what()
        except OSError as exc:
            self.fail(EnvironmentProblem(f"cannot write the run directory {self.store.path}: {exc.strerror}"))
            raise Stopped() from None


class SetupSlot:
    """One slot of an engine's semaphore (a lab setting up, a trial starting); released once."""

    def __init__(self, slots: threading.Semaphore):
        self._slots = slots
        self._held = False

    def __enter__(self) -> SetupSlot:
        self._slots.acquire()
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _need(stream: EventStream, what: str, pred: Any, timeout: float = START_TIMEOUT_S) -> Event:
    """The event pred picks, or TrialFailed saying what the program said instead."""
    e = stream.wait_for(lambda e: pred(e) or e.get("ev") == Ev.ERROR, timeout)
    if e is not None and e.get("ev") != Ev.ERROR:
        return e
    if e is not None:
        why = e.get("what")
    elif stream.ended:
        last = stream.events[-1:]
        why = f"{stream.source} exited" + (f": {last[0].get('text', last[0])}" if last else "")
    else:
        why = f"no sign of it within {timeout:g} s"
    raise TrialFailed(f"{what}: {why}")


def _open(lab: Lab, s: roles.Setup, ports: list[int]) -> None:
    """The lab's containers, one a side, both at once (each side's sysctls set in its new namespace;
    every trial of a lab is one case's): the server side's holder, the client side's capture of
    every port of the lab; and a user's server's container, joined to the server side."""
    sysctls = {side: {k: str(v) for k, v in s.p.sysctls(side).items()} for side in (roles.SERVER_SIDE,
                                                                                     roles.CLIENT_SIDE)}
    owners = [(roles.SERVER_SIDE, roles.HOLDER, roles.holder(), False), (roles.CLIENT_SIDE, CAPTURE, roles.capture(ports), True)]
    with concurrent.futures.ThreadPoolExecutor(len(owners)) as pool:
        list(pool.map(lambda o: lab.own(o[0], o[1], o[2], roles.side_caps(s, o[0]), data_out=o[3],
                                        sysctls=sysctls[o[0]], events=o[3]), owners))
    for side in (roles.SERVER_SIDE, roles.CLIENT_SIDE):
        lab.launch(side)
    if s.exp.server is not None:
        server = s.exp.server
        lab.guest(roles.SERVER_SIDE, list(server.caps), server.user, dict(server.env))
    _need(lab.streams[CAPTURE], "capture", lambda e: "listening on" in e.get("text", ""))


def _start(tl: TrialLab, s: roles.Setup) -> roles.Setup:
    """Every program of the trial (lab/roles.py), in its lab's containers (through their launchers);
    each waited for until it says it is up. Returns the setup with the server's address."""
    programs = roles.of_trial(s)
    s = dataclasses.replace(s, server_address=tl.lab.address(roles.SERVER_SIDE))
    for p in programs:
        tl.exec(p.role, p.side_of(s), p.command(s), user=p.user, env=p.env(s) if p.env else None,
                into=GUEST if p.guest else None)
    # A guest first: a user's server that fails to come up says why there, within max_wait_s.
    for p in sorted(programs, key=lambda p: not p.guest):
        _need(tl.streams[p.role], p.not_ready, p.ready, s.exp.max_wait_s + START_TIMEOUT_S if p.guest
              else START_TIMEOUT_S)
    return s


def _handshake(tl: TrialLab, s: roles.Setup, say: Callable[[str], None]) -> None:
    """The client's connections and echo; its agent finds them; the fault goes in."""
    tl.send(CLIENT, "connect")
    _need(tl.streams[CLIENT], "echo exchange", roles.is_(Ev.ECHOED))
    if s.p.watches_client:
        tl.send(CLIENT_AGENT, "watch")
        _need(tl.streams[CLIENT_AGENT], "client agent", roles.is_(Ev.WATCHING))
    if s.fault is not None:
        say("installing fault")
        tl.send(FAULT, "install")
        _need(tl.streams[FAULT], "fault install", roles.is_(Ev.INSTALLED))


def _close(tl: TrialLab, s: roles.Setup) -> None:
    """The chosen side closes first: the agent stops the server, or marks t = 0 for the client's
    close; a user's server, its keeper stops once the agent watches."""
    aligning = s.align_max_s
    tl.signal(AGENT, "SIGUSR1")
    if s.exp.server is not None:
        _need(tl.streams[AGENT], "agent arming", roles.is_(Ev.ARMED))
        tl.send(KEEPER, "stop")
        _need(tl.streams[KEEPER], "server stop", roles.is_(Ev.CLOSE), START_TIMEOUT_S + aligning)
    elif s.p.close_first == "client":
        _need(tl.streams[AGENT], "agent arming", roles.is_(Ev.ARMED), START_TIMEOUT_S + aligning)
        tl.send(CLIENT, "close")
        _need(tl.streams[CLIENT], "client close", roles.is_(Ev.CLOSE))
    else:
        _need(tl.streams[AGENT], "server close", roles.is_(Ev.CLOSE), START_TIMEOUT_S + aligning)


def _go(tl: TrialLab, s: roles.Setup) -> None:
    """The client's fixed-port SYNs, when they wait (roles.waits_for_server_end): once the old server
    has ended, or with a kept restart once it listens, so that no race decides what the first SYN
    meets. If the agent ends first, at once: what the trial measured then is its record's to say."""
    if not roles.waits_for_server_end(s):
        return
    ev = Ev.RESTART_UP if s.p.keep_restarted else Ev.SERVER_EXIT
    tl.streams[AGENT].wait_for(lambda e: e.get("ev") in (ev, Ev.DONE, Ev.TIMEOUT, Ev.CUT, Ev.ERROR),
                               s.exp.max_wait_s + START_TIMEOUT_S)
    tl.send(CLIENT_AGENT, "go")


def _remake(tl: TrialLab, s: roles.Setup) -> None:
    """restart: container, as `docker restart` does: once the old server has ended (and its connection
    entered TIME_WAIT, when it closed first), the agent stops
    observing (its namespace goes, with the TIME_WAIT it holds), the side is made anew in a fresh
    namespace, and a keeper there starts the server as a restart. Only in a lab of its own
    (plan.alone_because)."""
    server = s.exp.server
    assert server is not None
    ended = lambda e: e.get("src") == SERVER and e.get("ev") == Ev.EXIT
    _need(tl.streams[KEEPER], "server stop", ended, START_TIMEOUT_S + (server.stop.kill_after_s or 0))
    if s.p.close_first == "server":
        # The client's FIN answers the stop within a round trip, and a `docker restart` takes longer:
        # the old connection reaches TIME_WAIT before its namespace goes (CI, under load, saw the cut
        # come first, and no TIME_WAIT).
        tl.streams[AGENT].wait_for(roles.is_(Ev.TW_APPEAR), START_TIMEOUT_S)
    tl.signal(AGENT, "SIGTERM")
    _need(tl.streams[AGENT], "agent", roles.is_(Ev.CUT))
    sysctls = {k: str(v) for k, v in s.p.sysctls(roles.SERVER_SIDE).items()}
    address = tl.lab.remake_guest(roles.SERVER_SIDE, list(server.caps), server.user, dict(server.env), sysctls)
    tl.event(events_.harness(Ev.RESTARTED, address=address, mono=time.monotonic()))
    tl.exec(KEEPER_RESTARTED, roles.SERVER_SIDE, roles.restarted_keeper(s), user="", into=RESTARTED, src=KEEPER)


def _observe(tl: TrialLab, s: roles.Setup) -> None:
    """Until every observer has seen the sockets through (or max_wait_s ran out)."""
    keeper = KEEPER_RESTARTED if s.p.restart == "container" else KEEPER
    watchers = [AGENT, *([CLIENT_AGENT] if s.p.watches_client else []), *([keeper] if s.exp.server else [])]
    for role in watchers:
        _need(tl.streams[role], "measurement", lambda e: e.get("ev") in (Ev.DONE, Ev.TIMEOUT, Ev.CUT),
              s.exp.max_wait_s + 60)


def _collect(tl: TrialLab, s: roles.Setup) -> None:
    """The fault's counters (the trial's own drop's: a shared lab has one a trial)."""
    if s.fault is not None:
        tl.send(FAULT, "readout")
        _need(tl.streams[FAULT], "fault readout", roles.is_(Ev.COUNTED))


def _exchange(ctx: RunContext, trial: Trial, tl: TrialLab, r: _TrialRun, starting: SetupSlot,
              gate: _Gate) -> None:
    """Start, handshake, close, observe, collect; everything the trial yields is in its events (its
    packets, in the lab's capture). `starting` is held through its start and handshake, a few
    dozen trials' at a time; `gate` holds its close until the lab's every trial is ready for
    theirs, and counts it closed."""
    p, engine = trial.params, ctx.engines[trial.engine]
    say = lambda state: ctx.progress.state(trial, state)
    fault = engine.fault if p.final_ack_loss.kind != "none" or p.final_ack_reset else None
    with starting:
        s = _start(tl, roles.Setup(ctx.exp, p, trial.port, trial.close_at, engine.wheel_ticks, fault))
        _handshake(tl, s, say)
    if fault is not None:
        tl.event(events_.harness(Ev.FAULT, backend=fault.name, injection_point=fault.where(s.passive)))
    r.mark("exchange")
    gate.ready(trial.id)
    say("closing" if not trial.close_at else "closing at its phase of the clock")
    _close(tl, s)
    gate.closed(trial.id)
    _go(tl, s)
    if s.p.restart == "container":
        say("restarting its container")
        _remake(tl, s)
    say("waiting")
    _observe(tl, s)
    r.mark("observe")
    _collect(tl, s)
    r.mark("collect")
    r.measured = True


def _pcap(lab: Lab) -> bytes:
    """Stop tcpdump: it writes out what it has and exits, which ends the pcap on its stdout."""
    lab.signal(lab.owners[roles.CLIENT_SIDE], "SIGTERM")
    pcap = lab.outputs[CAPTURE].wait_end(START_TIMEOUT_S)
    if pcap is None:
        raise TrialFailed("capture: tcpdump did not stop")
    # its count of packets dropped comes on stderr, by another reader: the analysis needs it
    lab.streams[CAPTURE].wait_for(lambda e: capture.said_drops(e) is not None, START_TIMEOUT_S)
    return pcap


class _TrialRun:
    """One trial's events as they come (kept, written, shown), the harness's own time in each of its
    phases, and its end."""

    def __init__(self, ctx: RunContext, trial: Trial):
        self._ctx = ctx
        self.trial = trial
        self.events = ctx.events.setdefault(trial.id, [])
        self._lock = threading.Lock()
        self.started = self._last = time.monotonic()
        self.phases: dict[str, float] = {}  # host-clock seconds of each phase: where the harness's time goes (bench/)
        self.end: Event = events_.harness(Ev.TRIAL_END, error=None)
        self.measured = False  # its exchange went through: the lab's failures after that are not its
        self._ends = ctx.engines[trial.engine].ends
        ctx.progress.state(trial, "queued")

    def sink(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
            self._ctx.write(lambda: self._ctx.store.event({"trial": self.trial.id, **event}))
        self._ctx.progress.event(self.trial, event)
        if self._ends is not None:
            self._ends.seen(self.trial.id, event)

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[f"{phase}_s"] = round(now - self._last, 3)
        self._last = now

    def failed(self, exc: BaseException) -> None:
        """What ended it early, unless something did already."""
        if self.end.get("error"):
            return
        if isinstance(exc, HarnessError):
            self.end["error"] = self._ctx.stop_reason if self._ctx.stopping.is_set() else str(exc)
        else:
            self.end["error"] = bug_line(exc)
            self.end["logs"] = "".join(traceback.format_exception(exc))


class _Gate:
    """A lab's trials on their way to the close, each counted as it gets there or fails before.
    Closes wait until every trial is ready to close (started, exchanged, its fault in), and the
    lab's set-up slot goes to the next lab once every trial has closed: a lab's set-up (its
    containers, then a hundred trials' programs starting) stalled both cores for up to 160 ms,
    and a close in that time saw its TIME_WAIT begin that late (bench/study.py). Each close waits
    for its own phase of the wheel's grid, so a lab holds the slot one grid (2 s here) past its
    set-up; labs start longest first (plan.labs)."""

    def __init__(self, n: int, stopping: Flag, then: Callable[[], None]):
        self._n = n
        self._then = then
        self._stopping = stopping
        self._ready: set[str] = set()
        self._closed: set[str] = set()
        self._cond = threading.Condition()
        stopping.watch(self._cond)

    def ready(self, trial_id: str) -> None:
        """The trial is ready to close; returns once every trial of the lab is, or READY_WAIT_S on
        (a trial hung in its start must not keep the others' agents from their close; Stopped:
        the run is ending)."""
        with self._cond:
            self._ready.add(trial_id)
            self._cond.notify_all()
            waiting(self._cond, self._stopping, lambda: len(self._ready) == self._n, READY_WAIT_S)

    def closed(self, trial_id: str) -> None:
        """The trial has closed, or failed (then it is ready too, as far as the others wait)."""
        with self._cond:
            self._ready.add(trial_id)
            self._cond.notify_all()
            if trial_id in self._closed:
                return
            self._closed.add(trial_id)
            if len(self._closed) < self._n:
                return
        self._then()


def _in_lab(ctx: RunContext, trial: Trial, lab: Lab, r: _TrialRun, gate: _Gate) -> None:
    """A trial's thread: its exchange, in the lab; a failure is the trial's alone, and its programs
    go at once (in a shared lab, its agent would go on restarting its server beside the others)."""
    tl = lab.trial(trial.id, r.sink)
    try:
        _exchange(ctx, trial, tl, r, SetupSlot(ctx.engines[trial.engine].starting), gate)
    except Exception as exc:
        r.failed(exc)
        with contextlib.suppress(HarnessError):
            tl.kill()
    finally:
        gate.closed(trial.id)


def run_lab(ctx: RunContext, members: list[Trial]) -> list[TrialResult]:
    """A lab's trials (one, or a case's repeats sharing it: plan.into_labs), from its set-up to its
    teardown, then each trial's analysis; never raises for a trial-level failure."""
    first = members[0]
    engine = ctx.engines[first.engine]
    runs = [_TrialRun(ctx, t) for t in members]
    lacks = sorted(engine.lacks & first.params.sysctl_names())
    if lacks:  # never started: the end alone says why
        for r in runs:
            r.end["not_applicable"] = f"Linux {engine.kernel} has no {', '.join(lacks)} in a network namespace"
        return [_recorded(ctx, r, None, phases=False) for r in runs]
    p = first.params
    fault = engine.fault if p.final_ack_loss.kind != "none" or p.final_ack_reset else None

    def lab_sink(event: Event) -> None:  # the lab's own events are each of its trials'
        for r in runs:
            r.sink(event)

    pcap: bytes | None = None
    lab: Lab | None = None
    try:
        # A lab at a time (setting_up) from its containers' start until its trials have closed
        # (_Gate; a lone trial's lab: to its containers' start), longest first; its trials' starts a
        # few dozen at a time (starting).
        with SetupSlot(engine.setting_up) as slot:
            for r in runs:
                r.mark("queued")
            for t in members:
                ctx.progress.state(t, "setting up")
            with Lab(engine.docker, engine.images, engine.subnets, ctx.run_id, first.lab or first.id, p.family,
                     lab_sink, ctx.stopping, engine.remover) as lab:
                _open(lab, roles.Setup(ctx.exp, p, first.port, first.close_at, fault=fault), [t.port for t in members])
                for r in runs:
                    r.mark("lab")
                gate = _Gate(len(members), ctx.stopping, slot.release)
                if not first.shared:
                    # a lone trial's start is two programs, light beside its lab's set-up: the next
                    # lab sets up meanwhile (forty labs' set-ups in series would outlast a TIME_WAIT)
                    slot.release()
                threads = [threading.Thread(target=_in_lab, name=f"trial-{t.id}", args=(ctx, t, lab, r, gate))
                           for t, r in zip(members, runs)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                pcap = _pcap(lab)
                if engine.ends is not None:  # its removal, not while other labs' TIME_WAITs end
                    engine.ends.forget([t.id for t in members])
                    engine.ends.wait_quiet(time.monotonic(), ctx.stopping)
    except Exception as exc:
        # The lab's own failure (its set-up, its capture, its removal) is the failure of those of
        # its trials that had not measured yet; those that had keep what they measured, with what
        # the capture holds (a stopped run's too: tcpdump wrote each packet as it came).
        for r in runs:
            if not r.measured:
                r.failed(exc)
        if pcap is None and lab is not None and CAPTURE in lab.outputs:
            pcap = lab.outputs[CAPTURE].so_far()
        if any(r.measured for r in runs) and not ctx.stopping.is_set():  # said nowhere else
            ctx.progress.note(f"{first.lab or first.id}: {exc}")
    slices: dict[int, bytes] = {}
    if pcap is not None:
        try:
            slices = capture.by_port(pcap, [t.port for t in members]) if first.shared else {first.port: pcap}
        except capture.Unreadable:
            slices = {t.port: pcap for t in members}  # each trial's analysis says so
        for r in runs:
            with contextlib.suppress(Stopped):  # the run directory failed: the run is ending
                r.end["capture"] = ctx.store_capture(r.trial.id, slices[r.trial.port])
    return [_recorded(ctx, r, slices.get(r.trial.port)) for r in runs]


def _recorded(ctx: RunContext, r: _TrialRun, pcap: bytes | None, phases: bool = True) -> TrialResult:
    """The trial's analysis, once, from its events and its end; both kept in the run directory."""
    if phases:
        r.mark("teardown")
        r.end["phases"] = r.phases
        r.end["wall_s"] = round(time.monotonic() - r.started, 6)  # setup + observation + teardown
    record = analyze.trial(ctx.exp, r.trial, r.events + [r.end], pcap, ctx.engines[r.trial.engine].kernel)
    with contextlib.suppress(Stopped):  # the run is ending anyway; say what was measured
        r.sink(r.end)
        ctx.write(lambda: ctx.store.trial(record))
    ctx.progress.finished(r.trial, record)
    return record


class EngineWatch:
    """Asks the engine, every ENGINE_CHECK_S, whether it still answers; when it has not
    ENGINE_MISSES times in a row, the run fails (exit 3) instead of waiting on it."""

    def __init__(self, ctx: RunContext):
        self._ctx = ctx
        self._done = threading.Event()
        self.gone = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="engine-watch", daemon=True)

    def __enter__(self) -> EngineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def _watch(self) -> None:
        engines = self._ctx.engines
        misses = dict.fromkeys(engines, 0)
        while not self._done.wait(ENGINE_CHECK_S):
            for name, e in engines.items():
                misses[name] = 0 if alive(e.ping) else misses[name] + 1
                if misses[name] >= ENGINE_MISSES:
                    which = f" {name}" if len(engines) > 1 else ""
                    self.gone.set()
                    self._ctx.fail(EngineGone(
                        f"the Docker engine{which} stopped answering ({ENGINE_MISSES} pings in a row went "
                        "unanswered); when it is back, `harness clean` removes what this run left"))
                    return


def run_all(ctx: RunContext, trials: list[Trial], jobs: int) -> list[TrialResult]:
    """The labs (plan.labs), longest first, `jobs` at a time, while EngineWatch checks that every
    engine answers.

    Raises the fatal error when the run had to end (engine gone, run directory unwritable), and
    whatever the main thread got (stopping.Stop), after every container of the run is removed."""
    records: list[TrialResult] = []
    futures: dict[concurrent.futures.Future[list[TrialResult]], list[Trial]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="lab")
    with EngineWatch(ctx) as watch:
        try:
            with stopping.deferred():
                futures.update((pool.submit(run_lab, ctx, members), members) for members in labs(trials))
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.5,
                                                        return_when=concurrent.futures.FIRST_COMPLETED)
                records += [r for f in done for r in f.result()]
                if ctx.fatal is not None:
                    raise ctx.fatal
        except BaseException:
            ctx.stopping.set()
            pool.shutdown(wait=False, cancel_futures=True)
            if watch.gone.is_set():  # nothing can be removed, nor waited for: say why, and go
                _end_unfinished(ctx, futures)
                raise
            ctx.progress.note(f"{ctx.stop_reason}: removing this run's containers and networks")
            _sweep(ctx, networks=False)  # the trials' waits end with their containers
            # A trial thread inside a call to the engine removes what that call made once it
            # returns: wait for every one, unless the engine goes meanwhile.
            while not watch.gone.is_set() and not all(f.done() for f in futures):
                concurrent.futures.wait(futures, timeout=0.5)
            _sweep(ctx, networks=True)  # and whatever they made meanwhile
            _end_unfinished(ctx, futures)
            raise
    pool.shutdown(wait=True)
    return sorted(records, key=lambda r: r.index)


def _end_unfinished(ctx: RunContext, futures: dict[concurrent.futures.Future[list[TrialResult]], list[Trial]]) -> None:
    """The end and the record of each trial a stop left without them: those it kept from
    starting, and (the engine gone) those still stuck in a call to the engine."""
    for f, t in ((f, t) for f, members in futures.items() for t in members):
        if f.done() and not f.cancelled():
            continue
        events = ctx.events.get(t.id, [])
        if events:
            end = events_.harness(Ev.TRIAL_END, error=ctx.stop_reason)
            events.append(end)
            with contextlib.suppress(OSError):
                ctx.store.event({"trial": t.id, **end})
        with contextlib.suppress(OSError):
            ctx.store.trial(analyze.trial(ctx.exp, t, events, None, ctx.engines[t.engine].kernel))


def _sweep(ctx: RunContext, networks: bool) -> None:
    """Remove the run's objects on every engine, as far as each lets us: a stop must not hang on one."""
    for e in ctx.engines.values():
        try:
            remove_labelled(e.quick, ctx.run_id, networks=networks)
        except LabError as exc:
            ctx.progress.note(f"could not remove everything ({exc}); `harness clean` can, once the engine answers")
