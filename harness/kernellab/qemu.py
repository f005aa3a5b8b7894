"""The VM: which accelerator, the QEMU command line (both pure), and the process's life.

QEMU daemonizes and writes a pidfile, so the VM outlives `up`; `stop` finds it
by that pidfile, checks it is still our QEMU (pids are reused), asks the guest
to power off through the monitor socket, and kills it if it does not.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from harness.kernellab import rootfs

MEMORY_MB = 4096


def accelerator(cpuinfo: str, kvm_pvm_loaded: bool, dev_kvm: bool) -> str:
    """'kvm' only with real hardware virtualisation; else 'tcg'.

    A /dev/kvm backed by kvm_pvm (a software stand-in, no vmx/svm flag) aborts
    `-cpu host` and hangs unmodified kernels, so it does not count."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return "kvm" if dev_kvm and not kvm_pvm_loaded and flags & {"vmx", "svm"} else "tcg"


def host_accelerator() -> str:
    return accelerator(Path("/proc/cpuinfo").read_text(), Path("/sys/module/kvm_pvm").exists(),
                       os.access("/dev/kvm", os.R_OK | os.W_OK))


@dataclass(frozen=True)
class Files:
    """A lab's runtime files, all in its own folder."""
    dir: Path

    pidfile = property(lambda self: self.dir / "qemu.pid")
    monitor = property(lambda self: self.dir / "monitor.sock")
    console = property(lambda self: self.dir / "console.log")
    data = property(lambda self: self.dir / "data.img")
    conf = property(lambda self: self.dir / "conf.img")


def argv(fs: rootfs.Rootfs, files: Files, port: int, accel: str, cpus: int = 2) -> list[str]:
    """The QEMU command line for one lab. The NIC is user-mode with restrict=on: the guest reaches
    nothing outside; only the one forward, bound to 127.0.0.1, reaches dockerd's TLS port."""
    cmdline = "root=/dev/vda rw console=ttyS0 apparmor=0 net.ifnames=0 panic=-1"
    return [
        "qemu-system-x86_64", "-name", "harness-kernel-lab",
        *(["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi"]),
        "-smp", str(cpus), "-m", str(MEMORY_MB),
        "-kernel", str(fs.kernel), "-initrd", str(fs.initrd), "-append", cmdline,
        # The root image is shared by every lab on it and cached: writes go to a throwaway overlay.
        "-drive", f"file={fs.image},format=raw,if=virtio,snapshot=on",
        "-drive", f"file={files.data},format=raw,if=virtio",
        "-drive", f"file={files.conf},format=raw,if=virtio,readonly=on",
        "-nic", f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{rootfs.GUEST_PORT}",
        "-display", "none", "-serial", f"file:{files.console}",
        "-monitor", f"unix:{files.monitor},server=on,wait=off",
        "-no-reboot", "-daemonize", "-pidfile", str(files.pidfile),
    ]


def free_port() -> int:
    """A loopback port free now (QEMU binds it moments later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid(files: Files) -> int | None:
    """The running QEMU of this lab, or None (no pidfile, process gone, or the pid reused)."""
    try:
        n = int(files.pidfile.read_text().strip())
        cmd = Path(f"/proc/{n}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return n if b"qemu-system" in cmd and str(files.pidfile).encode() in cmd else None


def _wait_gone(n: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Path(f"/proc/{n}").exists() or _zombie(n):
            return True
        time.sleep(0.2)
    return False


def _zombie(n: int) -> bool:
    try:
        return Path(f"/proc/{n}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stop(files: Files, graceful_s: float) -> bool:
    """Stop the lab's QEMU; True if one was running. Power-off first (the data disk is then clean)."""
    n = pid(files)
    if n is None:
        files.pidfile.unlink(missing_ok=True)
        return False
    if graceful_s > 0:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(files.monitor))
                s.sendall(b"system_powerdown\n")
                time.sleep(0.5)  # let the monitor read it before we hang up
        except OSError:
            pass
    for sig, wait in ((None, graceful_s), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if sig is not None:
            try:
                os.kill(n, sig)
            except ProcessLookupError:
                break
        if _wait_gone(n, wait):
            break
    files.pidfile.unlink(missing_ok=True)
    files.monitor.unlink(missing_ok=True)
    return True
