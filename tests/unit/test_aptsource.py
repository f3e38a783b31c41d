"""deb-src entry derived from the machine's own Debian apt sources (fake /etc/apt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykubemark.provision import aptsource


@pytest.fixture
def apt_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    monkeypatch.setattr(aptsource, "_codename", lambda: "bookworm")
    return tmp_path


def _write(path: Path, text: str) -> None:
    path.write_text(text)


DEBIAN_SOURCES = """\
# Modernized from /etc/apt/sources.list
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
# a comment inside the stanza
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian
Suites: bookworm
Components: non-free
Enabled: no
"""


def test_deb822_sources_copy_main_stanza_only(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "debian.sources", DEBIAN_SOURCES)
    entries = aptsource.find_debian_entries(apt_dir)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["URIs"] == "http://deb.debian.org/debian"
    assert entry["Suites"] == "bookworm bookworm-updates"
    assert entry["Components"] == "main contrib"
    assert entry["Signed-By"] == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_deb822_source_entry_text(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "debian.sources", DEBIAN_SOURCES)
    text = aptsource.source_entry_text(apt_dir)
    assert text.startswith("#")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "Types: deb-src",
        "URIs: http://deb.debian.org/debian",
        "Suites: bookworm bookworm-updates",
        "Components: main contrib",
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
    ]
    assert text.endswith("\n")


def test_deb822_two_main_stanzas_give_two_blocks(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "a.sources", """\
Types: deb
URIs: http://one.example/debian
Suites: bookworm
Components: main

Types: deb deb-src
URIs: http://two.example/debian
Suites: bookworm
Components: main non-free-firmware
""")
    text = aptsource.source_entry_text(apt_dir)
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) == 2
    assert "URIs: http://one.example/debian" in blocks[0]
    assert "URIs: http://two.example/debian" in blocks[1]
    assert "Components: main non-free-firmware" in blocks[1]
    assert text.count("Types: deb-src") == 2
    assert "Signed-By" not in text


def test_deb822_other_release_and_deb_src_only_ignored(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "x.sources", """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
""")
    assert aptsource.find_debian_entries(apt_dir) == []


def test_deb822_inline_signed_by_key_survives(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "k.sources", """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD9K6DJbeh+yd6R9Ff
 -----END PGP PUBLIC KEY BLOCK-----
""")
    text = aptsource.source_entry_text(apt_dir)
    # continuation lines keep their leading space so apt reads them as one field
    assert "\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n" in text
    assert text.rstrip().endswith(" -----END PGP PUBLIC KEY BLOCK-----")


def test_our_own_file_is_not_a_source(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / aptsource.OUR_FILE, """\
Types: deb
URIs: http://ours.example/debian
Suites: bookworm
Components: main
""")
    assert aptsource.find_debian_entries(apt_dir) == []


def test_one_line_sources_list_plain(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list", """\
# deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb http://deb.debian.org/debian bookworm main contrib  # trailing comment
deb-src http://deb.debian.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-updates main
""")
    entries = aptsource.find_debian_entries(apt_dir)
    assert entries == [
        {"URIs": "http://deb.debian.org/debian", "Suites": "bookworm",
         "Components": "main contrib"},
    ]


def test_one_line_with_signed_by_option(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list.d" / "debian.list",
           "deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] "
           "http://deb.debian.org/debian bookworm main\n")
    entries = aptsource.find_debian_entries(apt_dir)
    assert entries == [
        {"URIs": "http://deb.debian.org/debian", "Suites": "bookworm", "Components": "main",
         "Signed-By": "/usr/share/keyrings/debian.gpg"},
    ]
    text = aptsource.source_entry_text(apt_dir)
    assert "Signed-By: /usr/share/keyrings/debian.gpg" in text
    assert "arch" not in text


def test_one_line_with_spaced_options(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list",
           "deb [ signed-by=/k.gpg ] http://deb.debian.org/debian bookworm main\n")
    assert aptsource.find_debian_entries(apt_dir) == [
        {"URIs": "http://deb.debian.org/debian", "Suites": "bookworm", "Components": "main",
         "Signed-By": "/k.gpg"},
    ]


def test_no_debian_entry_is_lookup_error(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list", "deb http://archive.ubuntu.com/ubuntu jammy main\n")
    with pytest.raises(LookupError, match="bookworm"):
        aptsource.source_entry_text(apt_dir)
    with pytest.raises(LookupError):
        aptsource.ensure_source_entry(apt_dir)
    assert not (apt_dir / "sources.list.d" / aptsource.OUR_FILE).exists()


def test_unknown_codename_finds_nothing(apt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aptsource, "_codename", lambda: "")
    _write(apt_dir / "sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    assert aptsource.find_debian_entries(apt_dir) == []


def test_ensure_source_entry_writes_once(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    target = apt_dir / "sources.list.d" / aptsource.OUR_FILE
    assert aptsource.ensure_source_entry(apt_dir) is True
    first = target.read_text()
    assert "Types: deb-src" in first
    assert "URIs: http://deb.debian.org/debian" in first
    # our own file does not feed back into the next derivation
    assert aptsource.ensure_source_entry(apt_dir) is False
    assert target.read_text() == first


def test_ensure_source_entry_rewrites_stale_file(apt_dir: Path) -> None:
    _write(apt_dir / "sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    target = apt_dir / "sources.list.d" / aptsource.OUR_FILE
    target.write_text("Types: deb-src\nURIs: http://old.example/debian\n")
    assert aptsource.ensure_source_entry(apt_dir) is True
    assert "old.example" not in target.read_text()
    assert aptsource.ensure_source_entry(apt_dir) is False


def test_codename_reads_os_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\nID=debian\n')
    real_path = aptsource.Path

    def fake_path(name: str) -> Path:
        return release if name == "/etc/os-release" else real_path(name)

    monkeypatch.setattr(aptsource, "Path", fake_path)
    assert aptsource._codename() == "bookworm"
    release.write_text('VERSION_CODENAME="trixie"\n')
    assert aptsource._codename() == "trixie"
    release.write_text("ID=debian\n")
    assert aptsource._codename() == ""
