"""The harness installed as a new user installs it: its wheel, with the dependencies it declares
and nothing else (a virtual environment that does not see this machine's site-packages, filled
from the package index), then used from a folder that is not the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import EXPERIMENTS, ROOT, default_signals


def test_a_clean_install_runs_reports_and_compares(images, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(wheels)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("harness-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)], capture_output=True, text=True, env=env)
    assert pip.returncode == 0, pip.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def harness(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([venv / "bin" / "harness", *args], cwd=elsewhere, capture_output=True, text=True,
                              timeout=300, preexec_fn=default_signals, env=env)

    where = subprocess.run([venv / "bin" / "python", "-c", "import harness.lab.images as i; print(i.images_dir())"],
                           cwd=elsewhere, capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert where.startswith(str(venv)), where  # the build context shipped in the package
    (elsewhere / "one.yaml").write_text((EXPERIMENTS / "ci_small.yaml").read_text().replace("repeat: 3", "repeat: 2"))
    runs = []
    for _ in range(2):
        proc = harness("run", "one.yaml", "--json", "--quiet")
        assert proc.returncode == 0, proc.stderr[-3000:]
        doc = json.loads(proc.stdout)
        assert [t["status"] for t in doc["trials"]] == ["ok", "ok"]
        assert all(t["rebind_plain_s"] is not None for t in doc["trials"])
        runs.append(elsewhere / doc["run_dir"])  # relative to where it ran
    assert all(r.parent == elsewhere / "results" / "ci_small" and r.is_dir() for r in runs)

    (runs[0] / "report.html").unlink()
    report = harness("report", str(runs[0]))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (runs[0] / "report.html").is_file() and "client first" in report.stdout

    compared = harness("compare", str(runs[0]), str(runs[1]), "--json")
    assert compared.returncode in (0, 1), compared.stderr[-3000:]  # 1: a regression, which two runs may show
    rows = json.loads(compared.stdout)["rows"]
    assert {r["case"] for r in rows} == {"client first"} and all(r["verdict"] for r in rows)
