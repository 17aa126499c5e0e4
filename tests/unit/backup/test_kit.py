"""The recovery kit's tar: the same bytes for the same files, and only known names, as
regular files, come out of it (a kit is read from a repository someone else may hold)."""

from __future__ import annotations

import io
import tarfile

import pytest

from aini.backup import kit
from aini.controlplane import breakglass
from aini.controlplane.bootstrap import STATE_FILE
from aini.project import STORE_DIR
from aini.store import STORE_FILE

FILES = {"aini.yml": b"project: demo\n", ".aini/secrets.json": b'{"a": "b"}\n', ".aini/breakglass.enc": b"{}\n"}


def test_its_names_are_the_files_aini_keeps():
    assert kit.PRIVATE == tuple(f"{STORE_DIR}/{n}" for n in (STORE_FILE, STATE_FILE, breakglass.FILE_NAME,
                                                              breakglass.AGE_FILE_NAME))


def test_the_same_files_make_the_same_tar_and_come_back_whole():
    data = kit.pack(FILES)
    assert kit.pack(dict(reversed(list(FILES.items())))) == data
    assert kit.fingerprint(data) == kit.fingerprint(kit.pack(FILES)) != kit.fingerprint(kit.pack(FILES | {
        "aini.yml": b"project: other\n"}))
    assert kit.unpack(data) == FILES


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _link(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


@pytest.mark.parametrize("members, why", [
    (((tarfile.TarInfo("aini.yml"), b"x"), (tarfile.TarInfo("../../.bashrc"), b"x")), "'../../.bashrc'"),
    (((tarfile.TarInfo("aini.yml"), b"x"), (tarfile.TarInfo("/etc/cron.d/x"), b"x")), "'/etc/cron.d/x'"),
    (((tarfile.TarInfo("aini.yml"), b"x"), (_link(".aini/secrets.json"), b"")), "'.aini/secrets.json'"),
    (((tarfile.TarInfo("aini.yml"), b"x"), (tarfile.TarInfo("aini.yml"), b"y")), "'aini.yml'"),
    (((tarfile.TarInfo(".aini/secrets.json"), b"x"),), "no aini.yml"),
    (((tarfile.TarInfo("aini.yml"), b"\xff\xfe"),), "aini.yml in the recovery kit is not text"),
])
def test_anything_but_its_own_regular_files_is_refused(members, why):
    with pytest.raises(kit.KitError, match=why.replace(".", r"\.").replace("/", "/")):
        kit.unpack(_tar(*members))


def test_not_a_tar_and_unknown_files_are_refused():
    with pytest.raises(kit.KitError, match="not a readable tar"):
        kit.unpack(b"\x00garbage" * 100)
    with pytest.raises(kit.KitError, match="not kit files"):
        kit.pack({"aini.yml": b"", ".aini/known_hosts": b""})
    with pytest.raises(kit.KitError, match="would be"):
        kit.pack({"aini.yml": b"#" * kit.MAX_BYTES})
