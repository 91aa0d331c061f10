"""A real SLURM cluster on this machine (slurmctld + munge and one slurmd per node: Debian's slurmd
takes `-N NODENAME`, so nodes n1 and n2 share the host, each with its own pid file, spool, log and
port, and the cores split between them) and a PostgreSQL server on loopback, started for the tests.
Debian packages: slurmctld slurmd slurm-client munge postgresql (installed by `make system-deps`).
Runs as root: munge needs its key and a running munged before slurmctld/slurmd start."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = """ClusterName=dgatest
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
KillWait=30
MinJobAge=600
InactiveLimit=0
Waittime=0
SlurmdTimeout={slurmd_timeout}
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
NODE = "NodeName={name} NodeHostname=localhost Port={port} CPUs={cpus} RealMemory={mem} State=UNKNOWN"


def slurm_missing() -> str | None:
    """Why a SLURM cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "scontrol"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    # daemons and admin tools live in /usr/sbin, which a non-login shell's PATH may lack
    tool = shutil.which(cmd[0]) or (f"/usr/sbin/{cmd[0]}" if Path(f"/usr/sbin/{cmd[0]}").exists() else cmd[0])
    return subprocess.run([tool, *cmd[1:]], check=check, capture_output=True, text=True, **kw)


def _stop_pidfile(path: str) -> None:
    p = Path(path)
    if not p.is_file():
        return
    try:
        pid = int(p.read_text().strip())
        os.kill(pid, 15)
        for _ in range(80):
            stat = Path(f"/proc/{pid}/stat")
            if not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z"):
                break
            time.sleep(0.25)
    except (ValueError, ProcessLookupError, OSError):
        pass
    p.unlink(missing_ok=True)


def stop_slurm() -> None:
    for f in [*glob.glob("/run/slurmd*.pid"), "/run/slurmctld.pid", "/run/munge/munged.pid"]:
        _stop_pidfile(f)


def node_names(n: int) -> list[str]:
    return [f"n{i + 1}" for i in range(n)]


def start_slurm(cpus: int = 2, nodes: int = 2, slurmd_timeout: int = 10) -> None:
    """Write slurm.conf for `nodes` nodes on this host (n1, n2, ...: the cores split between them) and
    start munged, slurmctld and one slurmd per node; wait until every node is idle. A node that stops
    answering is marked down after `slurmd_timeout` seconds."""
    stop_slurm()
    key = Path("/etc/munge/munge.key")
    if not key.is_file() or key.stat().st_size == 0:
        _run("mungekey", "--create", f"--keyfile={key}")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    for path, owner in (("/run/munge", "munge"), ("/var/spool/slurmctld", "slurm"), ("/var/log/slurm", "slurm"),
                        *[(f"/var/spool/slurmd-{n}", "root") for n in node_names(nodes)]):
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.chown(path, owner, owner)
    hosts = Path("/etc/hosts").read_text()
    missing = [h for h in (socket.gethostname(), *node_names(nodes))
               if not re.search(rf"\s{re.escape(h)}(\s|$)", hosts)]
    if missing:  # ranks rendezvous on the first node's name
        with open("/etc/hosts", "a") as fh:
            fh.write(f"127.0.0.1 {' '.join(missing)}\n")
    hw = _run("slurmd", "-C").stdout
    mem = int(re.search(r"RealMemory=(\d+)", hw).group(1)) // nodes
    lines = [NODE.format(name=n, port=17001 + i, cpus=max(1, cpus // nodes), mem=mem)
             for i, n in enumerate(node_names(nodes))]
    Path("/etc/slurm").mkdir(exist_ok=True)
    Path("/etc/slurm/slurm.conf").write_text(SLURM_CONF.format(nodes="\n".join(lines),
                                                               slurmd_timeout=slurmd_timeout))
    _run("runuser", "-u", "munge", "--", "/usr/sbin/munged")
    _run("/usr/sbin/slurmctld", "-c")
    for n in node_names(nodes):
        _run("/usr/sbin/slurmd", "-N", n)
    states = ""
    for _ in range(240):
        states = _run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split()
        if states[1::2] == ["idle"] * nodes:
            return
        time.sleep(0.25)
    logs = "".join(Path(f).read_text()[-2000:] for f in glob.glob("/var/log/slurm/*.log"))
    raise RuntimeError(f"SLURM nodes not idle ({states}):\n{logs}")


def revive_node(name: str, timeout: float = 60) -> None:
    """Node `name` back in service after `kill_node`: its slurmd started again if it is not running,
    the node resumed, and waited for until idle."""
    pidfile = Path(f"/run/slurmd-{name}.pid")
    if not (pidfile.is_file() and Path(f"/proc/{pidfile.read_text().strip()}").exists()):
        _run("/usr/sbin/slurmd", "-N", name)
    deadline = time.time() + timeout
    while node_state(name) != "idle":
        if time.time() > deadline:
            raise RuntimeError(f"node {name} is {node_state(name)!r}, not idle, {timeout} s after its revival")
        _run("scontrol", "update", f"nodename={name}", "state=resume", check=False)
        time.sleep(0.5)


def node_state(name: str) -> str:
    return _run("sinfo", "-h", "-n", name, "-N", "-o", "%t", check=False).stdout.strip()


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_node(name: str) -> list[int]:
    """What a dead machine looks like to SLURM: SIGKILL to node `name`'s slurmd, to every process of
    the jobs it ran (their environment says SLURMD_NODENAME=name) and to their slurmstepd. Returns
    the pids killed."""
    daemon = int(Path(f"/run/slurmd-{name}.pid").read_text().strip())
    victims = {daemon}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _environ(int(entry.name)).get("SLURMD_NODENAME") == name:
            pid = int(entry.name)
            victims.add(pid)
            parent = _parent(pid)
            while parent > 1 and _comm(parent).startswith("slurmstepd"):
                victims.add(parent)
                parent = _parent(parent)
    for pid in victims:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return sorted(victims)


def job_states(job: str) -> list[str]:
    out = _run("scontrol", "show", "job", job, check=False).stdout
    return re.findall(r"JobState=(\w+)", out)


def wait_job(job: str, timeout: float = 600) -> list[str]:
    """Poll until every task of the job has ended; returns their states."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = job_states(job)
        if states and not any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "SUSPENDED",
                                    "REQUEUE_HOLD", "REQUEUE_FED") for s in states):
            return states
        time.sleep(0.5)
    raise TimeoutError(f"job {job} still {job_states(job)} after {timeout} s")


