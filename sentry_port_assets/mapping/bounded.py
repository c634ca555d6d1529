"""Mapping programs are other people's code: run them where they cannot hang or sink the run.

The jq of a mapping can come from Port's integration config, so whoever may edit that integration writes programs
our workers run. `until(false; .)` never returns, and `def f: 1 + f; f` eats memory until the process dies. jq runs
in C and never hands control back to Python meanwhile, so neither a Python timeout nor a thread can stop it: every
evaluation therefore runs in a forked child process, with

- a time budget: the child's `SIGALRM` timer is re-armed at every step of progress (`tick`), with the default
  action, so the kernel ends a child that makes no progress for `seconds` whatever jq is doing;
- a memory limit: `RLIMIT_AS` = the child's address space at the fork plus `memory_bytes`.

The parent learns how far the child got from a shared counter (`position`), and gets the child's results through a
pipe, piece by piece, as they are made. A child that ran out of time or memory is reported as `LimitExceeded`, with where it was; the run's process
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
import selectors
import signal
import struct
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sentry_port_assets.config import NUMBER_SETTINGS, number_setting

T = TypeVar("T")

DEFAULT_SECONDS = NUMBER_SETTINGS["SENTRY_PORT_JQ_TIMEOUT_SECONDS"].default
DEFAULT_MEMORY_MB = int(NUMBER_SETTINGS["SENTRY_PORT_JQ_MEMORY_MB"].default)
_OUT_OF_MEMORY = 86  # the child's exit status after a MemoryError


@dataclass(frozen=True)
class Limits:
    seconds: float = DEFAULT_SECONDS
    memory_bytes: int = DEFAULT_MEMORY_MB * 1024 * 1024

    @classmethod
    def from_env(cls) -> Limits:
        """The limits the settings give (config.py: SENTRY_PORT_JQ_TIMEOUT_SECONDS, SENTRY_PORT_JQ_MEMORY_MB)."""
        return cls(seconds=number_setting("SENTRY_PORT_JQ_TIMEOUT_SECONDS"),
                   memory_bytes=int(number_setting("SENTRY_PORT_JQ_MEMORY_MB")) * 1024 * 1024)

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
    def __init__(self, pid: int, fd: int, slot: int):
        self.pid, self.fd, self.slot = pid, fd, slot
        self.buffer = bytearray()
        self.status: int | None = None


def run_bounded(works: Sequence[Callable[[Callable[[int], None]], Iterable[Any]]], limits: Limits,
                consume: Callable[[int, Any], T] | None = None) -> list[list[T]]:
    """Runs each `work(tick)` in its own forked child at once, within `limits`. A work yields pieces; each piece
    travels to the parent as soon as it is made, where `consume(slot, piece)` turns it into what is returned (so the
    parent works on one child's output while the children still run). Returns, per work, its consumed pieces.

    `tick(position)` reports progress and re-arms the time budget (sending a piece does not count against it). The
    first child to exceed a limit stops the others and raises `LimitExceeded`; an exception in a child is raised here
    as RuntimeError with its traceback."""
    consume = consume or (lambda slot, piece: piece)
    shared = mmap.mmap(-1, 8 * max(1, len(works)))
    children: list[_Child] = []
    results: list[list[T]] = [[] for _ in works]
    try:
        for slot, work in enumerate(works):
            shared[slot * 8:slot * 8 + 8] = struct.pack("q", -1)
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; coverage does not follow forks
                os.close(read_end)
                _child(work, limits, shared, slot, write_end)
            os.close(write_end)
            children.append(_Child(pid, read_end, slot))
        with selectors.DefaultSelector() as selector:
            for child in children:
                selector.register(child.fd, selectors.EVENT_READ, child)
            open_pipes = len(children)
            while open_pipes:
                for key, _ in selector.select():
                    child = key.data
                    data = os.read(child.fd, 1 << 20)
                    if data:
                        child.buffer += data
                        for kind, value in _frames(child.buffer):
                            if kind == "piece":
                                results[child.slot].append(consume(child.slot, value))
                            elif kind == "error":
                                raise RuntimeError(f"mapping worker failed:\n{value}")
                        continue
                    selector.unregister(child.fd)
                    open_pipes -= 1
                    _, child.status = os.waitpid(child.pid, 0)
                    child.pid = 0
                    _raise_if_exceeded(child, shared, limits)
        return results
    finally:
        for child in children:
            if child.pid:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            os.close(child.fd)
        shared.close()


def _frames(buffer: bytearray) -> Iterator[tuple[str, Any]]:
    """Complete messages (8-byte length, then a pickle of (kind, value)) taken off the front of `buffer`."""
    while len(buffer) >= 8:
        size = struct.unpack("q", buffer[:8])[0]
        if len(buffer) < 8 + size:
            return
        message = pickle.loads(bytes(buffer[8:8 + size]))
        del buffer[:8 + size]
        yield message


def _raise_if_exceeded(child: _Child, shared: mmap.mmap, limits: Limits) -> None:
    status = child.status or 0
    position = struct.unpack("q", shared[child.slot * 8:child.slot * 8 + 8])[0]
    if os.WIFSIGNALED(status):
        raise LimitExceeded("time" if os.WTERMSIG(status) == signal.SIGALRM else "memory", position, limits)
    code = os.WEXITSTATUS(status)
    if code == _OUT_OF_MEMORY:
        raise LimitExceeded("memory", position, limits)
    if code != 0:
        raise RuntimeError(f"mapping worker exited with status {code}")


def _child(work: Callable[[Callable[[int], None]], Iterable[Any]], limits: Limits, shared: mmap.mmap, slot: int,
           fd: int) -> None:  # pragma: no cover - runs in the forked child
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

        def send(kind: str, value: Any) -> None:
            remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0]  # a slow reader is not the program's time
            blob = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
            view = memoryview(struct.pack("q", len(blob)) + blob)
            while view:
                view = view[os.write(fd, view):]
            if remaining:
                signal.setitimer(signal.ITIMER_REAL, remaining)

        tick(-1)
        try:
            for piece in work(tick):
                send("piece", piece)
        except MemoryError:
            os._exit(_OUT_OF_MEMORY)
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
            send("error", traceback.format_exc())
        signal.setitimer(signal.ITIMER_REAL, 0)
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
