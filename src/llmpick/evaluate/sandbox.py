"""Run untrusted Python (model output plus a test) in a sandbox.

Used by the ``code_exec`` scorer. :func:`run_python` runs a program in a child
process and reports whether it exited cleanly. Hostile code (infinite loops,
fork storms, huge allocations, writes outside its directory, sockets) must fail
its row without harming the machine or the run.

Layers, each best effort and recorded in :class:`SandboxIsolation`:

- a fresh temporary working directory, deleted afterwards (one left by a killed
  llmpick is swept by the next); stdout and stderr go to files (capped by
  ``RLIMIT_FSIZE``), never to pipes a grandchild could hold open;
- a scrubbed environment (``PATH=/usr/bin:/bin``, ``HOME`` pointing nowhere, no
  keys or tokens) and ``python -I``;
- a new session and process group, killed as a whole at the end and on timeout;
  the launcher and the program die with llmpick (``PR_SET_PDEATHSIG``);
- resource limits: address space, CPU seconds, processes, file size, open
  files, no core dumps;
- on Linux, new network, PID and mount namespaces (``unshare(2)`` through
  ctypes): no network at all (even loopback is down); every process the program
  starts dies with it, even one that called ``setsid``; fresh ``tmpfs`` over the
  world-writable directories and a read-only root file system;
- when llmpick runs as root, the program runs under an unused unprivileged uid
  (``RLIMIT_NPROC`` is not enforced for root, and a fresh uid makes the process
  limit count only the sandbox's own processes); leftovers of that uid are
  killed at the end.

Where the process is not root, namespaces come from an unprivileged user
namespace when the kernel allows one. Not a substitute for a VM: the kernel is
shared. Linux is the supported platform; elsewhere only the process limits apply.

This file also runs as a script: ``python -I -S sandbox.py CONFIG_JSON`` is the
stdlib-only launcher that sets the limits, enters the namespaces, drops
privileges and executes the program.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["SandboxIsolation", "SandboxResult", "run_python"]

_TAIL_BYTES = 4000
_PROGRAM = "program.py"
# Directories anyone may write to; the sandbox gets its own empty tmpfs on each.
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_CANDIDATE_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")

# from <sched.h> and <sys/mount.h>
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1


@dataclass
class SandboxIsolation:
    """Which protections were actually in force for one run."""

    network: bool = False  # new network namespace: no interface but a down loopback
    pid_namespace: bool = False  # every descendant dies with the program
    private_tmp: bool = False  # fresh tmpfs over /tmp, /var/tmp, /dev/shm, /run/lock
    readonly_root: bool = False  # / remounted read-only (the working directory stays writable)
    uid: int | None = None  # the unprivileged uid the program ran as, if privileges were dropped
    rlimits: bool = False  # memory, CPU, process, file-size and open-file limits set
    private_proc: bool = False  # /proc shows only the sandbox's processes
    notes: list[str] = field(default_factory=list)  # why a layer is missing


@dataclass
class SandboxResult:
    """The outcome of one sandboxed run."""

    passed: bool
    exit_code: int | None  # negative: killed by that signal; None: never started
    timed_out: bool
    stdout: str  # the last few thousand characters
    stderr: str
    duration_s: float
    reason: str  # one line: "passed", "timed out after 10 s", the last error line …
    isolation: SandboxIsolation = field(default_factory=SandboxIsolation)
    python: str = ""  # the interpreter that ran the program
    workdir: str = ""  # the temporary working directory (already deleted)

    @property
    def network_isolated(self) -> bool:
        """Whether the program had no network at all."""
        return self.isolation.network

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (for storing with a score)."""
        return asdict(self)


def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 64,
    max_open_files: int = 256,
    python: str | None = None,
    files: dict[str, str] | None = None,
    namespaces: bool = True,
) -> SandboxResult:
    """Run ``code`` as a Python program in the sandbox; passed = exit status 0.

    ``files`` are extra text files written into the working directory first.
    ``namespaces=False`` skips the Linux namespaces (to test the fallback).
    ``python`` picks the interpreter; by default the running one when the
    sandbox user can execute it, else a system ``python3``. Blocking: call it
    from a worker thread in async code.
    """
    drop_uid = _choose_uid() if _is_root() else None
    interpreter = python or _sandbox_python(drop_uid is not None)
    if interpreter is None:
        from llmpick.errors import ScorerError

        raise ScorerError(
            "no Python interpreter that an unprivileged user may run was found for the "
            f"code sandbox ({sys.executable} is not readable by other users)",
            "install a system python3 (e.g. apt-get install python3-minimal) "
            "or run llmpick as a non-root user",
        )
    config = {
        "python": interpreter,
        "uid": drop_uid,
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "max_processes": max_processes,
        "max_file_mb": max_file_mb,
        "max_open_files": max_open_files,
        "namespaces": namespaces,
        "parent_pid": os.getpid(),
    }
    _sweep_stale_dirs()
    base = Path(tempfile.mkdtemp(prefix=f"llmpick-sandbox-{os.getpid()}-"))
    start = time.perf_counter()
    try:
        result = _run_in(base, code, files or {}, config)
    finally:
        if drop_uid is not None:
            _kill_uid(drop_uid)
        _remove_tree(base)
    result.duration_s = time.perf_counter() - start
    result.python = interpreter
    result.workdir = str(base / "work")
    return result


