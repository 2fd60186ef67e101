"""``keel serve --workers N``: N server processes behind one port.

A supervisor reserves the port (a socket bound with ``SO_REUSEPORT``, never listening),
then forks N workers. Each worker binds its own ``SO_REUSEPORT`` socket to that address and
starts listening only once its models are loaded; the kernel spreads new connections evenly
over the listening sockets (a shared accept queue would hand most of them to one worker).

Each worker opens the project itself, loads the models, serves with its own prediction
log and follows alias moves on its own, so a move reaches every worker within
``watch_seconds`` plus the time to load the new version (``keel release --server`` reloads
the one worker it reaches at once, the others at their next poll). An API-key file change
is read by each worker on its next request; SIGHUP to the supervisor is passed on to every
worker.

Metrics: every worker writes to files in one folder (prometheus_client's multiprocess
mode), so ``/metrics`` on any worker answers the sums over all of them. The prediction log:
each worker flushes its own segments; a request id is logged once, by the worker that
answered it.

Faults: a worker that dies (killed, or crashed) is restarted; connections on the other
workers are untouched. A worker killed with SIGKILL loses only its own open connections and
the prediction-log entries it had not flushed yet (every committed segment stays). Workers
that keep dying during start (a model that does not load) stop the server with the reason.

The supervisor forks before any model is loaded and never starts a thread, so forking is
safe; on SIGTERM or SIGINT it stops the workers (each finishes its in-flight requests) and
returns."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, KeelError

__all__ = ["check_workers", "max_workers", "serve_workers"]

log = logging.getLogger("keel.serve")

#: a worker that dies within this many seconds of its start counts as failing to start
_START_GRACE_S = 5.0
#: this many failed starts in a row stop the server
_MAX_FAILED_STARTS = 5


def max_workers() -> int:
    """The most workers ``--workers`` takes: four per CPU."""
    return 4 * (os.cpu_count() or 1)


def check_workers(n: Any) -> int:
    """``n`` if it is a whole number from 1 to :func:`max_workers`, else a clear error."""
    top = max_workers()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        raise InvalidInput(
            f"--workers: expected a whole number from 1 to {top} (4 per CPU, "
            f"{os.cpu_count() or 1} CPUs here), got {n!r}"
        )
    return n


class _Worker:
    def __init__(self, number: int, pid: int, ready_fd: int) -> None:
        self.number = number
        self.pid = pid
        self.ready_fd: int | None = ready_fd
        self.started = time.monotonic()
        self.ready = False


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening yet."""
    from keel.serve._server import _addresses

    try:
        family, addr = _addresses(host, port)[0]
    except (OSError, UnicodeError, IndexError):
        raise InvalidInput(f"serve: cannot resolve the host {host!r} to listen on") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr[:2])
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"serve: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _run_worker(
    number: int,
    write_fd: int,
    address: tuple[str, int],
    metrics_dir: str,
    project_root: Path,
    routes: list[Any],
    keys_file: Path | None,
    log_sample: float,
    host: str,
    settings: dict[str, Any],
) -> int:
    """The body of one forked worker; its exit status."""
    for sig in (signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    # uvicorn stops gracefully on SIGTERM, then raises it again under the handler it found:
    # make that an exit that unwinds, so the prediction log flushes what it holds
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from keel.serve._metrics import enter_multiprocess_mode

    enter_multiprocess_mode(metrics_dir)
    told = False

    def on_ready(failure: str | None) -> None:
        nonlocal told
        told = True
        with contextlib.suppress(OSError):
            os.write(write_fd, b"ok\n" if failure is None else f"failed: {failure}\n".encode())
            os.close(write_fd)

    try:
        from keel.project import open_project
        from keel.serve._auth import KeyRing
        from keel.serve._predlog import PredictionLog
        from keel.serve._server import serve

        ring = KeyRing.from_file(keys_file) if keys_file else None
        sock = _reuseport_socket(*address)  # uvicorn listens once the models are loaded
        with open_project(project_root) as proj:
            with PredictionLog(proj.store, sample_rate=log_sample) as sink:
                serve(
                    proj.store,
                    routes,
                    host=host,
                    keys=ring,
                    sink=sink,
                    sock=sock,
                    on_ready=on_ready,
                    worker=number,
                    **settings,
                )
    except (SystemExit, KeyboardInterrupt):
        return 0
    except BaseException as exc:  # noqa: BLE001 - the supervisor reports it, in one line
        if not told:
            on_ready(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    return 0


def serve_workers(
    n: int,
    project_root: str | Path,
    routes: list[Any],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    keys_file: str | Path | None = None,
    log_sample: float = 1.0,
    ready_timeout: float = 300,
    **settings: Any,
) -> None:
    """Serve ``routes`` of the project at ``project_root`` from ``n`` worker processes on
    one port until SIGTERM or SIGINT. Raises, naming why, if the workers cannot start."""
    from keel.serve._server import check_port, is_loopback

    n = check_workers(n)
    check_port(port)
    if not logging.getLogger().handlers:  # a bare process: show the server's log on stderr
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    if not is_loopback(host) and keys_file is None:
        raise InvalidInput(
            f"serve: host {host!r} is reachable from other machines; give --keys (API keys) "
            "or bind 127.0.0.1"
        )
    if not hasattr(socket, "SO_REUSEPORT"):
        raise InvalidInput("--workers: this system has no SO_REUSEPORT; run one worker")
    reserved = _reuseport_socket(host, port)  # holds the port; never listens
    port = reserved.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="keel-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    args = (
        (host, port),
        metrics_dir,
        Path(project_root),
        list(routes),
        Path(keys_file) if keys_file else None,
        log_sample,
        host,
        settings,
    )
    workers: dict[int, _Worker] = {}
    wanted: dict[str, int] = {"stop": 0, "hup": 0}

    def on_signal(signum: int, frame: Any) -> None:
        wanted["hup" if signum == signal.SIGHUP else "stop"] += 1

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }

    def fork(number: int) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            status = 1
            try:
                status = _run_worker(number, write_fd, *args)
            finally:
                os._exit(status)
        os.close(write_fd)
        workers[pid] = _Worker(number, pid, read_fd)

    try:
        for number in range(1, n + 1):
            fork(number)
        if not _await_ready(workers, ready_timeout, wanted):
            return
        log.info("keel serve: %d workers listening on %s:%s", n, host, port)
        _supervise(workers, fork, wanted, metrics_dir)
    finally:
        _stop(workers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _read_ready(w: _Worker) -> str | None:
    """The worker's start report once it has one: "" when it is ready, else the failure."""
    if w.ready_fd is None:
        return ""
    ready, _, _ = select.select([w.ready_fd], [], [], 0)
    if not ready:
        return None
    data = b""
    with contextlib.suppress(OSError):
        data = os.read(w.ready_fd, 4096)
    os.close(w.ready_fd)
    w.ready_fd = None
    text = data.decode(errors="replace").strip()
    if text == "ok":
        w.ready = True
        return ""
    return text.removeprefix("failed: ") or "the worker exited before its models loaded"


def _await_ready(workers: dict[int, _Worker], timeout: float, wanted: dict[str, int]) -> bool:
    """Wait for every worker to report its models loaded (False: told to stop first)."""
    deadline = time.monotonic() + timeout
    while not all(w.ready for w in workers.values()):
        if wanted["stop"]:
            return False
        for w in list(workers.values()):
            failure = _read_ready(w)
            if failure:
                raise KeelError(f"serve: worker {w.number} did not start: {failure}")
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid and pid in workers and not workers[pid].ready:
            w = workers.pop(pid)
            failure = _read_ready(w) or f"it exited ({_status(status)})"
            raise KeelError(f"serve: worker {w.number} did not start: {failure}")
        if time.monotonic() > deadline:
            raise KeelError(f"serve: the workers did not load their models in {timeout:.0f} s")
        time.sleep(0.05)
    return True


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _supervise(workers: dict[int, _Worker], fork: Any, wanted: dict[str, int], folder: str) -> None:
    """Restart workers that die, pass SIGHUP on, return on SIGTERM or SIGINT."""
    from prometheus_client import multiprocess

    failed_starts = 0
    hups = 0
    while not wanted["stop"]:
        if wanted["hup"] != hups:
            hups = wanted["hup"]
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
        for w in workers.values():
            if not w.ready and _read_ready(w) == "":
                failed_starts = 0
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid and pid in workers:
            w = workers.pop(pid)
            multiprocess.mark_process_dead(pid, folder)
            if w.ready_fd is not None:
                os.close(w.ready_fd)
            young = time.monotonic() - w.started < _START_GRACE_S
            failed_starts = failed_starts + 1 if (young or not w.ready) else 0
            if failed_starts >= _MAX_FAILED_STARTS:
                raise KeelError(
                    f"serve: worker {w.number} died {failed_starts} times in a row while "
                    f"starting ({_status(status)}); stopping"
                )
            log.warning(
                "serve: worker %d (pid %d) %s; restarting it", w.number, pid, _status(status)
            )
            fork(w.number)
            continue
        time.sleep(0.1)


def _stop(workers: dict[int, _Worker], grace: float = 30) -> None:
    """SIGTERM every worker (in-flight requests finish), SIGKILL what is left after
    ``grace`` seconds, and reap them all."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while workers and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            w = workers.pop(pid, None)
            if w is not None and w.ready_fd is not None:
                os.close(w.ready_fd)
        else:
            time.sleep(0.05)
    for pid in list(workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        workers.pop(pid)
