"""The lab's images: built from images/Dockerfile when missing, tagged by content.

The Dockerfile starts `FROM ${BASE_IMAGE}` (debian:bookworm-slim). When that
cannot be pulled (no registry), we make the same Debian locally with
mmdebstrap from the host's own apt sources and `docker import` it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from harness.errors import EnvironmentProblem, LabError, SpecError
from harness.lab.engine import LABEL, translated
from harness.servers import ServerSpec

REGISTRY_BASE = "debian:bookworm-slim"
LOCAL_BASE_REPO = "harness-base"
TARGETS = ("server", "client", "probe")
Say = Callable[[str], None]


def images_dir() -> Path:
    """The images' build context: shipped in the package (harness/images, a link to the
    checkout's images/), so any install can build them; HARNESS_IMAGES overrides it."""
    d = Path(os.environ.get("HARNESS_IMAGES", Path(__file__).resolve().parents[1] / "images"))
    if not (d / "Dockerfile").is_file():
        raise EnvironmentProblem(f"no Dockerfile in {d}: this install of the harness is incomplete; "
                                 "reinstall it, or set HARNESS_IMAGES to an images/ folder")
    return d


def _content_hash(root: Path, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _packages(root: Path) -> list[str]:
    return sorted({line.strip() for f in (root / "apt").glob("*.txt")
                   for line in f.read_text().splitlines() if line.strip()})


@dataclass(frozen=True)
class ImageSet:
    base: str
    base_origin: str  # "registry", "local mmdebstrap", or "given"
    tags: dict[str, str]  # target -> tag
    ids: dict[str, str]  # target -> image id

    def __getitem__(self, target: str) -> str:
        return self.tags[target]


def _exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def local_base_tag(root: Path) -> str:
    """The locally made base's tag: named by the packages it holds."""
    return f"{LOCAL_BASE_REPO}:bookworm-{hashlib.sha256(' '.join(_packages(root)).encode()).hexdigest()[:12]}"


def _make_local_base(client: docker.DockerClient, root: Path, say: Say) -> str:
    pkgs = _packages(root)
    tag = local_base_tag(root)
    if _exists(client, tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        raise EnvironmentProblem(
            f"cannot pull {REGISTRY_BASE} and mmdebstrap is not installed to make a local base; "
            "install it (apt-get install -y mmdebstrap) or pass --base-image IMAGE"
        )
    say(f"no registry reachable: making a local Debian base {tag} with mmdebstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="harness-base-") as tmp:
        tar = Path(tmp) / "base.tar"
        cmd = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(pkgs)}", "bookworm", str(tar)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise EnvironmentProblem(f"mmdebstrap failed (exit {proc.returncode}): {tail}")
        repo, _, version = tag.partition(":")
        with translated(f"importing the local base {tag}"):
            client.api.import_image(src=str(tar), repository=repo, tag=version,
                                    changes=[f"LABEL {LABEL}=base", 'CMD ["bash"]'])
    return tag


def resolve_base(client: docker.DockerClient, root: Path, say: Say, given: str | None) -> tuple[str, str]:
    if given:
        if not _exists(client, given):
            with translated(f"pulling the base image {given}"):
                client.images.pull(given)
        return given, "given"
    if _exists(client, REGISTRY_BASE):
        return REGISTRY_BASE, "registry"
    try:
        client.images.pull(REGISTRY_BASE)
        return REGISTRY_BASE, "registry"
    except docker.errors.APIError:
        return _make_local_base(client, root, say), "local mmdebstrap"


@dataclass(frozen=True)
class BaseSource:
    """Where the next run's base image comes from, found without pulling or building anything."""

    origin: str  # "registry" or "local mmdebstrap"; "" when neither can give one
    image: str
    present: bool  # already on the engine


def base_source(client: docker.DockerClient) -> BaseSource:
    root = images_dir()
    local = local_base_tag(root)
    with translated("looking up images"):
        for image, origin in ((REGISTRY_BASE, "registry"), (local, "local mmdebstrap")):
            if _exists(client, image):
                return BaseSource(origin, image, True)
    try:
        client.api.inspect_distribution(REGISTRY_BASE)  # asks the registry, downloads nothing
        return BaseSource("registry", REGISTRY_BASE, False)
    except (docker.errors.APIError, docker.errors.DockerException):
        pass
    return BaseSource("local mmdebstrap" if shutil.which("mmdebstrap") else "", local, False)


def _build(client: docker.DockerClient, root: Path, target: str, tag: str, base: str, say: Say) -> None:
    say(f"building image {tag} (target {target}) from {base}")
    log: list[str] = []
    with translated(f"building image {tag}"):
        for chunk in client.api.build(path=str(root), target=target, tag=tag, rm=True, forcerm=True,
                                      buildargs={"BASE_IMAGE": base}, labels={LABEL: "image"},
                                      decode=True):
            if "error" in chunk:
                raise LabError(f"building image {tag}", chunk["error"].strip(), "".join(log[-20:]))
            line = chunk.get("stream", "")
            log.append(line)
            if line.startswith("Step "):
                say(f"  {target}: {line.strip()}")


def _tags(client: docker.DockerClient, root: Path, base: str) -> dict[str, str]:
    """Each target's tag: named by the build context's content and the base it builds on."""
    with translated("looking up images"):
        digest = _content_hash(root, client.images.get(base).id)
    return {t: f"harness-{t}:{digest}" for t in TARGETS}


def present_tags(client: docker.DockerClient) -> dict[str, str]:
    """The current lab images the engine already has (none before a base exists)."""
    base = base_source(client)
    if not base.present:
        return {}
    with translated("looking up images"):
        return {t: tag for t, tag in _tags(client, images_dir(), base.image).items() if _exists(client, tag)}


def ensure(client: docker.DockerClient, say: Say, base_image: str | None = None,
           force: bool = False) -> ImageSet:
    """Every lab image present and current; builds what is missing (or all, with force)."""
    root = images_dir()
    with translated("looking up images"):
        base, origin = resolve_base(client, root, say, base_image)
    tags = _tags(client, root, base)
    for target, tag in tags.items():
        if force or not _exists(client, tag):
            _build(client, root, target, tag, base, say)
    with translated("looking up images"):
        ids = {t: client.images.get(tag).id for t, tag in tags.items()}
    return ImageSet(base, origin, tags, ids)


COPY_CHUNK = 1 << 20
COPY_NOTE_S = 15  # a progress line this often


def copy(refs: list[str], src_env: dict[str, str], dst_env: dict[str, str], say: Say) -> None:
    """Images from one engine to another (`docker save | docker load`, in one tarball, so shared
    layers go once), for an engine with no registry to pull from; the CLI's environments name them."""
    if shutil.which("docker") is None:
        raise EnvironmentProblem("copying images between engines needs the docker CLI (apt-get install -y docker.io)")
    say(f"copying {len(refs)} image(s) to the engine: {', '.join(refs)}")
    t0 = time.monotonic()
    save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=src_env)
    load = subprocess.Popen(["docker", "load", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dst_env)
    sent, next_note = 0, t0 + COPY_NOTE_S
    try:
        assert save.stdout is not None and load.stdin is not None
        while chunk := save.stdout.read(COPY_CHUNK):
            load.stdin.write(chunk)
            sent += len(chunk)
            if time.monotonic() >= next_note:
                say(f"  {sent / 1e6:.0f} MB sent in {time.monotonic() - t0:.0f} s")
                next_note += COPY_NOTE_S
        load.stdin.close()
        say(f"  {sent / 1e6:.0f} MB sent; the engine is unpacking them")
    except BrokenPipeError:  # load gave up: its output says why
        save.kill()
    except BaseException:
        for proc in (save, load):
            proc.kill()
            proc.wait()
        raise
    # Not communicate(): stdin is closed already, which it does not take on every Python.
    out = load.stdout.read().decode(errors="replace") if load.stdout else ""
    save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
    load.wait()
    save.wait()
    if load.returncode != 0:
        raise LabError("loading the images into the engine", out.strip()[-300:])
    if save.returncode != 0:
        raise LabError("saving the images", save_err.strip()[-300:])
    say(f"images copied: {sent / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s")


GUEST_REPO = "harness-guest"
KEEPER_PATH = "/usr/local/bin/server-keeper"  # where a guest image has it
_UNKNOWN_PACKAGE = re.compile(r"Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation candidate")


def guest(client: docker.DockerClient, server: ServerSpec, images: ImageSet, source: str, say: Say) -> ImageSet:
    """The images with the user's server's added as "guest": their image (or the harness's base with
    their Debian packages) with server-keeper in it, tagged by what it is made of, built once."""
    if server.image is not None:
        with translated(f"looking up the server's image {server.image}"):
            if not _exists(client, server.image):
                raise SpecError(source, "server.image", f"{server.image} is not on the engine; pull or build it "
                                                        "first, or give server.packages instead")
            start = client.images.get(server.image).id
    else:
        with translated("looking up images"):
            start = client.images.get(images.base).id
    install = (f"RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
               f"{' '.join(server.packages)} && rm -rf /var/lib/apt/lists/*\n" if server.packages else "")
    dockerfile = (f"FROM {server.image or images.base}\n{install}"
                  f"COPY --from={images['probe']} {KEEPER_PATH} {KEEPER_PATH}\n")
    tag = f"{GUEST_REPO}:{hashlib.sha256((start + images.ids['probe'] + dockerfile).encode()).hexdigest()[:12]}"
    if not _exists(client, tag):
        what = server.image or ", ".join(server.packages)
        say(f"building the server's image {tag} from {what}")
        log: list[str] = []
        with translated(f"building image {tag}"):
            for chunk in client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True,
                                          labels={LABEL: "image"}, decode=True):
                log.append(chunk.get("stream", ""))
                if "error" in chunk:
                    unknown = _UNKNOWN_PACKAGE.search("".join(log))
                    if unknown:
                        raise SpecError(source, "server.packages", f"apt does not know {unknown.group(1) or unknown.group(2)} "
                                                                   "(a Debian bookworm package name is wanted)")
                    raise LabError(f"building image {tag}", chunk["error"].strip(), "".join(log[-20:]))
    with translated("looking up images"):
        return ImageSet(images.base, images.base_origin, {**images.tags, "guest": tag},
                        {**images.ids, "guest": client.images.get(tag).id})


def present(client: docker.DockerClient, images: ImageSet) -> ImageSet | None:
    """The same images on another engine, if it has every one (tags are content hashes)."""
    with translated("looking up images"):
        if not all(_exists(client, ref) for ref in (images.base, *images.tags.values())):
            return None
        return ImageSet(images.base, images.base_origin, images.tags,
                        {t: client.images.get(tag).id for t, tag in images.tags.items()})
