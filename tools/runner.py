"""The command runner: one long-lived process inside the sandbox that runs commands and file ops.

Standard library only; it runs under the sandbox image's python3 (sent as `python3 -c SOURCE`)
and, for `LocalSandbox`, under the host's. Talking to one long-lived process over one stream
saves the 40-50 ms that Docker spends setting up every `docker exec`.

Protocol: requests come on stdin as frames (4-byte big-endian length, then a `marshal`ed dict with
an `id` and an `op`: the host is trusted); responses go out on stdout as one JSON object per line
(the host must not trust what comes out of the sandbox, so it parses JSON, never marshal). Requests
are served by a single-threaded epoll loop, so 200 commands at once cost no threads (threads count
against the pids limit). Start-up time matters (it is part of every sandbox start), so only
built-in modules are imported up front: no json, re, subprocess, signal or selectors.

Every command runs as `timeout --kill-after=K T bash -c COMMAND` in a new session (its own process
group). Its output goes through a pipe that this loop reads as it comes, keeping only a head and a
tail (memory stays bounded whatever the command prints). The response goes out when the command
itself has exited and its pipe is drained, or shortly after it exits if a background process still
holds the pipe: that pipe is then read and discarded until it closes, so the background process
neither blocks nor dies of SIGPIPE. An `interrupt` request (served like any other, while commands
run) kills the groups of the commands still running; each then answers with `interrupted` set.
"""

import marshal
import os
import select
import sys
import time

ROOT = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())
# Optional: where the cgroup counts OOM kills of this sandbox, as candidates joined by ":"
# (cgroup v1, then v2); the first that exists is used. Empty on the host.
OOM_FILE = next(
    (p for p in (sys.argv[2] if len(sys.argv) > 2 else "").split(":") if p and os.path.exists(p)),
    "",
)
GRACE_S = 0.03  # after the command exits, how long to wait for the pipe to close
BACKSTOP_S = 2.0  # past timeout + kill-after, the runner kills the group itself
READ_CHUNK = 65536
MAX_READ_BYTES = 20 * 1024 * 1024
IGNORED = {
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".tox",
    "dist",
    "build",
    ".idea",
    ".cache",
}
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
}


SIGNALS = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    6: "SIGABRT",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
}
SIGKILL = 9
IN, OUT = select.EPOLLIN, select.EPOLLOUT
# The command goes through sh: into its directory, up in the OOM killer's eyes (the runner must
# be the last to go), then `timeout`. $0..$3 = kill-after, timeout, command, directory.
SCRIPT = (
    'cd -- "$3" || exit 125; echo 500 >/proc/self/oom_score_adj 2>/dev/null; '
    'exec timeout --kill-after="$0" "$1" bash -c "$2"'
)


class PathError(Exception):
    pass


_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 9: "\\t", 13: "\\r"})


def to_json(obj):
    """JSON for the plain values the responses hold (the json module costs start-up time)."""
    if isinstance(obj, str):
        return '"' + obj.translate(_ESCAPES) + '"'
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


# Optional: the pids cgroup directory (v1, then v2 candidates joined by ":"), to see the process
# limit coming before a command's own forks fail.
PIDS_DIR = next(
    (
        p
        for p in (sys.argv[3] if len(sys.argv) > 3 else "").split(":")
        if p and os.path.exists(os.path.join(p, "pids.max"))
    ),
    "",
)
PIDS_RESERVE = 16  # a command needs a few pids of its own: sh, timeout, bash, ...