def _run_in(base: Path, code: str, files: dict[str, str], config: dict[str, Any]) -> SandboxResult:
    uid = config["uid"]
    os.chmod(base, 0o711)  # the sandbox user may pass through, not list or write
    work = base / "work"
    work.mkdir(mode=0o700)
    (work / _PROGRAM).write_text(code, encoding="utf-8")
    for name, text in files.items():
        (work / name).write_text(text, encoding="utf-8")
    if uid is not None:
        for path in [work, *work.iterdir()]:
            os.chown(path, uid, uid)
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    status_read, status_write = os.pipe()
    config = {**config, "status_fd": status_write}
    timed_out = False
    with open(base / "stdout", "wb") as out, open(base / "stderr", "wb") as err:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(config)],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                pass_fds=(status_write,),
                close_fds=True,
            )
        except OSError as exc:
            os.close(status_read)
            os.close(status_write)
            return SandboxResult(False, None, False, "", "", 0.0, f"could not start: {exc}")
        os.close(status_write)
        try:
            proc.wait(timeout=config["timeout_s"])
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # the whole group, on success too: no background process outlives its row
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with os.fdopen(status_read, "rb") as status_file:
        status_lines = status_file.read().decode("utf-8", "replace").splitlines()
    stdout = _tail(base / "stdout")
    stderr = _tail(base / "stderr")
    isolation = SandboxIsolation()
    wait_status: int | None = None
    for line in status_lines:
        with contextlib.suppress(ValueError, TypeError):
            message = json.loads(line)
            if "isolation" in message:
                isolation = SandboxIsolation(**message["isolation"])
            wait_status = message.get("wait_status", wait_status)
            isolation.private_proc = isolation.private_proc or bool(message.get("private_proc"))
    exit_code = _exit_code(wait_status)
    if timed_out:
        reason = f"timed out after {config['timeout_s']:g} s"
    elif exit_code is None:
        reason = "the sandbox launcher died"
    elif exit_code < 0:
        reason = _signal_reason(-exit_code)
    elif exit_code == 0:
        reason = "passed"
    else:
        reason = _last_line(stderr) or f"exit status {exit_code}"
    passed = not timed_out and exit_code == 0
    return SandboxResult(passed, exit_code, timed_out, stdout, stderr, 0.0, reason, isolation)


def _exit_code(wait_status: int | None) -> int | None:
    if wait_status is None:
        return None
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _signal_reason(signum: int) -> str:
    names = {
        signal.SIGKILL: "killed (CPU or memory limit)",
        signal.SIGXCPU: "CPU time limit exceeded",
        signal.SIGXFSZ: "file size limit exceeded",
        signal.SIGSEGV: "segmentation fault",
    }
    try:
        sig = signal.Signals(signum)
    except ValueError:
        return f"killed by signal {signum}"
    return names.get(sig, f"killed by signal {sig.name}")


def _tail(path: Path) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - _TAIL_BYTES))
        return fh.read().decode("utf-8", "replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _remove_tree(path: Path) -> None:
    def make_writable(func: Any, failed: str, _exc: Any) -> None:
        # a program running as our own user may have chmod-ed its files to 000
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            func(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)


@lru_cache(maxsize=1)
def _sweep_stale_dirs() -> None:
    """Remove working directories left by an llmpick process that was killed (once per process)."""
    for path in Path(tempfile.gettempdir()).glob("llmpick-sandbox-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove_tree(path)
        except OSError:
            continue


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _choose_uid() -> int:
    """Pick a uid no account uses, inside this user namespace's mapped range.

    A fresh uid per run (rather than ``nobody``) makes ``RLIMIT_NPROC`` count
    only this sandbox's processes, and lets the clean-up kill by uid.
    """
    ranges: list[tuple[int, int]] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, _outside, count = (int(x) for x in line.split())
            ranges.append((inside, inside + count - 1))
    if not ranges:
        return 65534
    low, high = max(ranges, key=lambda r: r[1] - r[0])
    low = max(low, 1_000_000)
    high = min(high, 2_000_000_000)
    if high - low < 1000:
        return 65534
    return random.randint(low, high)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process still running as ``uid`` (belt and braces)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
                found = True
                os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.01)


@lru_cache(maxsize=2)
def _sandbox_python(drop_privileges: bool) -> str | None:
    """Find the first interpreter the sandbox user can run (probed once per process).

    When llmpick runs as root the program runs as an unprivileged uid, which
    may not reach an interpreter under /root (pyenv, a root-only venv); a
    system python3 serves then. None: no candidate works.
    """
    if not drop_privileges:
        return sys.executable
    candidates = [sys.executable, *(p for p in _CANDIDATE_PYTHONS if os.path.exists(p))]
    for candidate in candidates:
        if run_python("import sys", timeout_s=20, python=candidate).passed:
            return candidate
    return None


# --------------------------------------------------------------------------------------
# The launcher: runs as a script in the child, stdlib only (python -I -S).


def _launch(config: dict[str, Any]) -> None:
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)
    with contextlib.suppress(OSError, AttributeError):
        # if llmpick itself dies (kill -9), take the program down with it
        _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != config["parent_pid"]:
        os._exit(1)
    isolation = SandboxIsolation()
    try:
        _set_limits(config)
        isolation.rlimits = True
    except (OSError, ValueError) as exc:
        isolation.notes.append(f"rlimits: {exc}")
    uid = config["uid"]
    isolation.uid = uid
    if config["namespaces"]:
        _enter_namespaces(isolation, as_root=os.geteuid() == 0)
    else:
        isolation.notes.append("namespaces: turned off")
    os.write(status_fd, (json.dumps({"isolation": asdict(isolation)}) + "\n").encode())
    pid = os.fork()
    if pid == 0:
        try:
            if isolation.pid_namespace and isolation.private_tmp:
                # a /proc of the new PID namespace: other processes' command lines
                # (which may hold keys) are out of sight
                with contextlib.suppress(OSError):
                    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
                    os.write(status_fd, b'{"private_proc": true}\n')
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            # after the uid change, which clears it: die with the launcher
            _set_parent_death_signal(signal.SIGKILL)
            python = config["python"]
            os.execve(python, [python, "-I", _PROGRAM], dict(os.environ))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"sandbox: cannot start the program: {exc}\n".encode())
            os._exit(127)
    _, wait_status = os.waitpid(pid, 0)
    os.write(status_fd, (json.dumps({"wait_status": wait_status}) + "\n").encode())


