"""The kernel lab: a Docker engine on a chosen Debian kernel, in a QEMU VM on this machine.

kernel (which package) -> rootfs (a cached disk image with it and docker.io) ->
tls (certificates, the only way in) -> qemu (the VM) -> boot (wait for dockerd,
through api) -> context (`docker --context NAME`) -> transfer (the harness's
images into it). lab.py strings them together for the CLI; home.py says where
the files live, proc.py runs the host's tools.
"""
