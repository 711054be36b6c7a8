"""Builds the add-on's image as a directory tree, without Docker: the Dockerfile's steps run in
a Debian trixie root made by mmdebstrap, the base of Home Assistant's `*-base-debian:trixie`
images.

No Docker engine runs on this machine, but the part of the image that can break (Debian's
Python, the wheels pip picks for it, the model conversion, the installed console script) is
the same in a chroot. The HA base image adds s6-overlay, bashio and tempio on top of Debian:
they are not here, so the run script is started with a stand-in for bashio (see the test).

Like Docker's build cache, each COPY/RUN step's result is kept under a key hashing every
step before it and the files it copies, outside the checkout (EDGE_INFERENCE_CACHE, default
~/.cache/edge-inference): a change to the server's source re-runs only the steps from the
`COPY inference_server` on, not the dependency downloads.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGE_INFERENCE_CACHE", Path.home() / ".cache" / "edge-inference"))
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
# What ghcr.io/home-assistant/*-base-debian installs from Debian (its Dockerfile's apt-get line).
BASE_PACKAGES = ("bash", "ca-certificates", "curl", "jq", "tzdata")
# The build host's trust and name resolution, as Docker gives a build (the proxy here
# re-signs TLS with this machine's CA).
HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt")
BUILD_ENV = {
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
# The detector files the install step would download from upstream (GitHub, unreachable here):
# bind-mounted read-only for RUN steps from the local model cache (as `RUN --mount=type=bind`),
# and named by the variable inference_server.models.install_default reads.
MODEL_CACHE = Path(os.environ.get("EDGE_INFERENCE_MODEL_CACHE", ROOT.parent / "shared" / "models"))
MODEL_CACHE_MOUNT = "/run/model-cache"
MMDEBSTRAP_ARGS = (
    "--variant=apt",
    '--aptopt=Acquire::Check-Valid-Until "false"',
    f"--include={','.join(BASE_PACKAGES)}",
    SUITE,
)


@dataclass(frozen=True)
class Step:
    """One Dockerfile instruction, continuation lines joined."""

    kind: str
    args: str


def parse_dockerfile(text: str) -> list[Step]:
    steps: list[Step] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):  # comments inside a continued RUN
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        kind, _, args = logical.partition(" ")
        steps.append(Step(kind.upper(), args.strip()))
        logical = ""
    return steps


def _expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), text)


def _key_value_pairs(args: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


def _tree_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(oct(file.stat().st_mode & 0o777).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{shlex.join(cmd[:4])}... failed ({result.returncode}):\n{tail}")


@contextmanager
def mounted(root: Path, *, model_cache: bool = False) -> Iterator[None]:
    """/proc for the processes inside the root (Python's os.sched_getaffinity, pip); for build
    steps also the model cache, read-only."""
    proc = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    cache = root / MODEL_CACHE_MOUNT.lstrip("/")
    bound = False
    try:
        if model_cache and MODEL_CACHE.is_dir():
            cache.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", "-o", "ro", str(MODEL_CACHE), str(cache)],
                           check=True)  # fmt: skip
            bound = True
        yield
    finally:
        if bound:
            subprocess.run(["umount", "-l", str(cache)], check=False)
            with suppress(OSError):  # left in the image otherwise, empty
                cache.rmdir()
        subprocess.run(["umount", "-l", str(proc)], check=False)


def _copy_tree(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def base_root(log: Path) -> Path:
    key = hashlib.sha256(repr((MMDEBSTRAP_ARGS, MIRROR)).encode()).hexdigest()[:16]
    root = CACHE / "roots" / f"base-{key}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    _run(["mmdebstrap", *MMDEBSTRAP_ARGS, str(root), MIRROR], log)
    (root / ".complete").touch()
    return root


def build(dockerfile: Path, context: Path, build_args: dict[str, str], log: Path) -> Path:
    """Run the Dockerfile's steps; return the finished root (cached by its inputs)."""
    try:
        return _build(dockerfile, context, build_args, log)
    finally:  # a failed step leaves its half-built copy behind
        shutil.rmtree(CACHE / "roots" / f"work-{os.getpid()}", ignore_errors=True)


def _build(dockerfile: Path, context: Path, build_args: dict[str, str], log: Path) -> Path:
    current = base_root(log)
    key = current.name
    variables: dict[str, str] = dict(build_args)
    env: dict[str, str] = {}
    work: Path | None = None
    made: list[Path] = [current]
    steps = parse_dockerfile(dockerfile.read_text(encoding="utf-8"))
    for index, step in enumerate(steps):
        if step.kind == "ARG":
            for name, default in _key_value_pairs(step.args).items():
                variables.setdefault(name, _expand(default, variables))
            continue
        if step.kind == "ENV":
            for name, value in _key_value_pairs(step.args).items():
                env[name] = _expand(value, {**BUILD_ENV, **variables, **env})
            continue
        if step.kind in ("FROM", "LABEL", "EXPOSE"):
            continue  # FROM: the base root stands in for the HA base image
        if step.kind not in ("COPY", "RUN"):
            raise ValueError(f"unsupported instruction {step.kind}")
        text = _expand(step.args, variables)
        inputs = ""
        if step.kind == "COPY":
            *sources, _ = text.split()
            inputs = _tree_digest([context / s for s in sources])
        key = hashlib.sha256(f"{key}\n{step.kind} {text}\n{inputs}\n{env}".encode()).hexdigest()
        layer = CACHE / "roots" / f"layer-{key[:16]}"
        if work is None and (layer / ".complete").exists():
            current = layer
            made.append(layer)
            continue
        if work is None:  # first step that is not cached: work on a copy of the last one
            work = CACHE / "roots" / f"work-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            _copy_tree(current, work)
            (work / ".complete").unlink(missing_ok=True)
            for host_file in HOST_FILES:
                shutil.copyfile(host_file, work / host_file.lstrip("/"))
        if step.kind == "COPY":
            *sources, target = text.split()
            for source in sources:
                src = context / source
                dest = work / target.lstrip("/")
                if src.is_dir():
                    shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)
        else:
            run_env = {**BUILD_ENV, **env, "EDGE_INFERENCE_MODEL_CACHE": MODEL_CACHE_MOUNT}
            with mounted(work, model_cache=True):
                _run(
                    [
                        "chroot",
                        str(work),
                        "/usr/bin/env",
                        "-i",
                        *(f"{k}={v}" for k, v in run_env.items()),
                        "/bin/bash",
                        "-o",
                        "pipefail",
                        "-c",
                        text,
                    ],
                    log,
                )
        remaining = [s for s in steps[index + 1 :] if s.kind in ("COPY", "RUN")]
        if step.kind == "RUN" or not remaining:  # keep a snapshot after each RUN
            shutil.rmtree(layer, ignore_errors=True)
            if remaining:
                _copy_tree(work, layer)
            else:
                work.rename(layer)
                work = None
            (layer / ".complete").touch()
            made.append(layer)
            current = layer
    _prune(keep=set(made))
    (current / "etc" / "edge-inference-image.env").write_text(
        "".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8"
    )
    return current


def _prune(keep: set[Path]) -> None:
    """Drop layers no longer on this build's chain (one checkout, one chain)."""
    for path in (CACHE / "roots").glob("layer-*"):
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


def image_env(root: Path) -> dict[str, str]:
    """The ENV lines of the Dockerfile, as the container would have them."""
    env: dict[str, str] = {}
    for line in (root / "etc" / "edge-inference-image.env").read_text("utf-8").splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env