def _set_limits(config: dict[str, Any]) -> None:
    import resource

    memory = int(config["memory_mb"]) * 1024 * 1024
    cpu = int(config["timeout_s"]) + 1
    file_size = int(config["max_file_mb"]) * 1024 * 1024
    limits = {
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_FSIZE: (file_size, file_size),
        resource.RLIMIT_NOFILE: (int(config["max_open_files"]),) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    processes = int(config["max_processes"])
    if config["uid"] is None and hasattr(os, "getuid"):
        # counted over the whole user: leave room for what the user already runs
        processes += _processes_of(os.getuid())
    limits[resource.RLIMIT_NPROC] = (processes, processes)
    for which, value in limits.items():
        resource.setrlimit(which, value)


def _processes_of(uid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


@lru_cache(maxsize=1)
def _libc() -> Any:
    # CDLL(None): the symbols already loaded. Not find_library, which forks helper
    # processes: after unshare(CLONE_NEWPID) the first child would become the
    # namespace's init and, when it exits, no further fork could succeed.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    return libc


def _check(name: str, returned: int) -> None:
    if returned != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _unshare(flags: int) -> None:
    _check("unshare", _libc().unshare(flags))


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    encode = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(
        "mount", _libc().mount(encode(source), encode(target), encode(fstype), flags, encode(data))
    )


def _set_parent_death_signal(signum: int) -> None:
    _check("prctl", _libc().prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0))


def _enter_namespaces(isolation: SandboxIsolation, as_root: bool) -> None:
    if not sys.platform.startswith("linux"):
        isolation.notes.append("namespaces: not Linux")
        return
    flags = _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWNS
    try:
        if as_root:
            _unshare(flags)
        else:
            uid, gid = os.getuid(), os.getgid()
            _unshare(flags | _CLONE_NEWUSER)
            # keep our own ids inside, so file ownership reads the same
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    except OSError as exc:
        isolation.notes.append(f"namespaces: {exc}")
        return
    isolation.network = True
    isolation.pid_namespace = True
    try:
        _mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
    except OSError as exc:
        isolation.notes.append(f"mounts: {exc}")
        return
    try:
        # the working directory becomes its own mount, so it stays writable
        _mount(".", ".", None, _MS_BIND, None)
        os.chdir(os.getcwd())
        _mount("none", "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
        isolation.readonly_root = True
    except OSError as exc:
        isolation.notes.append(f"read-only root: {exc}")
    work = os.getcwd()
    private = True
    for directory in _WORLD_WRITABLE:
        if not os.path.isdir(directory):
            continue
        try:
            _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64m,mode=1777")
        except OSError as exc:
            private = False
            isolation.notes.append(f"tmpfs on {directory}: {exc}")
    isolation.private_tmp = private
    try:
        if os.path.samestat(os.stat(work), os.stat(".")):
            return
    except OSError:
        pass
    # the tmpfs hid the working directory's path (the cwd still points at it):
    # put it back at the same path, so absolute paths to it keep working
    try:
        os.makedirs(work, mode=0o711, exist_ok=True)
        _mount(".", work, None, _MS_BIND, None)
        os.chdir(work)
    except OSError as exc:
        isolation.notes.append(f"working directory: {exc}")


if __name__ == "__main__":
    _launch(json.loads(sys.argv[1]))
