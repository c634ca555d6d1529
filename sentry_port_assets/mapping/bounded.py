"""Mapping programs are other people's code: run them where they cannot hang or sink the run.

The jq of a mapping can come from Port's integration config, so whoever may edit that integration writes programs
our workers run. `until(false; .)` never returns, and `def f: 1 + f; f` eats memory until the process dies. jq runs
in C and never hands control back to Python meanwhile, so neither a Python timeout nor a thread can stop it: every
evaluation therefore runs in a forked child process, with

- a time budget: the child's `SIGALRM` timer is re-armed at every step of progress (`tick`), with the default
  action, so the kernel ends a child that makes no progress for `seconds` whatever jq is doing;
- a memory limit: `RLIMIT_AS` = the child's address space at the fork plus `memory_bytes`.

The parent learns how far the child got from a shared counter (`position`), and gets the child's result through a
file. A child that ran out of time or memory is reported as `LimitExceeded`, with where it was; the run's process
carries on and decides what to fail.

Settings: `SENTRY_PORT_JQ_TIMEOUT_SECONDS` (default 10: the longest one item, or one field in a diagnosis, may take)
and `SENTRY_PORT_JQ_MEMORY_MB` (default 1024).
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import pickle
import resource
import signal
import struct
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_SECONDS = 10.0
DEFAULT_MEMORY_MB = 1024
_OUT_OF_MEMORY = 86  # the child's exit status after a MemoryError


@dataclass(frozen=True)
class Limits:
    seconds: float = DEFAULT_SECONDS
    memory_bytes: int = DEFAULT_MEMORY_MB * 1024 * 1024

    @classmethod
    def from_env(cls) -> Limits:
        """The limits the environment sets (invalid values were refused when the settings were read)."""
        seconds = os.environ.get("SENTRY_PORT_JQ_TIMEOUT_SECONDS")
        memory = os.environ.get("SENTRY_PORT_JQ_MEMORY_MB")
        return cls(seconds=float(seconds) if seconds else DEFAULT_SECONDS,
                   memory_bytes=int(memory) * 1024 * 1024 if memory else DEFAULT_MEMORY_MB * 1024 * 1024)

    def describe(self, what: str) -> str:
        if what == "time":
            return f"made no progress for {self.seconds:g} s (SENTRY_PORT_JQ_TIMEOUT_SECONDS)"
        return f"used more than {self.memory_bytes // (1024 * 1024)} MB (SENTRY_PORT_JQ_MEMORY_MB)"


class LimitExceeded(Exception):
    """A child ran out of its time budget (`what` "time") or memory ("memory"); `position` is the last value it
    reported through `tick` (-1: none)."""

    def __init__(self, what: str, position: int, limits: Limits):
        super().__init__(limits.describe(what))
        self.what = what
        self.position = position


class _Child:
    def __init__(self, pid: int, path: str, slot: int):
        self.pid, self.path, self.slot = pid, path, slot


def run_bounded(works: Sequence[Callable[[Callable[[int], None]], T]], limits: Limits) -> list[T]:
    """Runs each `work(tick)` in its own forked child at once, within `limits`, and returns their results in order.

    `tick(position)` reports progress and re-arms the time budget. The first child to exceed a limit stops the
    others and raises `LimitExceeded`; an exception in a child is raised here as RuntimeError with its traceback."""
    shared = mmap.mmap(-1, 8 * max(1, len(works)))
    children: list[_Child] = []
    try:
        for slot, work in enumerate(works):
            shared[slot * 8:slot * 8 + 8] = struct.pack("q", -1)
            fd, path = tempfile.mkstemp(prefix="sentry-port-jq-", suffix=".pickle")
            os.close(fd)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; coverage does not follow forks
                _child(work, limits, shared, slot, path)
            children.append(_Child(pid, path, slot))
        results: list[T] = []
        for child in children:
            _, status = os.waitpid(child.pid, 0)
            child.pid = 0
            position = struct.unpack("q", shared[child.slot * 8:child.slot * 8 + 8])[0]
            if os.WIFSIGNALED(status):
                signum = os.WTERMSIG(status)
                raise LimitExceeded("time" if signum == signal.SIGALRM else "memory", position, limits)
            code = os.WEXITSTATUS(status)
            if code == _OUT_OF_MEMORY:
                raise LimitExceeded("memory", position, limits)
            with open(child.path, "rb") as fh:
                ok, value = pickle.load(fh)
            if not ok:
                raise RuntimeError(f"mapping worker failed:\n{value}")
            results.append(value)
        return results
    finally:
        for child in children:
            if child.pid:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            try:
                os.unlink(child.path)
            except FileNotFoundError:
                pass
        shared.close()


def _child(work: Callable[[Callable[[int], None]], Any], limits: Limits, shared: mmap.mmap, slot: int,
           path: str) -> None:  # pragma: no cover - runs in the forked child
    code = 0
    try:
        faulthandler.disable()  # jq aborts when it runs out of memory: that is reported by the parent, not dumped here
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _limit_memory(limits.memory_bytes)

        def tick(position: int) -> None:
            shared[slot * 8:slot * 8 + 8] = struct.pack("q", position)
            signal.setitimer(signal.ITIMER_REAL, limits.seconds)

        tick(-1)
        try:
            outcome: tuple[bool, Any] = (True, work(tick))
        except MemoryError:
            os._exit(_OUT_OF_MEMORY)
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
            outcome = (False, traceback.format_exc())
        signal.setitimer(signal.ITIMER_REAL, 0)
        with open(path, "wb") as fh:
            pickle.dump(outcome, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        code = _OUT_OF_MEMORY
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


def _limit_memory(extra: int) -> None:  # pragma: no cover - runs in the forked child
    with open("/proc/self/statm") as fh:
        size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
