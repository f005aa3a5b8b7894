"""Integration tests: the real engine, real containers, real kernel. No mocks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXPERIMENTS = HERE / "experiments"
ARTIFACTS = ROOT / "test-artifacts"  # kept after the run: what a reader would have seen
LABEL = "io.harness.run"  # what every object of a harness run carries
CLOSE_PHASE = "3.0,1.25"


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a running Docker engine ({exc}); `bash .ci/run` starts one")
    return client


def harness(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    try:
        doc = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        doc = None
    return proc.returncode, doc, err


def leftovers(engine) -> tuple[list, list]:
    return (engine.containers.list(all=True, filters={"label": LABEL}),
            engine.networks.list(filters={"label": LABEL}))


@pytest.fixture(scope="session")
def images(engine):
    """Build (or find) the lab images once, before runs start in parallel."""
    proc = subprocess.run([sys.executable, "-m", "harness", "images"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def runs(engine, images, tmp_path_factory):
    """paths.yaml and seeded_again.yaml, run at the same time, each trial in parallel."""
    results = tmp_path_factory.mktemp("results")
    # seeded_again also closes on a set phase of the monotonic clock (--close-phase).
    extra = {"paths": (), "seeded_again": ("--close-phase", CLOSE_PHASE)}
    procs = {name: harness("run", str(EXPERIMENTS / f"{name}.yaml"), "--json", "--results", str(results),
                           *args) for name, args in extra.items()}
    done = {name: finish(p, timeout=600) for name, p in procs.items()}
    for name, (rc, doc, err) in done.items():
        assert doc is not None, f"{name}: no JSON (exit {rc}):\n{err[-3000:]}"
    return done


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package), driven by Playwright; no background traffic of its own."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the report's browser tests need Chromium (apt-get install chromium); `bash .ci/run` installs it")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()
