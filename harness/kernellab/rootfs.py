"""The VM's disk: Debian bookworm with docker.io and one kernel package, built once and cached.

mmdebstrap writes a tarball (it mounts and cleans its own chroot), which we
unpack, add the guest's configuration to, and turn into an ext4 image with
`mke2fs -d`. The image is keyed by everything that goes into it, so a change
here or another kernel builds a new one and an unchanged one is reused. VMs
boot it with QEMU's snapshot=on: they share it and never change it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem
from harness.kernellab import home, kernel, proc

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "udev", "dbus", "kmod", "iproute2", "nftables", "docker.io")
GUEST_PORT = 2376  # dockerd's TLS port inside the guest
GUEST_ADDR = "10.0.2.15/24"  # QEMU user networking's guest address; hostfwd targets it
CONF_MOUNT = "/etc/harness-lab"  # the per-lab disk with the server's TLS files
DATA_LABEL, CONF_LABEL = "harness-data", "harness-conf"
ROOT_SIZE = "2G"  # sparse; images and containers live on the data disk

# What the guest adds to a stock Debian: a static address (no DHCP wait), the
# data disk as /var/lib/docker (so images survive the VM), dockerd on TLS only,
# and the modules the netem backend uses, loaded before any probe.
GUEST_FILES = {
    "etc/hostname": "harness-lab\n",
    "etc/fstab": f"LABEL={DATA_LABEL} /var/lib/docker ext4 defaults 0 0\n"
                 f"LABEL={CONF_LABEL} {CONF_MOUNT} ext2 ro 0 0\n",
    "etc/systemd/network/10-eth0.network": f"[Match]\nName=eth0\n[Network]\nAddress={GUEST_ADDR}\n"
                                           "Gateway=10.0.2.2\n",
    "etc/default/docker": f'DOCKER_OPTS="-H tcp://0.0.0.0:{GUEST_PORT} --tlsverify '
                          f"--tlscacert={CONF_MOUNT}/ca.pem --tlscert={CONF_MOUNT}/cert.pem "
                          f'--tlskey={CONF_MOUNT}/key.pem"\n',
    "etc/systemd/system/docker.service.d/harness-lab.conf":
        f"[Unit]\nRequiresMountsFor=/var/lib/docker {CONF_MOUNT}\n",
    "etc/modules-load.d/harness-lab.conf": "ifb\nsch_ingress\nsch_netem\ncls_u32\nact_mirred\nnf_tables\n",
}
HOOKS = ('chroot "$1" systemctl enable systemd-networkd',)


@dataclass(frozen=True)
class Rootfs:
    dir: Path
    package: str

    @property
    def image(self) -> Path:
        return self.dir / "root.img"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"


def key(package: str) -> str:
    """Everything that goes into the image, hashed: the cache key."""
    what = json.dumps([SUITE, package, PACKAGES, GUEST_FILES, HOOKS], sort_keys=True)
    return hashlib.sha256(what.encode()).hexdigest()[:12]


def mmdebstrap_argv(package: str, tar: Path) -> list[str]:
    return ["mmdebstrap", "--variant=minbase", f"--include={','.join((*PACKAGES, package))}",
            *(f"--customize-hook={h}" for h in HOOKS), SUITE, str(tar)]


def cached(package: str) -> Rootfs:
    return Rootfs(home.home() / "rootfs" / f"{kernel.release(package)}-{key(package)}", package)


def ensure(package: str, say: Callable[[str], None]) -> Rootfs:
    """The disk image for this kernel package, built now if not cached."""
    fs = cached(package)
    if (fs.dir / "built.json").is_file():
        say(f"root filesystem: cached ({fs.dir})")
        return fs
    proc.need("mmdebstrap", "mke2fs", "tar")
    if os.geteuid() != 0:
        # mke2fs -d copies owners from the unpacked tree, which only root can unpack as is.
        raise EnvironmentProblem("building the kernel lab's disk image needs root (every file in it "
                                 "would belong to you otherwise); run this `up` as root")
    tmp = fs.dir.with_name(f".build-{fs.dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        t0 = time.monotonic()
        say(f"building a Debian {SUITE} root filesystem with {package} and docker.io (about 1-2 min)")
        proc.run(mmdebstrap_argv(package, tmp / "root.tar"), f"building the root filesystem with {package}",
                 lambda line: say(f"  {line}") if line.startswith("I: ") else None)
        tree = tmp / "tree"
        tree.mkdir()
        proc.run(["tar", "-xpf", str(tmp / "root.tar"), "--numeric-owner", "-C", str(tree)], "unpacking it")
        (tmp / "root.tar").unlink()
        for rel, text in GUEST_FILES.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        rel = kernel.release(package)
        shutil.copy(tree / "boot" / f"vmlinuz-{rel}", tmp / fs.kernel.name)
        shutil.copy(tree / "boot" / f"initrd.img-{rel}", tmp / fs.initrd.name)
        say(f"writing the ext4 image ({ROOT_SIZE}, sparse)")
        proc.run(["mke2fs", "-q", "-t", "ext4", "-L", "harness-root", "-d", str(tree),
                  str(tmp / fs.image.name), ROOT_SIZE], "writing the root filesystem image")
        shutil.rmtree(tree)
        seconds = round(time.monotonic() - t0, 1)
        (tmp / "built.json").write_text(json.dumps({"package": package, "suite": SUITE, "packages": PACKAGES,
                                                    "seconds": seconds}, indent=2))
        if not (fs.dir / "built.json").is_file():  # else another `up` built it meanwhile: keep theirs
            shutil.rmtree(fs.dir, ignore_errors=True)
            tmp.rename(fs.dir)
        say(f"root filesystem built in {seconds:.0f} s ({fs.dir})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fs
