"""Give apt a ``deb-src`` entry for the Debian archive the machine already uses.

No archive address is written into pykubemark: the source entry is copied from the
machine's own Debian entry (deb822 ``.sources`` or one-line ``sources.list``), with only
its type changed, into a file of our own that is easy to find and remove.
"""

from __future__ import annotations

import re
from pathlib import Path

APT_DIR = Path("/etc/apt")
OUR_FILE = "pykubemark-src.sources"


def _codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([^\"\n]*)", text, re.M)
    return match.group(1) if match else ""


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key:
                fields[key] += "\n" + line
                continue
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def _is_main_debian(suites: list[str], codename: str) -> bool:
    return bool(codename) and codename in suites


def find_debian_entries(apt_dir: Path = APT_DIR) -> list[dict[str, str]]:
    """The machine's entries for its own Debian release, as deb822 fields."""
    codename = _codename()
    entries: list[dict[str, str]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        if path.name == OUR_FILE:
            continue
        for stanza in _deb822_stanzas(path.read_text()):
            if stanza.get("Enabled", "yes").lower() == "no":
                continue
            if "deb" in stanza.get("Types", "").split() and _is_main_debian(
                stanza.get("Suites", "").split(), codename
            ):
                entries.append(stanza)
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) < 4 or parts[0] != "deb":
                continue
            options = ""
            if parts[1].startswith("["):
                end = next(i for i, p in enumerate(parts) if p.endswith("]"))
                options = " ".join(parts[1 : end + 1]).strip("[]")
                parts = [parts[0], *parts[end + 1 :]]
            uri, suite, components = parts[1], parts[2], parts[3:]
            if not _is_main_debian([suite], codename):
                continue
            entry = {"URIs": uri, "Suites": suite, "Components": " ".join(components)}
            for option in options.split():
                name, _, value = option.partition("=")
                if name == "signed-by":
                    entry["Signed-By"] = value
            entries.append(entry)
    return entries


def source_entry_text(apt_dir: Path = APT_DIR) -> str:
    """deb822 text of ``deb-src`` entries mirroring the machine's Debian entries."""
    entries = find_debian_entries(apt_dir)
    if not entries:
        raise LookupError(
            f"no Debian apt source for release '{_codename()}' found under {apt_dir}"
        )
    blocks = []
    for entry in entries:
        fields = {"Types": "deb-src"}
        for key in ("URIs", "Suites", "Components", "Signed-By"):
            if key in entry:
                fields[key] = entry[key]
        blocks.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    header = "# Written by pykubemark: deb-src twin of this machine's Debian entry\n"
    return header + "\n\n".join(blocks) + "\n"


def ensure_source_entry(apt_dir: Path = APT_DIR) -> bool:
    """Write our deb-src file if it is missing or stale; True if it changed."""
    target = apt_dir / "sources.list.d" / OUR_FILE
    text = source_entry_text(apt_dir)
    if target.is_file() and target.read_text() == text:
        return False
    target.write_text(text)
    return True
