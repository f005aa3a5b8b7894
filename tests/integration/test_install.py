"""The harness installed like any other Python tool: a wheel, in a fresh virtual environment,
run from a folder that is not the checkout."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import EXPERIMENTS, ROOT, default_signals


def test_a_wheel_installed_outside_the_checkout_runs_a_real_trial(images, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT),
                    "-w", str(wheels)], check=True, capture_output=True)
    (wheel,) = wheels.glob("harness-*.whl")
    venv = tmp_path / "venv"
    # The dependencies come from this interpreter's site-packages (no download); harness itself
    # only from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([venv / "bin" / "python", "-c", "import harness.lab.images as i; print(i.images_dir())"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the build context shipped in the package
    spec = elsewhere / "one.yaml"
    spec.write_text((EXPERIMENTS / "ci_small.yaml").read_text().replace("repeat: 3", "repeat: 1"))
    proc = subprocess.run([venv / "bin" / "harness", "run", "one.yaml", "--json", "--quiet"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300, preexec_fn=default_signals)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = json.loads(proc.stdout)["trials"]
    assert trial["status"] == "ok" and trial["rebind_plain_s"] is not None
    assert (elsewhere / "results" / "ci_small").is_dir()
