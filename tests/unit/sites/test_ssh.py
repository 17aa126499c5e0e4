"""The server deploy's pure parts: what travels over SSH, as data."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from aini.sites.ssh import SshAccess
from aini.sites.ssh import REMOTE_ROOT, SshSite, stale_files, tar_bundle
from aini.render.bundle import BundleFile


def test_tar_bundle_is_root_owned_with_private_files_0600(tmp_path):
    files = {"n8n/compose.yml": BundleFile("a"), "n8n/n8n.env": BundleFile("K='v'\n", private=True),
             "traefik/dynamic/routes.yml": BundleFile("r")}
    data = tar_bundle(files, mtime=0)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {n: oct(m.mode) for n, m in members.items() if m.isfile()} == {
            "n8n/compose.yml": "0o644", "n8n/n8n.env": "0o600", "traefik/dynamic/routes.yml": "0o644"}
        assert {n for n, m in members.items() if m.isdir()} == {"n8n", "traefik", "traefik/dynamic"}
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        assert tar.extractfile("n8n/n8n.env").read() == b"K='v'\n"
    assert tar_bundle(files, mtime=0) == data  # deterministic
    # GNU tar on the server rewrites an existing file in place (a bind mount keeps seeing it).
    (tmp_path / "n8n").mkdir()
    target = tmp_path / "n8n" / "n8n.env"
    target.write_text("old and longer content\n")
    inode = target.stat().st_ino
    subprocess.run(["tar", "-x", "--overwrite", "-C", str(tmp_path)], input=data, check=True)
    assert target.stat().st_ino == inode and target.read_text() == "K='v'\n"
    assert target.stat().st_mode & 0o777 == 0o600


def test_stale_files_are_what_the_server_has_beyond_the_bundle():
    assert stale_files(["g/a", "g/old", "g/kept"], ["g/a", "g/kept"]) == ["g/old"]
    assert stale_files(["g/a"], ["g/a", "g/b"]) == []


def test_commands_run_with_sudo_and_never_carry_a_secret():
    site = SshSite(SshAccess("203.0.113.7", 2222, Path("/k/id"), Path("/k/known")), "aini", "/tmp/c")
    remote = site.sudo(["docker", "compose", "--project-directory", str(REMOTE_ROOT / "n8n"), "up"])
    assert remote == "sudo -n docker compose --project-directory /opt/aini/deployed/n8n up"
    argv = site.ssh_argv(remote)
    assert argv[-3:] == ["--", "203.0.113.7", remote]  # after `--`, a host is never read as an option
    assert ["-p", "2222", "-l", "aini"] == argv[argv.index("-p"):argv.index("-p") + 4]
    assert "ControlPath=/tmp/c" in argv and "BatchMode=yes" in argv
    # A path with a shell metacharacter stays one word on the server.
    assert site.sudo(["rm", "-f", "--", "/opt/x y;z"]) == "sudo -n rm -f -- '/opt/x y;z'"
