"""Runs trials: each in its own lab, concurrently, one record per trial whatever happens.

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
from harness.lab.streams import Event, EventStream, Stopped
from harness.lab.topology import GUEST, RESTARTED, TrialLab
from harness.plan import Trial, schedule
from harness.progress import Progress
from harness.record import TrialResult
from harness.spec import Experiment
from harness.store import RunDir

# A program to come up, or the echo to finish. Generous: on a loaded engine (a burst of set-ups, two
# cores) an exec into a fresh container has taken over 30 s; a program that is stuck is still caught.
START_TIMEOUT_S = 120.0
KEEPER_RESTARTED = "keeper-restarted"  # the keeper in a user's server's side made anew (restart: container)


THREAD_NAMES = ("trial", "rm-")  # the prefixes of the threads a run starts (trials, removals)
ENGINE_CHECK_S = 2.0  # how often the run asks whether the engine still answers
ENGINE_MISSES = 3  # unanswered in a row before the run ends (the engine is gone)


@dataclass
class RunContext:
    engines: dict[str, Engine]
    exp: Experiment
    run_id: str
    store: RunDir
    progress: Progress
    stopping: threading.Event  # set by a signal, or by fail()
    close_phase: tuple[float, float] | None = None  # see the agent's -a
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

    def write(self, what: Callable[[], Any]) -> Any:
        """A write to the run directory; failing, it ends the run (measuring on, unrecorded, would not do)."""
        try:
            return what()
        except OSError as exc:
            self.fail(EnvironmentProblem(f"cannot write the run directory {self.store.path}: {exc.strerror}"))
            raise Stopped() from None


class SetupSlot:
    """One of the run's setup slots, held from a trial's start until its close; released once."""

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


def _start(lab: TrialLab, s: roles.Setup) -> roles.Setup:
    """Every program of the trial (lab/roles.py): the owners first, one container a side, both at
    once (each side's sysctls set in its new namespace), then the others in their side's container;
    each waited for until it says it is up. Returns the setup with the server's address."""
    programs = roles.of_trial(s)
    sysctls = {side: {k: str(v) for k, v in s.p.sysctls(side).items()} for side in (roles.SERVER_SIDE,
                                                                                     roles.CLIENT_SIDE)}
    owners = [p for p in programs if p.owner]
    with concurrent.futures.ThreadPoolExecutor(len(owners)) as pool:
        list(pool.map(lambda p: lab.own(p.side_of(s), p.role, p.command(s), roles.side_caps(s, p.side_of(s)),
                                        p.data_out, sysctls[p.side_of(s)]), owners))
    s = dataclasses.replace(s, server_address=lab.address(roles.SERVER_SIDE))
    for p in programs:
        if p.guest:
            assert s.exp.server is not None
            server = s.exp.server
            lab.guest(p.side_of(s), list(server.caps), server.user, dict(server.env))
        if not p.owner:
            lab.exec(p.role, p.side_of(s), p.command(s), user=p.user, env=p.env(s) if p.env else None,
                     into=GUEST if p.guest else None)
    # A guest first: a user's server that fails to come up says why there, within max_wait_s.
    for p in sorted(programs, key=lambda p: not p.guest):
        _need(lab.streams[p.role], p.not_ready, p.ready, s.exp.max_wait_s + START_TIMEOUT_S if p.guest
              else START_TIMEOUT_S)
    return s


def _handshake(lab: TrialLab, s: roles.Setup, say: Callable[[str], None]) -> None:
    """The client's connections and echo; its agent finds them; the fault goes in."""
    lab.send(CLIENT, "connect")
    _need(lab.streams[CLIENT], "echo exchange", roles.is_(Ev.ECHOED))
    if s.p.watches_client:
        lab.send(CLIENT_AGENT, "watch")
        _need(lab.streams[CLIENT_AGENT], "client agent", roles.is_(Ev.WATCHING))
    if s.fault is not None:
        say("installing fault")
        lab.send(FAULT, "install")
        _need(lab.streams[FAULT], "fault install", roles.is_(Ev.INSTALLED))


def _close(lab: TrialLab, s: roles.Setup) -> None:
    """The chosen side closes first: the agent stops the server, or marks t = 0 for the client's
    close; a user's server, its keeper stops once the agent watches."""
    aligning = s.close_phase[0] if s.close_phase else 0.0
    lab.signal(lab.owners[roles.SERVER_SIDE], "SIGUSR1")
    if s.exp.server is not None:
        _need(lab.streams[AGENT], "agent arming", roles.is_(Ev.ARMED))
        lab.send(KEEPER, "stop")
        _need(lab.streams[KEEPER], "server stop", roles.is_(Ev.CLOSE), START_TIMEOUT_S + aligning)
    elif s.p.close_first == "client":
        _need(lab.streams[AGENT], "agent arming", roles.is_(Ev.ARMED), START_TIMEOUT_S + aligning)
        lab.send(CLIENT, "close")
        _need(lab.streams[CLIENT], "client close", roles.is_(Ev.CLOSE))
    else:
        _need(lab.streams[AGENT], "server close", roles.is_(Ev.CLOSE), START_TIMEOUT_S + aligning)


def _go(lab: TrialLab, s: roles.Setup) -> None:
    """The client's fixed-port SYNs, when they wait (roles.waits_for_server_end): once the old server
    has ended, or with a kept restart once it listens, so that no race decides what the first SYN
    meets. If the agent ends first, at once: what the trial measured then is its record's to say."""
    if not roles.waits_for_server_end(s):
        return
    ev = Ev.RESTART_UP if s.p.keep_restarted else Ev.SERVER_EXIT
    lab.streams[AGENT].wait_for(lambda e: e.get("ev") in (ev, Ev.DONE, Ev.TIMEOUT, Ev.CUT, Ev.ERROR),
                                s.exp.max_wait_s + START_TIMEOUT_S)
    lab.send(CLIENT_AGENT, "go")


def _remake(lab: TrialLab, s: roles.Setup) -> None:
    """restart: container, as `docker restart` does: once the old server has ended, the agent stops
    observing (its namespace goes, with the TIME_WAIT it holds), the side is made anew in a fresh
    namespace, and a keeper there starts the server as a restart."""
    server = s.exp.server
    assert server is not None
    ended = lambda e: e.get("src") == SERVER and e.get("ev") == Ev.EXIT
    _need(lab.streams[KEEPER], "server stop", ended, START_TIMEOUT_S + (server.stop.kill_after_s or 0))
    lab.signal(lab.owners[roles.SERVER_SIDE], "SIGTERM")
    _need(lab.streams[AGENT], "agent", roles.is_(Ev.CUT))
    sysctls = {k: str(v) for k, v in s.p.sysctls(roles.SERVER_SIDE).items()}
    address = lab.remake_guest(roles.SERVER_SIDE, list(server.caps), server.user, dict(server.env), sysctls)
    lab.event(events_.harness(Ev.RESTARTED, address=address, mono=time.monotonic()))
    lab.exec(KEEPER_RESTARTED, roles.SERVER_SIDE, roles.restarted_keeper(s), user="", into=RESTARTED, src=KEEPER)


def _observe(lab: TrialLab, s: roles.Setup) -> None:
    """Until every observer has seen the sockets through (or max_wait_s ran out)."""
    keeper = KEEPER_RESTARTED if s.p.restart == "container" else KEEPER
    watchers = [AGENT, *([CLIENT_AGENT] if s.p.watches_client else []), *([keeper] if s.exp.server else [])]
    for role in watchers:
        _need(lab.streams[role], "measurement", lambda e: e.get("ev") in (Ev.DONE, Ev.TIMEOUT, Ev.CUT),
              s.exp.max_wait_s + 60)


def _collect(lab: TrialLab, s: roles.Setup) -> bytes:
    """The fault's counters, then the pcap (tcpdump owns the client's side, where they may be)."""
    if s.fault is None or s.passive == roles.CLIENT_SIDE:  # the agent's side is not read below: it goes now
        lab.release(AGENT)
    if s.fault is not None:
        lab.send(FAULT, "readout")
        _need(lab.streams[FAULT], "fault readout", roles.is_(Ev.COUNTED))
    return _pcap(lab)


def _exchange(ctx: RunContext, trial: Trial, lab: TrialLab, mark: Callable[[str], None], slot: SetupSlot) -> bytes:
    """Start, handshake, close, observe, collect. Returns the pcap; everything else the trial yields
    is in its events."""
    p = trial.params
    say = lambda state: ctx.progress.state(trial, state)
    fault = ctx.engines[trial.engine].fault if p.final_ack_loss.kind != "none" or p.final_ack_reset else None
    s = _start(lab, roles.Setup(ctx.exp, p, ctx.close_phase, fault))
    _handshake(lab, s, say)
    if fault is not None:
        lab.event(events_.harness(Ev.FAULT, backend=fault.name, injection_point=fault.where(s.passive)))
    mark("exchange")
    say("closing" if ctx.close_phase is None else "closing at the next close phase (--close-phase)")
    _close(lab, s)
    # The close is made; from here on this trial only waits. The next setup's
    # container starts begin only now, so they do not delay this close's FINs.
    slot.release()
    _go(lab, s)
    if s.p.restart == "container":
        say("restarting its container")
        _remake(lab, s)
    say("waiting")
    _observe(lab, s)
    mark("observe")
    pcap = _collect(lab, s)
    mark("collect")
    return pcap


def _pcap(lab: TrialLab) -> bytes:
    """Stop tcpdump: it writes out what it has and exits, which ends the pcap on its stdout."""
    lab.signal(lab.owners[roles.CLIENT_SIDE], "SIGTERM")
    pcap = lab.outputs[CAPTURE].wait_end(START_TIMEOUT_S)
    if pcap is None:
        raise TrialFailed("capture: tcpdump did not stop")
    return pcap


def run_trial(ctx: RunContext, trial: Trial) -> TrialResult:
    """One trial, start to teardown, then its analysis; never raises for a trial-level failure."""
    events = ctx.events.setdefault(trial.id, [])
    lock = threading.Lock()

    def sink(event: Event) -> None:
        with lock:
            events.append(event)
            ctx.write(lambda: ctx.store.event({"trial": trial.id, **event}))
        ctx.progress.event(trial, event)

    # Host-clock seconds of each phase: where the harness's own time goes (bench/).
    phases: dict[str, float] = {}
    last = [time.monotonic()]

    def mark(phase: str) -> None:
        now = time.monotonic()
        phases[f"{phase}_s"] = round(now - last[0], 3)
        last[0] = now

    ctx.progress.state(trial, "queued")
    started = last[0]
    end: Event = events_.harness(Ev.TRIAL_END, error=None)
    pcap = None
    engine = ctx.engines[trial.engine]
    lacks = sorted(engine.lacks & trial.params.sysctl_names())
    if lacks:  # never started: the end alone says why
        end["not_applicable"] = f"Linux {engine.kernel} has no {', '.join(lacks)} in a network namespace"
        return _recorded(ctx, trial, events, end, sink, None)
    try:
        with SetupSlot(engine.setting_up) as slot:
            mark("queued")
            if ctx.stopping.is_set():  # stopped while it waited for its slot: it never starts
                raise Stopped()
            ctx.progress.state(trial, "setting up")
            with TrialLab(engine.docker, engine.images, engine.subnets, ctx.run_id, trial.id, trial.params.family,
                          sink, ctx.stopping, engine.remover) as lab:
                mark("lab")
                pcap = _exchange(ctx, trial, lab, mark, slot)
        end["capture"] = ctx.write(lambda: ctx.store.capture(trial.id, pcap))
    except HarnessError as exc:
        end["error"] = ctx.stop_reason if ctx.stopping.is_set() else str(exc)
    except Exception as exc:
        end["error"] = bug_line(exc)
        end["logs"] = traceback.format_exc()
    mark("teardown")
    end["phases"] = phases
    end["wall_s"] = round(time.monotonic() - started, 6)  # setup + observation + teardown
    return _recorded(ctx, trial, events, end, sink, pcap)


def _recorded(ctx: RunContext, trial: Trial, events: list[Event], end: Event, sink: Callable[[Event], None],
              pcap: bytes | None) -> TrialResult:
    """The trial's analysis, once, from its events and its end; both kept in the run directory."""
    record = analyze.trial(ctx.exp, trial, events + [end], pcap, ctx.engines[trial.engine].kernel)
    with contextlib.suppress(Stopped):  # the run is ending anyway; say what was measured
        sink(end)
        ctx.write(lambda: ctx.store.trial(record))
    ctx.progress.finished(trial, record)
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
    """Longest trials first, `jobs` at a time, while EngineWatch checks that every engine answers.

    Raises the fatal error when the run had to end (engine gone, run directory unwritable), and
    whatever the main thread got (stopping.Stop), after every container of the run is removed."""
    records: list[TrialResult] = []
    futures: dict[concurrent.futures.Future[TrialResult], Trial] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="trial")
    with EngineWatch(ctx) as watch:
        try:
            with stopping.deferred():
                futures.update((pool.submit(run_trial, ctx, t), t) for t in schedule(trials))
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.5,
                                                        return_when=concurrent.futures.FIRST_COMPLETED)
                records += [f.result() for f in done]
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


def _end_unfinished(ctx: RunContext, futures: dict[concurrent.futures.Future[TrialResult], Trial]) -> None:
    """The end and the record of each trial a stop left without them: those it kept from
    starting, and (the engine gone) those still stuck in a call to the engine."""
    for f, t in futures.items():
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
