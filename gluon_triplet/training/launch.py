"""``gluon-triplet launch``: a ps-lite training job (scheduler, servers, workers) on this host.

MXNet's distributed kvstore (``dist_sync`` / ``dist_async``) runs over ps-lite: one
scheduler, some servers holding the parameters and some workers computing gradients, each a
process that finds the others through ``DMLC_*`` environment variables. Under
``DMLC_ROLE=scheduler`` or ``server``, ``import mxnet`` itself runs that role and exits, so
those processes are just ``python -c "import mxnet"``.

ps-lite has no failure handling: when a process dies the others wait for it forever. The
launcher therefore watches every process, and tears the whole job down with one ``error:``
line when one of them exits with a non-zero status or the timeout passes. A worker that
fails exits at once (:func:`run_worker`) instead of waiting in ps-lite's exit barrier.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from ..config import DIST_KVSTORES
from ..signals import HANDLED_SIGNALS, Interrupted, handlers

__all__ = [
    "build_parser",
    "launch",
    "main",
    "run_job",
    "run_worker",
]


HOST = "127.0.0.1"
# How long the scheduler and servers get to exit once every worker has finished.
_GRACE = 30.0
# How long processes get between SIGTERM and SIGKILL.
_TERM_WAIT = 5.0


def build_parser():
    p = argparse.ArgumentParser(
        prog="gluon-triplet launch",
        usage="gluon-triplet launch -n WORKERS [-s SERVERS] [--timeout SEC] -- [TRAIN OPTIONS]",
        description="Run distributed training on this host: a ps-lite scheduler, SERVERS "
        "parameter servers and WORKERS training processes, all on 127.0.0.1. Everything after "
        "'--' goes to each worker's 'gluon-triplet train' (--kvstore defaults to dist_sync). "
        "Worker output is streamed with a '[worker RANK]' prefix; rank 0 alone evaluates and "
        "writes the run directory. If any process fails or the timeout passes, every process "
        "is stopped and the exit status is non-zero.",
    )
    p.add_argument(
        "-n", "--num-workers", type=int, metavar="WORKERS", help="worker processes (required)"
    )
    p.add_argument(
        "-s",
        "--num-servers",
        type=int,
        default=1,
        metavar="SERVERS",
        help="parameter server processes (default: 1)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SEC",
        help="stop the whole job after SEC seconds (default: no limit)",
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="instead of launching a job, be one process of a job whose DMLC_* variables are "
        "already set (e.g. by MXNet's tools/launch.py on several hosts): train as a worker, "
        "and exit at once with the error if training fails",
    )
    return p


def main(argv=None):
    """``gluon-triplet launch [options] -- [train options]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, train_args = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(own)
    if train_args[:1] == ["train"]:
        train_args = train_args[1:]
    kvstore = _flag_value(train_args, "--kvstore")
    if kvstore is None:
        train_args = ["--kvstore", "dist_sync", *train_args]
    elif kvstore not in DIST_KVSTORES:
        return _error(f"launch needs --kvstore {' or '.join(DIST_KVSTORES)}, got {kvstore!r}", 2)
    if args.worker:
        return run_worker(train_args)
    if args.num_workers is None:
        return _error("launch needs -n WORKERS, the number of worker processes", 2)
    if args.num_workers < 1 or args.num_servers < 1:
        return _error("launch needs at least 1 worker (-n) and 1 server (-s)", 2)
    if args.timeout is not None and not args.timeout > 0:
        return _error(f"--timeout must be > 0 seconds, got {args.timeout:g}", 2)
    command = [sys.executable, "-m", "gluon_triplet.training.launch", "--worker", "--", *train_args]
    return run_job(command, args.num_workers, args.num_servers, timeout=args.timeout)


