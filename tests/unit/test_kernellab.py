from pathlib import Path

import pytest

from harness import cli
from harness.errors import EnvironmentProblem
from harness.kernellab import context, kernel, proc, qemu, rootfs, tls
from harness.machine import tools

AVAILABLE = [
    "linux-image-6.1.0-47-cloud-amd64", "linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-56-amd64",
    "linux-image-6.1.0-56-cloud-amd64-dbg", "linux-image-6.1.0-56-cloud-amd64-unsigned",
    "linux-image-6.12-cloud-amd64", "linux-image-6.12-amd64-signed-template",
    "linux-image-6.12.100+deb12-cloud-amd64", "linux-image-6.12.117+deb12-cloud-amd64",
    "linux-image-6.1.0-9-cloud-amd64",
]
INTEL = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
PLAIN = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n"


def test_kvm_only_with_hardware_virtualisation_and_a_real_kvm():
    assert qemu.accelerator(INTEL, kvm_pvm_loaded=False, dev_kvm=True) == "kvm"
    assert qemu.accelerator(INTEL.replace("vmx", "svm"), kvm_pvm_loaded=False, dev_kvm=True) == "kvm"
    # this machine: /dev/kvm is kvm_pvm's stand-in and the CPU has no vmx/svm
    assert qemu.accelerator(PLAIN, kvm_pvm_loaded=True, dev_kvm=True) == "tcg"
    assert qemu.accelerator(INTEL, kvm_pvm_loaded=True, dev_kvm=True) == "tcg"
    assert qemu.accelerator(PLAIN, kvm_pvm_loaded=False, dev_kvm=True) == "tcg"
    assert qemu.accelerator(INTEL, kvm_pvm_loaded=False, dev_kvm=False) == "tcg"


def test_kernel_version_picks_the_newest_concrete_cloud_package():
    assert kernel.resolve("6.1", AVAILABLE) == "linux-image-6.1.0-56-cloud-amd64"  # 56 > 47 > 9, numerically
    assert kernel.resolve("6.12", AVAILABLE) == "linux-image-6.12.117+deb12-cloud-amd64"  # not the meta-package
    assert kernel.resolve("6.1.0-47", AVAILABLE) == "linux-image-6.1.0-47-cloud-amd64"
    assert kernel.resolve("6.1", AVAILABLE, flavour="amd64") == "linux-image-6.1.0-56-amd64"


def test_kernel_package_names_and_missing_ones():
    assert kernel.resolve("linux-image-6.1.0-47-cloud-amd64", AVAILABLE) == "linux-image-6.1.0-47-cloud-amd64"
    with pytest.raises(EnvironmentProblem, match="linux-image-5.10.0-1-amd64 is not known to apt"):
        kernel.resolve("linux-image-5.10.0-1-amd64", AVAILABLE)
    with pytest.raises(EnvironmentProblem, match="no Debian kernel package for '5.10'"):
        kernel.resolve("5.10", AVAILABLE)
    with pytest.raises(EnvironmentProblem):
        kernel.resolve("6.1.0-5", AVAILABLE)  # 6.1.0-56 is not 6.1.0-5
    assert kernel.release("linux-image-6.12.117+deb12-cloud-amd64") == "6.12.117+deb12-cloud-amd64"


def test_missing_tools_name_their_packages(monkeypatch):
    assert tools.missing(["qemu-system-x86_64", "mke2fs"], lambda t: None if t == "mke2fs" else "/x") == ["mke2fs"]
    monkeypatch.setattr(tools.shutil, "which", lambda t: None)
    with pytest.raises(EnvironmentProblem) as exc:
        proc.need("qemu-system-x86_64", "mmdebstrap")
    assert str(exc.value) == ("the kernel lab needs qemu-system-x86_64, mmdebstrap, not installed here "
                              "(apt-get install -y mmdebstrap qemu-system-x86, or harness setup --kernel-lab)")


def test_qemu_argv_forwards_only_loopback_and_shares_the_root_read_only(tmp_path):
    fs = rootfs.Rootfs(tmp_path / "rootfs", "linux-image-6.1.0-56-cloud-amd64")
    files = qemu.Files(tmp_path / "lab")
    argv = qemu.argv(fs, files, 40123, "tcg")
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi" and "-cpu" not in argv
    assert argv[argv.index("-smp") + 1] == "2"
    nic = argv[argv.index("-nic") + 1]
    assert nic == "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:40123-:2376"
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0] == f"file={fs.image},format=raw,if=virtio,snapshot=on"  # /dev/vda, the root
    assert drives[1] == f"file={files.data},format=raw,if=virtio"
    assert drives[2].endswith("readonly=on")
    assert "apparmor=0" in argv[argv.index("-append") + 1].split()
    # the pidfile path in the command line is how pid() knows the process is this lab's QEMU
    assert argv[argv.index("-pidfile") + 1] == str(files.pidfile) and "-daemonize" in argv
    kvm = qemu.argv(fs, files, 40123, "kvm")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"


