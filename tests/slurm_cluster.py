"""A one-node Slurm cluster on localhost for the executor tests: munged, slurmctld and slurmd as root.

Everything lives in one temporary directory: a fresh munge key and socket, a generated slurm.conf (this
machine's `hostname -s` and CPU count, free ports, state and spool dirs), the daemons' logs. Clients find the
cluster through SLURM_CONF, which `env` holds; jobs inherit it (sbatch exports the environment).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "srun", "sinfo")


def why_it_cannot_run() -> str | None:
    """None if a cluster can be started here, else the reason (for pytest.skip)."""
    if os.geteuid() != 0:  # asked first: a user's PATH lacks /usr/sbin, where the daemons are even when installed
        return "needs root to run slurmctld and slurmd (SlurmUser=root)"
    missing = [b for b in (*DAEMONS, *CLIENTS) if shutil.which(b) is None]
    if missing:
        return (f"needs Debian's slurm-wlm and munge ({', '.join(missing)} not on PATH); "
                f".ci/run installs them: apt-get install -y slurm-wlm munge")
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalSlurm:
    """Start with `start()`, stop with `stop()`; `env` points Slurm's clients at it."""

    def __init__(self) -> None:
        # Not under pytest's tmp dirs: munged wants every directory on its socket's path searchable by all.
        self.root = Path(tempfile.mkdtemp(prefix="mixbench-slurm-"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.node = socket.gethostname().split(".")[0]  # hostname -s
        self.processes: list[subprocess.Popen] = []

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def start(self, timeout: float = 60.0) -> None:
        for sub in ("log", "state", "spool"):
            (self.root / sub).mkdir()
        key_dir, run_dir = self.root / "munge", self.root / "run"
        key_dir.mkdir(mode=0o700)
        run_dir.mkdir(mode=0o755)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))  # what `mungekey` makes: random bytes, readable by munged's user only
        key.chmod(0o600)
        socket_path = run_dir / "munge.socket"
        self._spawn("munged", ["munged", "--foreground", f"--socket={socket_path}", f"--key-file={key}",
                               f"--pid-file={run_dir / 'munged.pid'}", f"--seed-file={key_dir / 'seed'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait(lambda: socket_path.exists(), timeout, "munged did not create its socket")
        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(self._config(socket_path, ctld_port, slurmd_port))
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(self._node_idle, timeout, "the node did not come up idle")

    def _config(self, munge_socket: Path, ctld_port: int, slurmd_port: int) -> str:
        r = self.root
        return "\n".join([
            "ClusterName=mixbench",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
            f"AuthInfo=socket={munge_socket},cred_expire=10",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",  # no cgroups needed
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",  # jobs share the node, one per free CPU
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=1",  # a requeued job starts as soon as it may
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "ReturnToService=2",
            "KillWait=5",  # SIGTERM to SIGKILL on cancel; submitit ignores SIGTERM
            "MinJobAge=600",  # finished jobs stay visible to scontrol for the tests
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def _spawn(self, name: str, command: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (kept open while the daemon runs)
        self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                               env={**os.environ, **self.env}))
        out.close()

    def _node_idle(self) -> bool:
        done = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=30)
        return done.returncode == 0 and done.stdout.strip().rstrip("*") == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            if ready():
                return
            time.sleep(0.5)
        self.stop(remove=False)
        raise RuntimeError(f"local Slurm cluster in {self.root}: {what}\n{self.log_tail()}")

    def stop(self, remove: bool = True) -> None:
        """Cancel what is left, stop the daemons this object started (slurmd first), remove the directory."""
        if self.processes and self.processes[-1].poll() is None:
            env = {**os.environ, **self.env}
            subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30)
            deadline = time.time() + 30  # let slurmstepd kill the tasks (after KillWait) while slurmd still runs
            while time.time() < deadline:
                left = subprocess.run(["squeue", "--noheader"], env=env, capture_output=True, text=True, timeout=30)
                if left.returncode != 0 or not left.stdout.strip():
                    break
                time.sleep(0.5)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":  # a cluster to develop against: python tests/slurm_cluster.py
    cluster = LocalSlurm()
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}   (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()
