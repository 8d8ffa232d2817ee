"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl on a Unix socket in a fresh folder,
no TCP listener. Run as the ``postgres`` user when the tests run as root (initdb refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def pg_bin_dir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    return None


class PgServer:
    def __init__(self) -> None:
        bindir = pg_bin_dir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql-15)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="advface-pg-"))  # not under pytest's 0700 tmp
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self._user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            self.data.mkdir()
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PgServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-k {self.sock} -c listen_addresses='' -p 5432 -c fsync=off"
        log = self.root / "server.log"
        if self._user:
            log.touch()
            os.chown(log, *(lambda p: (p.pw_uid, p.pw_gid))(pwd.getpwnam("postgres")))
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(log), "-w", "start")
        return self

    @property
    def dsn(self) -> str:
        return f"host={self.sock} port=5432 user=postgres dbname=postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