def test_a_pidfile_of_another_process_is_not_our_vm(tmp_path):
    files = qemu.Files(tmp_path)
    assert qemu.pid(files) is None
    files.pidfile.write_text("1\n")  # init: alive, but not QEMU with our pidfile
    assert qemu.pid(files) is None
    assert qemu.stop(files, 0) is False and not files.pidfile.exists()


def test_rootfs_key_follows_what_goes_into_the_image(monkeypatch):
    a = rootfs.key("linux-image-6.1.0-56-cloud-amd64")
    assert a == rootfs.key("linux-image-6.1.0-56-cloud-amd64")
    assert a != rootfs.key("linux-image-6.1.0-47-cloud-amd64")
    monkeypatch.setattr(rootfs, "PACKAGES", (*rootfs.PACKAGES, "tcpdump"))
    assert a != rootfs.key("linux-image-6.1.0-56-cloud-amd64")
    argv = rootfs.mmdebstrap_argv("linux-image-6.1.0-56-cloud-amd64", Path("/t/root.tar"))
    assert argv[-2:] == ["bookworm", "/t/root.tar"]
    assert "docker.io" in argv[2] and argv[2].endswith(",linux-image-6.1.0-56-cloud-amd64")


def test_tls_commands_sign_both_certificates_with_the_lab_ca():
    cmds = tls.commands(Path("/s"), "lab1")
    signed = [c for c in cmds if c[1] == "x509"]
    assert len(signed) == 2
    for c, side in zip(signed, ("server", "client")):
        assert c[c.index("-CA") + 1] == "/s/ca.pem" and c[c.index("-CAkey") + 1] == "/s/ca-key.pem"
        assert c[c.index("-out") + 1] == f"/s/{side}/cert.pem"
    assert "IP:127.0.0.1" in tls.SERVER_EXT and "clientAuth" in tls.CLIENT_EXT
    ca = tls.commands(Path("/s"), "debian-6.12.117+deb12-cloud-amd64")[1]
    assert ca[ca.index("-subj") + 1] == r"/CN=harness kernel-lab debian-6.12.117\+deb12-cloud-amd64 CA"


def test_context_and_environment_point_at_the_loopback_port():
    argv = context.create_argv("lab1", 40123, Path("/c"), "linux-image-6.1.0-56-cloud-amd64")
    assert argv[:4] == ["docker", "context", "create", "lab1"]
    assert argv[argv.index("--docker") + 1] == \
        "host=tcp://127.0.0.1:40123,ca=/c/ca.pem,cert=/c/cert.pem,key=/c/key.pem"
    assert argv[argv.index("--description") + 1].startswith(context.MARK)
    assert context.env(40123, Path("/c")) == {
        "DOCKER_HOST": "tcp://127.0.0.1:40123", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}


def test_lab_names_are_context_names(capsys):
    assert cli.parser().parse_args(["kernel-lab", "down", "debian-6.12.117+deb12-cloud-amd64"]).name
    assert cli.main(["kernel-lab", "down", "a/b"]) == cli.Exit.BAD_INPUT
    assert "'a/b': letters, digits and _.+-" in capsys.readouterr().err


def test_up_without_qemu_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed
    assert cli.main(["kernel-lab", "up"]) == cli.Exit.ENVIRONMENT
    assert capsys.readouterr().err == (
        "harness: the kernel lab needs qemu-system-x86_64, mke2fs, openssl, docker, not installed here "
        "(apt-get install -y docker.io e2fsprogs openssl qemu-system-x86, or harness setup --kernel-lab)\n")


def test_up_with_an_unknown_kernel_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(tools.shutil, "which", lambda t: f"/usr/bin/{t}")
    monkeypatch.setattr(kernel, "available", lambda: AVAILABLE)
    assert cli.main(["kernel-lab", "up", "--kernel", "5.10"]) == cli.Exit.ENVIRONMENT
    assert capsys.readouterr().err.startswith(
        "harness: no Debian kernel package for '5.10' (cloud-amd64) is known to apt here")