def _raise_stopped(signum, frame):
    # A second signal must not cut the teardown (at most 2 x _TERM_WAIT seconds) short.
    for s in HANDLED_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def run_job(worker_command, num_workers, num_servers=1, timeout=None):
    """:func:`launch`, with :data:`~gluon_triplet.signals.HANDLED_SIGNALS` (a hang-up and
    a quit too: the job's processes run in sessions of their own) stopping every process.

    Returns
    -------
    int
        :func:`launch`'s status, or 128 + the signal number when a stop signal arrived
        (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 131 for SIGQUIT).
    """
    with handlers(HANDLED_SIGNALS, _raise_stopped):
        try:
            return launch(worker_command, num_workers, num_servers, timeout=timeout)
        except KeyboardInterrupt as e:  # launch stopped every process before this
            signum = getattr(e, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            return _error(f"interrupted by {name}; stopped every process of the job", 128 + signum)


def launch(worker_command, num_workers, num_servers=1, timeout=None, stdout=None, stderr=None):
    """Run one ps-lite job on 127.0.0.1 and wait for it; every process has ended on return.

    Parameters
    ----------
    worker_command : list of str
        What each worker runs (it finds the job through the ``DMLC_*`` variables).
    num_workers, num_servers : int
    timeout : float, optional
        Seconds before the whole job is stopped; None waits as long as it runs.
    stdout, stderr : text streams, optional
        Where the processes' output goes, line by line, each line prefixed with
        ``[worker RANK]``, ``[server I]`` or ``[scheduler]`` (default: sys.stdout, sys.stderr).

    Returns
    -------
    int
        0 when every process exited with status 0; else the failed worker's status (1 for
        a signal, a timeout or a process that would not end).
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    ports = _free_ports(1 + num_workers)
    env = dict(os.environ)
    # A stray DMLC_RANK would keep ps-lite from assigning ranks; PORT would pin every node
    # to one port.
    for name in ("DMLC_RANK", "PORT"):
        env.pop(name, None)
    env.update(
        DMLC_PS_ROOT_URI=HOST,
        DMLC_PS_ROOT_PORT=str(ports[0]),
        DMLC_NUM_WORKER=str(num_workers),
        DMLC_NUM_SERVER=str(num_servers),
        DMLC_NODE_HOST=HOST,
        PYTHONUNBUFFERED="1",
    )
    role_command = [sys.executable, "-c", "import mxnet"]
    plan = [("scheduler", "scheduler", role_command, {})]
    plan += [(f"server {i}", "server", role_command, {}) for i in range(num_servers)]
    for i, port in enumerate(sorted(ports[1:])):
        # ps-lite ranks the workers of one host by port: ascending ports make this name the
        # worker's rank.
        plan.append((f"worker {i}", "worker", list(worker_command), {"PORT": str(port)}))
    print(
        f"launch: scheduler on {HOST}:{ports[0]}, {num_servers} server(s), {num_workers} worker(s)",
        file=stderr,
        flush=True,
    )
    lock = threading.Lock()
    procs, pumps = [], []
    try:
        for name, role, command, extra in plan:
            proc = subprocess.Popen(
                command,
                env={**env, "DMLC_ROLE": role, **extra},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
            procs.append((name, proc))
            for pipe, out in ((proc.stdout, stdout), (proc.stderr, stderr)):
                pump = threading.Thread(
                    target=_pump, args=(pipe, out, f"[{name}] ", lock), daemon=True
                )
                pump.start()
                pumps.append(pump)
        code, message = _supervise(procs, timeout)
    finally:
        _stop(procs)
        for pump in pumps:
            pump.join(timeout=5)
        for _, proc in procs:
            proc.stdout.close()
            proc.stderr.close()
    if code:
        with lock:
            print(f"error: {message}", file=stderr, flush=True)
    return code


def run_worker(train_args):
    """Train as one worker of the ps-lite job in the environment; returns 0 on success.

    On failure the process exits at once with the error's status: a worker that returned
    normally would wait in ps-lite's exit barrier for workers that are waiting for it.
    """
    from ..cli import main as cli_main

    try:
        code = cli_main(["train", *train_args])
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException:
        traceback.print_exc()
        code = 1
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 0


def _supervise(procs, timeout):
    """Wait until every process exits 0 -> (0, None), or one fails -> (status, message)."""
    start = time.monotonic()
    workers_done_at = None
    # Workers first: when a worker fails, a server often crashes right after it.
    by_blame = sorted(procs, key=lambda item: not item[0].startswith("worker"))
    while True:
        for name, proc in by_blame:
            status = proc.poll()
            if status:
                why = f"signal {-status}" if status < 0 else f"status {status}"
                return (
                    status if status > 0 and name.startswith("worker") else 1,
                    f"{name} exited with {why}; stopped the other processes of the job",
                )
        running = [name for name, proc in procs if proc.poll() is None]
        if not running:
            return 0, None
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            return 1, (
                f"timeout: the job did not finish within {timeout:g}s; stopped it "
                f"(still running: {', '.join(running)})"
            )
        if workers_done_at is None and not any(n.startswith("worker") for n in running):
            workers_done_at = now
        if workers_done_at is not None and now - workers_done_at > _GRACE:
            return 1, (
                f"{', '.join(running)} still running {_GRACE:g}s after every worker "
                "finished; stopped"
            )
        time.sleep(0.05)


def _stop(procs):
    """SIGTERM every still-running process group, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, _TERM_WAIT), (signal.SIGKILL, _TERM_WAIT)):
        alive = [proc for _, proc in procs if proc.poll() is None]
        for proc in alive:
            # An unreaped process keeps its pid, so its group id cannot have been reused.
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        for proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def _pump(pipe, out, prefix, lock):
    """Copy a child's output line by line, each line prefixed, whole lines at a time."""
    try:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with lock:
                out.write(f"{prefix}{line}\n")
                out.flush()
    except (OSError, ValueError):  # the pipe was closed under us at teardown
        pass


def _free_ports(n):
    """``n`` distinct ports free on 127.0.0.1 right now, ascending."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return sorted(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _flag_value(args, flag):
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` in ``args``, else None."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def _error(message, code):
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
