"""up, down and ls: the steps in order, and a failed or interrupted `up` undoes what it started."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem
from harness.kernellab import boot, context, home, kernel, proc, qemu, rootfs, tls, transfer
from harness.kernellab.api import Api

Say = Callable[[str], None]
DATA_SIZE = "20G"  # sparse: grows with what the guest's /var/lib/docker holds
FORMAT = 1
STOP_S = 90  # dockerd stops its containers first; under emulation that takes a while
# Docker's rule for context names, so the lab's name is its context's.
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")


def default_name(package: str) -> str:
    return f"debian-{kernel.release(package)}"


def lab_dir(name: str) -> Path:
    return home.home() / "labs" / name


def _record(name: str) -> dict[str, Any] | None:
    """The lab's lab.json, or None if absent, unreadable or of another format version."""
    try:
        rec = json.loads((lab_dir(name) / "lab.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("format") == FORMAT else None


def _package(request: str) -> str:
    if request.startswith(kernel.PREFIX) and (rootfs.cached(request).dir / "built.json").is_file():
        return request  # cached: no need to ask apt
    proc.need("apt-cache")
    return kernel.resolve(request, kernel.available())


def _usage(name: str, port: int, certs: Path) -> str:
    env = " ".join(f"{k}={v}" for k, v in context.env(port, certs).items())
    return f"  docker --context {name} info\n  export {env}"


def up(request: str, name: str | None, with_images: bool, say: Say) -> dict[str, Any]:
    """Build (or reuse) the disk, boot the VM, wait for dockerd, register the context, copy images."""
    proc.need("qemu-system-x86_64", "mke2fs", "openssl", "docker")
    package = _package(request)
    name = name or default_name(package)
    files = qemu.Files(lab_dir(name))
    certs = files.dir / "tls" / "client"
    rec = _record(name)
    with contextlib.ExitStack() as undo:
        if qemu.pid(files):
            if rec is None or rec["package"] != package:
                running = rec["package"] if rec else "a kernel its lab.json does not say"
                raise EnvironmentProblem(f"kernel lab {name} is up with {running}, not {package}; "
                                         f"`harness kernel-lab down {name}` first, or choose another --name")
            say(f"kernel lab {name} is already up ({rec['package']})")
        else:
            # Whatever fails or is interrupted from here stops the VM and unregisters it.
            undo.callback(qemu.stop, files, 0)
            undo.callback(context.remove, name)
            rec = _boot(package, name, files, say)
        context.create(name, rec["port"], certs, rec["package"])
        if with_images:
            t0 = time.monotonic()
            api = Api(rec["port"], certs)
            if transfer.images(_harness_images(say), api, rec["port"], certs, say):
                rec["transfer_s"] = round(time.monotonic() - t0, 1)
                (files.dir / "lab.json").write_text(json.dumps(rec, indent=2))
        undo.pop_all()
    return {**rec, "usage": _usage(name, rec["port"], certs)}


def _boot(package: str, name: str, files: qemu.Files, say: Say) -> dict[str, Any]:
    fs = rootfs.ensure(package, say)
    d = files.dir
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    shutil.rmtree(d / "tls", ignore_errors=True)
    tls.make(d / "tls", name)
    files.conf.unlink(missing_ok=True)
    proc.run(["mke2fs", "-q", "-t", "ext2", "-L", rootfs.CONF_LABEL, "-d", str(d / "tls" / "server"),
              str(files.conf), "1M"], "writing the lab's configuration disk")
    files.conf.chmod(0o600)
    shutil.rmtree(d / "tls" / "server")  # the server's key lives on in conf.img only
    if not files.data.exists():
        proc.run(["mke2fs", "-q", "-t", "ext4", "-L", rootfs.DATA_LABEL, str(files.data), DATA_SIZE],
                 "making the lab's data disk")
        files.data.chmod(0o600)
    port, accel = qemu.free_port(), qemu.host_accelerator()
    files.console.unlink(missing_ok=True)
    say(f"starting QEMU ({accel}{', emulated: about 10x slower than the host' if accel == 'tcg' else ''}) "
        f"with {package}; dockerd on 127.0.0.1:{port} (TLS)")
    t0 = time.monotonic()
    proc.run(qemu.argv(fs, files, port, accel), "starting QEMU")
    info = boot.wait_ready(files, Api(port, d / "tls" / "client"), say)
    rec = {"format": FORMAT, "name": name, "package": package, "kernel": info.get("KernelVersion"),
           "docker": info.get("ServerVersion"), "port": port, "accel": accel, "rootfs": str(fs.dir),
           "boot_s": round(time.monotonic() - t0, 1)}
    (d / "lab.json").write_text(json.dumps(rec, indent=2))
    return rec


def _harness_images(say: Say) -> list[str]:
    """The host engine's lab images (built there first if needed) and their base."""
    from harness.lab import engine, images

    s = images.ensure(engine.connect(), say)
    return [s.base, *s.tags.values()]


def down(name: str, purge: bool, say: Say) -> None:
    d = lab_dir(name)
    if not d.is_dir():
        raise EnvironmentProblem(f"no kernel lab named {name} (`harness kernel-lab ls` lists them)")
    files = qemu.Files(d)
    if qemu.pid(files):
        say(f"stopping kernel lab {name} (power-off, up to {STOP_S} s)")
    qemu.stop(files, STOP_S)
    if context.remove(name):
        say(f"removed Docker context {name}")
    shutil.rmtree(d / "tls", ignore_errors=True)
    files.conf.unlink(missing_ok=True)
    files.console.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(d)
        say(f"removed {d} (its data disk with the guest's images)")



def ls() -> list[dict[str, Any]]:
    labs = []
    root = home.home() / "labs"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        rec = _record(d.name) or {"name": d.name}
        files = qemu.Files(d)
        data_mb = files.data.stat().st_blocks * 512 / 1e6 if files.data.exists() else 0
        labs.append({**rec, "state": "up" if qemu.pid(files) else "down", "data_mb": round(data_mb)})
    return labs
