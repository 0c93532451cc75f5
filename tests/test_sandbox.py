"""The code_exec sandbox against hostile programs.

Each case runs in bounded time and must leave no file and no process behind.
Fork storms are only run after the process limit is shown to hold on a
bounded fork loop.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from llmpick.evaluate.sandbox import SandboxResult, run_python

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox targets Linux"),
    pytest.mark.timeout(90),
]


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _pids_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_clean(result: SandboxResult, marker: str | None = None) -> None:
    """No working directory and no process of the sandbox left."""
    assert result.workdir
    assert not Path(result.workdir).exists()
    assert not Path(result.workdir).parent.exists()
    if result.isolation.uid is not None:
        assert _pids_of_uid(result.isolation.uid) == []
    if marker is not None:
        assert _pids_with(marker) == []


SOLUTION = "def add(a, b):\n    return a + b\n"
TEST = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_correct_solution_passes() -> None:
    result = run_python(SOLUTION + TEST, timeout_s=10)
    assert result.passed, result.stderr
    assert result.exit_code == 0
    assert result.reason == "passed"
    assert not result.timed_out
    assert_clean(result)


def test_wrong_solution_fails_with_the_error_line() -> None:
    result = run_python("def add(a, b):\n    return a - b\n" + TEST, timeout_s=10)
    assert not result.passed
    assert result.exit_code == 1
    assert "AssertionError" in result.reason
    assert_clean(result)


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-for-test")
    monkeypatch.setenv("HF_TOKEN", "hf-secret-for-test")
    code = (
        "import os\n"
        "assert not any('secret-for-test' in v for v in os.environ.values()), os.environ\n"
        "assert os.environ['PATH'] == '/usr/bin:/bin'\n"
    )
    result = run_python(code)
    assert result.passed, result.stderr
    assert_clean(result)


def test_infinite_loop_times_out() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=2)
    assert time.monotonic() - start < 15
    assert not result.passed
    assert result.timed_out
    assert result.reason.startswith("timed out")
    assert_clean(result)


def test_sleeping_grandchild_that_left_the_session_is_killed() -> None:
    marker = f"{3600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
        "import time; time.sleep(0.3)\n"
    )
    result = run_python(code, timeout_s=10)
    assert result.passed, result.stderr
    time.sleep(0.2)
    assert_clean(result, marker)


def test_process_limit_holds_on_a_bounded_fork_loop() -> None:
    # bounded first: 50 forks against a limit of 20, children sleep then exit
    code = (
        "import os, time\n"
        "made = 0\n"
        "try:\n"
        "    for _ in range(50):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(made)\n"
        "raise SystemExit(0 if made < 20 else 1)\n"
    )
    result = run_python(code, timeout_s=10, max_processes=20)
    assert result.passed, (result.stdout, result.stderr)
    assert int(result.stdout.strip()) < 20
    assert_clean(result)


def test_fork_storm_fails_the_row_and_leaves_nothing() -> None:
    start = time.monotonic()
    result = run_python("import os\nwhile True:\n    os.fork()\n", timeout_s=3, max_processes=32)
    assert time.monotonic() - start < 20
    assert not result.passed
    time.sleep(0.2)
    assert_clean(result)


def test_huge_allocation_fails() -> None:
    result = run_python("x = bytearray(16 * 1024**3)\n", memory_mb=256)
    assert not result.passed
    assert "MemoryError" in result.reason
    assert_clean(result)


def test_growing_allocation_fails() -> None:
    start = time.monotonic()
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n"
    result = run_python(code, memory_mb=256, timeout_s=10)
    assert time.monotonic() - start < 20
    assert not result.passed
    assert_clean(result)


@pytest.mark.parametrize("where", ["tests", "tmp"])
def test_writing_outside_its_directory_fails_and_leaves_no_file(where: str, tmp_path: Path) -> None:
    name = f"sandbox-escape-{uuid.uuid4().hex}.txt"
    target = (Path(__file__).parent if where == "tests" else tmp_path) / name
    result = run_python(f"open({str(target)!r}, 'w').write('escaped')\n")
    iso = result.isolation
    if iso.uid is None and not (iso.readonly_root and iso.private_tmp):
        target.unlink(missing_ok=True)
        pytest.skip(f"no file-system isolation on this machine: {iso.notes}")
    assert not result.passed
    assert not target.exists()
    assert_clean(result)


def test_writing_inside_its_directory_works() -> None:
    code = "open('out.txt', 'w').write('ok')\nassert open('out.txt').read() == 'ok'\n"
    result = run_python(code)
    assert result.passed, result.stderr
    assert_clean(result)


def test_socket_to_loopback_fails() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        result = run_python(code, timeout_s=10)
        if not result.network_isolated:
            pytest.skip(f"no network namespace on this machine: {result.isolation.notes}")
        assert not result.passed
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert_clean(result)
    finally:
        listener.close()


def test_socket_to_an_external_address_fails() -> None:
    code = "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=3)\n"
    result = run_python(code, timeout_s=10)
    if not result.network_isolated:
        pytest.skip(f"no network namespace on this machine: {result.isolation.notes}")
    assert not result.passed
    assert "unreachable" in result.reason.lower()
    assert_clean(result)


def test_output_flood_is_capped() -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n"
    result = run_python(code, timeout_s=5, max_file_mb=8)
    assert not result.passed
    assert len(result.stdout) <= 4000
    assert_clean(result)


def test_without_namespaces_limits_still_hold() -> None:
    result = run_python("while True:\n    pass\n", timeout_s=2, namespaces=False)
    assert result.timed_out
    assert not result.isolation.network
    assert_clean(result)
    storm = run_python(
        "import os\nwhile True:\n    os.fork()\n", timeout_s=3, max_processes=32, namespaces=False
    )
    assert not storm.passed
    time.sleep(0.2)
    assert_clean(storm)


def test_isolation_is_reported_on_linux_as_root() -> None:
    result = run_python("pass\n")
    if os.geteuid() != 0:
        pytest.skip("checks the root layout")
    assert result.isolation.uid is not None and result.isolation.uid != 0
    assert result.isolation.rlimits
    assert_clean(result)


def test_program_dies_when_llmpick_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess

    marker = f"{7200 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    # the marker reaches the driver through its environment, so only the sandboxed
    # program carries it on its command line
    driver = (
        "import os\n"
        "from llmpick.evaluate.sandbox import run_python\n"
        "code = f\"import os\\nos.execv('/bin/sleep', ['sleep', '{os.environ['MARKER']}'])\"\n"
        "run_python(code, timeout_s=60)\n"
    )
    env = {**os.environ, "MARKER": marker}
    parent = subprocess.Popen([sys.executable, "-c", driver], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while not _pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pids_with(marker), "the sandboxed program never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pids_with(marker) == []
        # its working directory is left behind, and swept by the next llmpick process
        import tempfile

        from llmpick.evaluate.sandbox import _sweep_stale_dirs

        left = list(Path(tempfile.gettempdir()).glob(f"llmpick-sandbox-{parent.pid}-*"))
        assert len(left) == 1
        _sweep_stale_dirs.__wrapped__()
        assert not left[0].exists()
    finally:
        parent.kill()
        parent.wait()
        for pid in _pids_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_other_processes_are_out_of_sight() -> None:
    code = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    result = run_python(code)
    if not result.isolation.private_proc:
        pytest.skip(f"no private /proc on this machine: {result.isolation.notes}")
    assert result.passed, result.stderr
    assert result.stdout.strip() == "[1]"
    assert_clean(result)
