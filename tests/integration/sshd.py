"""An SSH "login node" for the end-to-end tests: Debian's sshd on a loopback port, key
authentication only, one service account, keys generated per run (as BriCS's launcher
does with ssh-keygen)."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

from tests.integration.slurm import free_port


class LoginNode:
    def __init__(self, folder: Path, account: str, accept_env: str,
                 session_env: dict[str, str]) -> None:
        self.folder, self.account = folder, account
        self.port = free_port()
        self.accept_env, self.session_env = accept_env, session_env
        self.client_config = folder / "ssh_config"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        d = self.folder
        d.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f",
                            str(d / key)], check=True, capture_output=True)
        entry = pwd.getpwnam(self.account)
        # useradd leaves the password locked ("!"), and sshd without PAM refuses locked
        # accounts even for keys: "*" means no password, not locked.
        subprocess.run(["usermod", "-p", "*", self.account], check=True, capture_output=True)
        ssh_dir = Path(entry.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text((d / "client_key.pub").read_text())
        # The account's environment on the login node (e.g. where Slurm's configuration is).
        environment = ssh_dir / "environment"
        environment.write_text("".join(f"{k}={v}\n" for k, v in self.session_env.items()))
        for path, mode in ((ssh_dir, 0o700), (authorized, 0o600), (environment, 0o600)):
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(mode)
        host_public = (d / "host_key.pub").read_text().split()[:2]
        (d / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_public)}\n")
        (d / "sshd_config").write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {d}/host_key",
            f"PidFile {d}/sshd.pid",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            f"AllowUsers {self.account}",
            # What a site configures on its login node for the hub (README):
            f"AcceptEnv {self.accept_env}",
            f"PermitUserEnvironment {','.join(self.session_env)}",
            "",
        ]))
        self.client_config.write_text("\n".join([
            "Host 127.0.0.1",
            f"    IdentityFile {d}/client_key",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {d}/known_hosts",
            "    StrictHostKeyChecking yes",
            "",
        ]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        log = (d / "sshd.out").open("wb")
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log()}")
            if self.ssh("true").returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"sshd did not let {self.account} in: {self.log()}")

    def ssh(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-F", str(self.client_config), "-o", "BatchMode=yes",
                               "-p", str(self.port), f"{self.account}@127.0.0.1", *command],
                              capture_output=True, text=True, timeout=60)

    def log(self) -> str:
        path = self.folder / "sshd.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
