"""Runs trials: each in its own lab, concurrently, one record per trial whatever happens.

A run stops early for a signal (stopping.py), when the engine stops answering, or when the run
directory cannot be written: queued trials never start, no container starts after that moment,
every container and network of the run is removed, and each trial ends with why.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import analyze, stopping
from harness import events as events_
from harness.errors import EngineGone, EnvironmentProblem, HarnessError, LabError, TrialFailed
from harness.events import Ev
from harness.faults import FaultBackend
from harness.lab.engine import alive, remove_labelled
from harness.lab.images import ImageSet
from harness.lab.streams import Event, EventStream, Stopped
from harness.lab.subnets import Subnets
from harness.lab.topology import TrialLab
from harness.plan import Trial, schedule
from harness.probes import commands
from harness.progress import Progress
from harness.record import TrialResult
from harness.spec import Experiment
from harness.store import RunDir

if TYPE_CHECKING:  # only lab/ talks to Docker; here the client is just passed on
    from docker import DockerClient

START_TIMEOUT_S = 30.0  # a program to come up, or the echo to finish
OWNER_ROLE = {"server": "agent", "client": "capture"}  # who owns each side's namespaces
WATCHER = commands.CLIENT_AGENT  # the client's side's agent (watch_client, client_port)


THREAD_NAMES = ("trial", "rm-")  # the prefixes of the threads a run starts (trials, removals)
ENGINE_CHECK_S = 2.0  # how often the run asks whether the engine still answers
ENGINE_MISSES = 3  # unanswered in a row before the run ends (the engine is gone)


@dataclass
class Engine:
    """One engine of the run, and what the trials on it use."""

    name: str
    kernel: str
    docker: DockerClient
    quick: DockerClient  # short timeouts: removal after a stop must not hang with the engine
    ping: DockerClient  # shorter still: is the engine still there? (EngineWatch)
    images: ImageSet
    subnets: Subnets
    fault: FaultBackend | None
    # Trials setting up at once. Container starts load the engine and its host's CPUs; bounding
    # them keeps other trials' 10 ms polls on time.
    setting_up: threading.Semaphore


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
    e = stream.wait_for(lambda e: pred(e) or e.get("ev") == "error", timeout)
    if e is not None and e.get("ev") != "error":
        return e
    if e is not None:
        why = e.get("what")
    elif stream.ended:
        last = stream.events[-1:]
        why = f"{stream.source} exited" + (f": {last[0].get('text', last[0])}" if last else "")
    else:
        why = f"no sign of it within {timeout:g} s"
    raise TrialFailed(f"{what}: {why}")


def _ev(name: str) -> Any:
    return lambda e: e.get("ev") == name


def _exchange(ctx: RunContext, trial: Trial, lab: TrialLab, say_fault: Callable[[FaultBackend, str], None],
              mark: Callable[[str], None], slot: SetupSlot) -> bytes:
    """Connect, echo, install the fault, close in the chosen order, observe until the port is free.

    Returns the pcap; everything else the trial yields is in its events."""
    exp, p = ctx.exp, trial.params
    passive = "client" if p.close_first == "server" else "server"
    say = lambda state: ctx.progress.state(trial, state)

    fault_backend = ctx.engines[trial.engine].fault if p.final_ack_loss.kind != "none" or p.final_ack_reset else None
    sysctls = {side: {k: str(v) for k, v in p.sysctls(side).items()} for side in ("server", "client")}
    # What each side's container holds: its programs' capabilities (each drops the rest).
    programs: dict[str, list[tuple[str, ...]]] = {"server": [commands.AGENT_CAPS], "client": [commands.CAPTURE_CAPS]}
    if p.watches_client:
        programs["client"].append(commands.AGENT_CAPS)
    if fault_backend:
        programs[passive].append(commands.FAULT_CAPS)
    # One container a side, both at once (each side's sysctls set in its new namespace); the
    # client's side's programs then start in the capture's container.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        owners = [pool.submit(lab.own, "server", OWNER_ROLE["server"], commands.agent(exp, p, ctx.close_phase),
                              commands.side_caps(*programs["server"]), sysctls=sysctls["server"]),
                  pool.submit(lab.own, "client", OWNER_ROLE["client"], commands.capture(exp),
                              commands.side_caps(*programs["client"]), data_out=True, sysctls=sysctls["client"])]
        agent, cap = (f.result() for f in owners)
    server_address = lab.address("server")
    lab.exec("client", "client", commands.client(exp, p, server_address), user=commands.NOBODY)
    if p.watches_client:
        lab.exec(WATCHER, "client", commands.client_agent(exp, p, server_address))
    if fault_backend:
        argv, env = commands.fault_agent(*fault_backend.scripts(exp, p))
        lab.exec("fault", passive, argv, env=env)
    _need(lab.streams["capture"], "capture", lambda e: "listening on" in e.get("text", ""))
    _need(lab.streams["agent"], "server did not listen", _ev("listening"))
    _need(lab.streams["client"], "client start", _ev("ready"))
    lab.send("client", "connect")
    _need(lab.streams["client"], "echo exchange", _ev("echoed"))
    if p.watches_client:  # the client's connections are up: its agent finds them
        _need(lab.streams[WATCHER], "client agent start", _ev("ready"))
        lab.send(WATCHER, "watch")
        _need(lab.streams[WATCHER], "client agent", _ev("watching"))

    if fault_backend is not None:
        say("installing fault")
        _need(lab.streams["fault"], "fault agent start", _ev("ready"))
        lab.send("fault", "install")
        _need(lab.streams["fault"], "fault install", _ev("installed"))
        say_fault(fault_backend, passive)

    mark("exchange")
    say("closing" if ctx.close_phase is None else "closing at the next close phase (--close-phase)")
    aligning = ctx.close_phase[0] if ctx.close_phase else 0.0
    lab.signal(agent, "SIGUSR1")
    if p.close_first == "client":
        _need(lab.streams["agent"], "agent arming", _ev("armed"), START_TIMEOUT_S + aligning)
        lab.send("client", "close")
        _need(lab.streams["client"], "client close", _ev("close"))
    else:
        _need(lab.streams["agent"], "server close", _ev("close"), START_TIMEOUT_S + aligning)
    # The close is made; from here on this trial only waits. The next setup's
    # container starts begin only now, so they do not delay this close's FINs.
    slot.release()
    say("waiting")
    for role in ("agent", *([WATCHER] if p.watches_client else [])):
        _need(lab.streams[role], "measurement", lambda e: e.get("ev") in ("done", "timeout"), exp.max_wait_s + 60)
    mark("observe")

    if fault_backend is None or passive == "client":  # the agent's side is not read below: it goes now
        lab.release("agent")
    if fault_backend is not None:
        # The counters come before tcpdump stops: it owns the client's side, where they may be.
        lab.send("fault", "readout")
        _need(lab.streams["fault"], "fault readout", _ev("counted"))
    pcap = _pcap(lab, cap)
    mark("collect")
    return pcap


def _pcap(lab: TrialLab, cap: Any) -> bytes:
    """Stop tcpdump: it writes out what it has and exits, which ends the pcap on its stdout."""
    lab.signal(cap, "SIGTERM")
    pcap = lab.outputs["capture"].wait_end(START_TIMEOUT_S)
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

    def say_fault(backend: FaultBackend, side: str) -> None:
        sink(events_.harness(Ev.FAULT, backend=backend.name, injection_point=backend.where(side)))

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
    try:
        engine = ctx.engines[trial.engine]
        with SetupSlot(engine.setting_up) as slot:
            mark("queued")
            if ctx.stopping.is_set():  # stopped while it waited for its slot: it never starts
                raise Stopped()
            ctx.progress.state(trial, "setting up")
            with TrialLab(engine.docker, engine.images, engine.subnets, ctx.run_id, trial.id, trial.params.family,
                          sink, ctx.stopping) as lab:
                mark("lab")
                pcap = _exchange(ctx, trial, lab, say_fault, mark, slot)
        end["capture"] = ctx.write(lambda: ctx.store.capture(trial.id, pcap))
    except HarnessError as exc:
        end["error"] = ctx.stop_reason if ctx.stopping.is_set() else str(exc)
    except Exception as exc:
        end["error"] = f"internal error: {exc!r}"
        end["logs"] = traceback.format_exc()
    mark("teardown")
    end["phases"] = phases
    end["wall_s"] = round(time.monotonic() - started, 6)  # setup + observation + teardown
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