def pids_pressure():
    """(near the limit now, forks refused so far): from the pids cgroup, when there is one."""
    if not PIDS_DIR:
        return False, 0
    try:
        with open(os.path.join(PIDS_DIR, "pids.max")) as f:
            limit = f.read().strip()
        with open(os.path.join(PIDS_DIR, "pids.current")) as f:
            current = int(f.read())
        refused = 0
        with open(os.path.join(PIDS_DIR, "pids.events")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "max":
                    refused = int(value)
    except (OSError, ValueError):
        return False, 0
    return limit != "max" and current >= int(limit) - PIDS_RESERVE, refused


def oom_kills():
    if not OOM_FILE:
        return 0
    try:
        with open(OOM_FILE) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


class Capture:
    """Keeps the first `head` and the last `tail` bytes and counts the rest."""

    def __init__(self, head, tail):
        self.head_cap, self.tail_cap = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:  # trim in batches, not on every chunk
                del self.tail[: len(self.tail) - self.tail_cap]

    def render(self):
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        elided = self.total - len(self.head) - len(tail)
        text = self.head.decode("utf-8", "replace")
        if elided > 0:
            text += (
                f"\n[... {elided} bytes elided: the output was {self.total} bytes; its first "
                f"{len(self.head)} and last {len(tail)} are shown ...]\n"
            )
        return text + tail.decode("utf-8", "replace"), max(elided, 0)


class Job:
    def __init__(self, req, pid, out_fd, pidfd, capture):
        self.req = req
        self.pid = pid
        self.out_fd = out_fd
        self.pidfd = pidfd
        self.capture = capture
        self.started = time.monotonic()
        self.oom_before = oom_kills()
        self.status = None
        self.ended = None
        self.eof = False
        self.timed_out = False
        self.interrupted = False
        self.notice = None
        self.stdin_data = None
        self.stdin_fd = None


class Runner:
    def __init__(self):
        self.poll = select.epoll()
        self.fds = {}  # fd -> (kind, job)
        self.inbuf = b""
        self.outbuf = bytearray()
        self.jobs = {}  # by pid
        self.left_behind = []  # process groups of finished commands (may hold background jobs)
        self.forks_refused = pids_pressure()[1]  # the pids cgroup's count, at the last spawn
        self.running = True
        os.set_blocking(0, False)
        self.watch(0, IN, "stdin", None)

    def watch(self, fd, events, kind, job):
        self.fds[fd] = (kind, job)
        self.poll.register(fd, events)

    def unwatch(self, fd):
        del self.fds[fd]
        self.poll.unregister(fd)

    # ---- plumbing -------------------------------------------------------------------------
    def send(self, obj):
        self.outbuf += to_json(obj).encode("utf-8", "replace") + b"\n"
        while self.outbuf:
            try:
                n = os.write(1, self.outbuf)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            del self.outbuf[:n]

    def loop(self):
        while self.running or self.jobs:
            for fd, _ in self.poll.poll(self.next_wakeup()):
                if fd not in self.fds:
                    continue  # closed by an earlier handler in this batch
                kind, job = self.fds[fd]
                # One batch can hold events that an earlier handler in it made stale (an output
                # pipe read to its end while reaping): the job's own state says so.
                try:
                    if kind == "stdin":
                        self.read_requests()
                    elif kind == "out" and not job.eof:
                        self.read_output(job)
                    elif kind == "drain":
                        self.drain(fd)
                    elif kind == "pid" and job.status is None:
                        self.reap(job)
                    elif kind == "feed" and job.stdin_fd is not None:
                        self.feed(job)
                except Exception:  # keep serving the other commands; the host sees the trace
                    import traceback

                    traceback.print_exc()
            self.check_deadlines()

    def next_wakeup(self):
        now = time.monotonic()
        waits = [1.0]
        for job in self.jobs.values():
            if job.status is None:
                waits.append(
                    job.started + job.req["timeout"] + job.req["kill_after"] + BACKSTOP_S - now
                )
            else:
                waits.append(job.ended + GRACE_S - now)
        return max(0.0, min(waits))

    def read_requests(self):
        try:
            data = os.read(0, READ_CHUNK)
        except BlockingIOError:
            return
        if not data:  # the host stopped the sandbox: end every command, as removing it would
            self.unwatch(0)
            self.running = False
            for pgid in [*self.jobs, *self.left_behind]:
                kill_group(pgid)
            return
        self.inbuf += data
        while len(self.inbuf) >= 4:
            size = int.from_bytes(self.inbuf[:4], "big")
            if len(self.inbuf) < 4 + size:
                break
            frame, self.inbuf = self.inbuf[4 : 4 + size], self.inbuf[4 + size :]
            self.handle(marshal.loads(frame))

    def handle(self, req):
        op = req.get("op")
        try:
            if op == "exec":
                self.spawn(req)
                return
            if op == "interrupt":
                self.send({"id": req["id"], "ok": True, "interrupted": self.interrupt()})
                return
            fn = {
                "read": op_read,
                "write": op_write,
                "list": op_list,
                "search": op_search,
                "ping": lambda r: {"root": ROOT, "pid": os.getpid()},
            }.get(op)
            if fn is None:
                raise ValueError(f"unknown op {op!r}")
            self.send({"id": req["id"], "ok": True, **fn(req)})
        except Exception as e:  # a failed request is an answer, never the runner's end
            msg = str(e) if isinstance(e, PathError) else f"{type(e).__name__}: {e}"
            self.send({"id": req["id"], "ok": False, "error": msg})

    # ---- commands -------------------------------------------------------------------------
    def spawn(self, req):
        workdir = resolve(req.get("workdir") or ".")
        env = dict(BASE_ENV, HOME=ROOT, PWD=workdir, USER=os.environ.get("USER", "sandbox"))
        if os.environ.get("DSV4_HOST_PATH"):
            env["PATH"] = os.environ["DSV4_HOST_PATH"]
        env.update(req.get("env") or {})
        argv = [
            "/bin/sh",
            "-c",
            SCRIPT,
            f"{req['kill_after']}s",
            f"{req['timeout']}s",
            req["command"],
            workdir,
        ]
        stdin = req.get("stdin")
        r, w = os.pipe()
        in_r = in_w = None
        if stdin is not None:
            in_r, in_w = os.pipe()
            stdin_action = (os.POSIX_SPAWN_DUP2, in_r, 0)
        else:
            stdin_action = (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)
        # Every fd of this process is close-on-exec, so the command inherits only these three.
        actions = [stdin_action, (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)]
        notice = None
        near, refused = pids_pressure()
        if self.left_behind and (near or refused > self.forks_refused):
            # Something is at the process limit (forks were refused since the last command):
            # the command would fail its own forks, so make room first.
            notice = self.reclaim()
            deadline = time.monotonic() + 2.0
            while pids_pressure()[0] and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = pids_pressure()[1]
        self.forks_refused = refused
        pid = None
        error = None
        for attempt in range(3):
            try:
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
                break
            except BlockingIOError:  # EAGAIN: the pids limit is reached
                if attempt == 0 and notice is None:
                    notice = self.reclaim()
                time.sleep(0.3)
            except OSError as e:
                error = f"cannot start the command: {e}"
                break
        for fd in (w, in_r):
            if fd is not None:
                os.close(fd)
        if pid is None:
            for fd in (r, in_w):
                if fd is not None:
                    os.close(fd)
            self.send(
                {
                    "id": req["id"],
                    "ok": False,
                    "error": error
                    or (
                        "cannot start the command: the sandbox is at its process limit, and "
                        "killing what earlier commands left running did not free enough"
                    ),
                }
            )
            return
        os.set_blocking(r, False)
        job = Job(req, pid, r, os.pidfd_open(pid), Capture(req["head"], req["tail"]))
        job.notice = notice
        self.jobs[pid] = job
        self.watch(r, IN, "out", job)
        self.watch(job.pidfd, IN, "pid", job)
        if in_w is not None:
            job.stdin_fd = in_w
            job.stdin_data = memoryview(stdin.encode())
            os.set_blocking(in_w, False)
            self.watch(in_w, OUT, "feed", job)

    def interrupt(self):
        """Kill the process group of every command still running; each answers as interrupted
        once reaped. Returns how many there were."""
        running = [job for job in self.jobs.values() if job.status is None]
        for job in running:
            job.interrupted = True
            try:  # one kill here; reap() kills the group again for what forked meanwhile
                os.killpg(job.pid, SIGKILL)
            except OSError:
                pass
        return len(running)

    def feed(self, job):
        try:
            n = os.write(job.stdin_fd, job.stdin_data[:READ_CHUNK])
            job.stdin_data = job.stdin_data[n:]
            done = not job.stdin_data
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin
            done = True
        if done:
            self.close_stdin(job)

    def close_stdin(self, job):
        if job.stdin_fd is not None:
            self.unwatch(job.stdin_fd)
            os.close(job.stdin_fd)
            job.stdin_fd = None

    def read_output(self, job):
        for _ in range(32):  # bounded, so that one flood cannot starve the other jobs
            try:
                data = os.read(job.out_fd, READ_CHUNK)
            except BlockingIOError:
                return
            if not data:
                job.eof = True
                self.unwatch(job.out_fd)
                os.close(job.out_fd)
                self.maybe_finish(job)
                return
            job.capture.add(data)

    def drain(self, fd):
        try:
            while os.read(fd, READ_CHUNK):
                pass
        except BlockingIOError:
            return
        self.unwatch(fd)
        os.close(fd)

    def reap(self, job):
        _, status = os.waitpid(job.pid, 0)
        job.status = status
        job.ended = time.monotonic()
        self.unwatch(job.pidfd)
        os.close(job.pidfd)
        self.close_stdin(job)
        elapsed = job.ended - job.started
        if job.interrupted:
            job.timed_out = False
            # Once more for what forked before the first kill landed. Not kill_group(): on the
            # host, orphans wait as zombies for a far reaper and keep it spinning for its 1 s.
            try:
                os.killpg(job.pid, SIGKILL)
            except OSError:
                pass
        elif elapsed >= job.req["timeout"] - 0.01 and (
            os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 124
        ):
            job.timed_out = True
            kill_group(job.pid)  # stragglers that left the timeout's reach
        else:
            job.timed_out = False
        if job.eof:
            self.maybe_finish(job)
        else:
            self.read_output(job)

    def check_deadlines(self):
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.status is None:
                if now > job.started + job.req["timeout"] + job.req["kill_after"] + BACKSTOP_S:
                    kill_group(job.pid)  # `timeout` itself is stuck or gone
            elif not job.eof and now >= job.ended + GRACE_S:
                # A background process still holds the pipe: answer now, keep draining.
                self.fds[job.out_fd] = ("drain", None)
                job.eof = True
                self.finish(job)

    def maybe_finish(self, job):
        if job.status is not None and job.eof:
            self.finish(job)

    def reclaim(self):
        """Out of pids: kill what earlier commands left running (a fork bomb, typically)."""
        groups = [g for g in self.left_behind if group_alive(g)]
        for g in groups:
            kill_group(g)
        self.left_behind = []
        if not groups:
            return None
        return (
            f"the sandbox had reached its process limit; killed the processes that "
            f"{len(groups)} earlier command(s) left running to make room"
        )

    def finish(self, job):
        if self.jobs.pop(job.pid, None) is None:
            return
        if not (job.timed_out or job.interrupted):
            self.left_behind = [g for g in self.left_behind[-200:] if group_alive(g)]
            self.left_behind.append(job.pid)
        status = job.status
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + sig
        if sig is None and code > 128 and code - 128 in (9, 15, 2, 6, 11):
            sig = code - 128  # the shell reports a killed child as 128+N
        output, elided = job.capture.render()
        self.send(
            {
                "id": job.req["id"],
                "ok": True,
                "exit_code": code,
                "signal": SIGNALS.get(sig, f"SIG{sig}") if sig else None,
                "timed_out": job.timed_out,
                "interrupted": job.interrupted,
                "oom_killed": sig == 9 and oom_kills() > job.oom_before,
                "output": output,
                "truncated_bytes": elided,
                "total_bytes": job.capture.total,
                "duration_s": round(job.ended - job.started, 4),
                "notice": job.notice,
            }
        )


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def kill_group(pgid):
    """SIGKILL the group until it is empty: a fork bomb forks while the first kill lands."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, SIGKILL)
        except OSError:
            return
        time.sleep(0.005)


# ---- file operations, confined to ROOT ---------------------------------------------------
def inside(path):
    return path == ROOT or path.startswith(ROOT.rstrip("/") + "/")


def resolve(path):
    if not isinstance(path, str) or not path or "\0" in path:
        raise PathError(f"invalid path {path!r}")
    joined = os.path.normpath(os.path.join(ROOT, path))
    if not inside(joined):
        raise PathError(
            f"path {path!r} is outside the work directory {ROOT}; refused. "
            f"Use a path inside {ROOT} (relative paths are taken from there)."
        )
    real = os.path.realpath(joined)
    if not inside(real):
        raise PathError(
            f"path {path!r} leads through a symlink to {real}, outside the work directory "
            f"{ROOT}; refused."
        )
    return real


def rel(path):
    return os.path.relpath(path, ROOT)


def op_read(req):
    path = resolve(req["path"])
    if os.path.isdir(path):
        raise PathError(f"{req['path']!r} is a directory; use list_files to see what it holds")
    size = os.path.getsize(path)
    if size > MAX_READ_BYTES:
        raise PathError(f"{req['path']!r} is {size} bytes, more than {MAX_READ_BYTES} allowed")
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data[:8192]:
        raise PathError(f"{req['path']!r} is a binary file ({size} bytes); not shown")
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    start = max(1, req.get("start") or 1)
    end = min(len(lines), req.get("end") or len(lines))
    return {
        "text": "".join(lines[start - 1 : end]),
        "start": start,
        "end": end,
        "total_lines": len(lines),
        "size": size,
        "path": rel(path),
    }


def op_write(req):
    path = resolve(req["path"])
    if os.path.isdir(path):
        raise PathError(f"{req['path']!r} is a directory; give a file path")
    created = not os.path.exists(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = req["text"].encode()
    with open(path, "wb") as f:
        f.write(data)
    return {"path": rel(path), "bytes": len(data), "created": created}


def op_list(req):
    top = resolve(req.get("path") or ".")
    if not os.path.isdir(top):
        raise PathError(f"{req.get('path')!r} is not a directory")
    depth, cap = req.get("depth", 2), req.get("limit", 500)
    ignore = IGNORED | set(req.get("ignore") or ())
    entries, more = [], 0

    def walk(d, level):
        nonlocal more
        try:
            names = sorted(
                os.scandir(d), key=lambda e: (not e.is_dir(follow_symlinks=False), e.name)
            )
        except OSError:
            return
        for e in names:
            if e.name in ignore:
                continue
            if len(entries) >= cap:
                more += 1
                continue
            is_dir = e.is_dir(follow_symlinks=False)
            kind = "dir" if is_dir else "link" if e.is_symlink() else "file"
            size = e.stat(follow_symlinks=False).st_size if kind == "file" else None
            entries.append({"path": rel(e.path), "type": kind, "size": size, "depth": level})
            if is_dir and level < depth:
                walk(e.path, level + 1)

    walk(top, 1)
    return {"root": rel(top), "entries": entries, "omitted": more}


def op_search(req):
    import re

    pattern = re.compile(req["pattern"], re.IGNORECASE if req.get("ignore_case") else 0)
    top = resolve(req.get("path") or ".")
    cap, glob = req.get("limit", 200), req.get("glob")
    glob_re = re.compile(fnmatch_to_re(glob)) if glob else None
    matches, files, more = [], 0, 0
    paths = [top] if os.path.isfile(top) else walk_files(top)
    for p in paths:
        if glob_re and not glob_re.match(os.path.basename(p)):
            continue
        try:
            if os.path.getsize(p) > MAX_READ_BYTES:
                continue
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue
        files += 1
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if pattern.search(line):
                if len(matches) < cap:
                    matches.append({"path": rel(p), "line": n, "text": line[:300]})
                else:
                    more += 1
    return {"matches": matches, "omitted": more, "files_searched": files}


def walk_files(top):
    for d, dirs, names in os.walk(top):
        dirs[:] = sorted(x for x in dirs if x not in IGNORED)
        for name in sorted(names):
            p = os.path.join(d, name)
            if not os.path.islink(p):
                yield p


def fnmatch_to_re(glob):
    import fnmatch

    return fnmatch.translate(glob)


if __name__ == "__main__":
    Runner().loop()