# --------------------------------------------------------------------------------------- PostgreSQL
def postgres_missing() -> str | None:
    if os.geteuid() != 0:
        return "running the PostgreSQL server as the postgres user needs root"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL server not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install psycopg[binary])"
    return None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), owned by the postgres user."""

    def __init__(self, root: Path):
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.root = root
        self.data = root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)
        parent = self.root.parent
        while parent != parent.parent:  # the postgres user must be able to reach the directory
            parent.chmod(parent.stat().st_mode | 0o011)
            parent = parent.parent
        as_pg = ["runuser", "-u", "postgres", "--"]
        _run(*as_pg, str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres")
        _run(*as_pg, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start",
             "-o", f"-p {self.port} -h 127.0.0.1 -k {self.root}")

    def create_db(self, name: str) -> str:
        _run(str(self.bin / "psql") if (self.bin / "psql").exists() else "psql", "-h", "127.0.0.1", "-p",
             str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """Restart the server (`pg_ctl restart -m fast`: open sessions are closed)."""
        r = _run("runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                 "-w", "restart", "-l", str(self.root / "log"), "-o", f"-p {self.port} -h 127.0.0.1 -k {self.root}",
                 check=False)
        if r.returncode != 0:
            log = (self.root / "log").read_text()[-3000:]
            raise RuntimeError(f"pg_ctl restart failed: {r.stdout}{r.stderr}\n{log}")

    def stop(self) -> None:
        _run("runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
             "-w", "stop", check=False)
