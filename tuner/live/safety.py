"""Safety of live changes: one at a time per target, a journal written once, restore always.

A live change (trial, calibration, apply) runs inside :func:`live_change`:

1. the endpoint lock is taken: a tag ``tuner:lock:<variant>`` on the endpoint naming owner, host,
   pid, expiry and the journal (a tag, so processes on other machines see it too); for an
   inference component the tag is ``tuner:lock:inference-component/<name>`` on the endpoint
   that hosts it;
2. an outstanding journal for the target (ours from a killed run, or a stale lock's on this
   host) is restored first; one this host cannot read is a refusal naming ``tuner restore``;
3. the snapshot (scaling configuration and desired instance count, or for an inference
   component its desired copy count) is written as a journal that
   is never overwritten (``os.link`` refuses an existing name);
4. SIGINT, SIGTERM and SIGHUP raise, so the restore below runs on every exit but ``kill -9``;
5. afterwards: the configuration, then the instance count, go back, with retries and backoff;
   the lock is released and only then the journal removed, so a kill at any point leaves either
   nothing to do or a journal that ``tuner restore`` completes.

Limits: the tag lock is not atomic (two runs starting within a second can both see it free; a
read-back after a pause narrows that window, it does not close it), and the expiry of another
host's lock is wall-clock time.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from tuner.aws import AutoScaling, Endpoints, ScalingSnapshot
from tuner.errors import AwsError, Terminated, TunerError, ValidationError, read_json_file
from tuner.policy.resource import Resource

JOURNAL_NAME = "restore-journal.json"
LOCK_TAG_PREFIX = "tuner:lock:"
LOCK_TTL_S = 1800.0
"""A lock not refreshed for this long (wall clock) is stale; the holder refreshes it every third."""
LOCK_SETTLE_S = 1.0
"""Pause between writing the lock tag and reading it back (narrows the race of two writers)."""
RESTORE_ATTEMPTS = 6
RESTORE_BACKOFF_S = 1.0
"""First pause between restore attempts; it doubles (1, 2, 4, 8, 16 s)."""
COUNT_WAIT_S = 1800.0
"""Longest real wait for an Updating endpoint before its instance count can be set back."""
EXIT_RESTORE_FAILED = 3
NO_JOURNAL = "none"
# AWS tag values allow letters, digits, spaces and _ . : / = + - @ (API reference, Tag).
_TAG_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.:/=+-@")

T = TypeVar("T")


class LockHeld(ValidationError):
    """Another live change holds the endpoint (or left a journal this host cannot restore)."""


class RestoreFailed(TunerError):
    """The original could not be put back: the endpoint still runs what the run set."""

    exit_status = EXIT_RESTORE_FAILED


def restore_command(journal: Path, endpoint_url: str | None) -> str:
    url = f" --endpoint-url {endpoint_url}" if endpoint_url else ""
    return f"tuner restore {journal.resolve()}{url}"


# -- the lock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    """Who holds an endpoint's lock, as its tag says."""

    owner: str
    host: str
    pid: int
    expires_epoch_s: float
    token: str
    journal: str
    """Absolute path of the holder's journal ('-': not expressible in a tag; 'none': no journal)."""

    def to_tag(self) -> str:
        value = (
            f"{self.owner}@{self.host} pid={self.pid} until={int(self.expires_epoch_s)} "
            f"token={self.token} journal={self.journal}"
        )
        return value if len(value) <= 256 else value[: value.index(" journal=")] + " journal=-"

    @classmethod
    def parse(cls, value: str) -> LockHolder | None:
        try:
            who, rest = value.split(" ", 1)
            owner, host = who.rsplit("@", 1)
            fields = dict(part.split("=", 1) for part in rest.split(" journal=")[0].split())
            journal = rest.split(" journal=", 1)[1] if " journal=" in rest else "-"
            return cls(
                owner, host, int(fields["pid"]), float(fields["until"]), fields["token"], journal
            )
        except (ValueError, KeyError, IndexError):
            return None

    def describe(self) -> str:
        until = time.strftime("%H:%M:%S UTC", time.gmtime(self.expires_epoch_s))
        return f"{self.owner}@{self.host} pid {self.pid} (lock expires {until})"

    def alive(self, now_s: float) -> bool:
        """Still working: its process runs (same host) or its lock has not expired (elsewhere)."""
        if self.host == _host():
            return _pid_alive(self.pid)
        return now_s < self.expires_epoch_s


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie (killed, not yet reaped by its parent) is dead for our purpose.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _host() -> str:
    """This host's name as a lock tag holds it."""
    return _tag_safe(socket.gethostname())


def _tag_safe(text: str) -> str:
    return text if text and set(text) <= _TAG_SAFE else "-"


def lock_name(resource: Resource) -> str:
    """What follows ``tuner:lock:`` in the lock tag: the variant, or ``inference-component/IC``."""
    return resource.variant or resource.resource_id


class EndpointLock:
    """The tag lock of one variant (or one inference component) of an endpoint."""

    def __init__(self, endpoints: Endpoints, endpoint: str, variant: str) -> None:
        """``variant``: the variant's name, or :func:`lock_name` of an inference component."""
        self.endpoints, self.endpoint = endpoints, endpoint
        self.key = LOCK_TAG_PREFIX + variant
        self.held: LockHolder | None = None

    def holder(self) -> LockHolder | None:
        # AddTags replaces a key's value on AWS; moto appends a second one: the last one counts.
        values = [
            t["Value"] for t in self.endpoints.tag_list(self.endpoint) if t["Key"] == self.key
        ]
        return LockHolder.parse(values[-1]) if values else None

    def acquire(self, journal: Path | None, *, settle_s: float | None = None) -> LockHolder | None:
        """Take the lock; return the stale holder it replaced (None if it was free).

        ``journal``: where this run keeps its journal (None: it writes none, as apply).
        """
        now = time.time()
        current = self.holder()
        if current is not None and current.alive(now):
            raise LockHeld(
                f"{self.endpoint} is locked by another live change: {current.describe()}; "
                "wait for it to finish (it restores on exit)"
            )
        mine = LockHolder(
            owner=_tag_safe(_user()),
            host=_host(),
            pid=os.getpid(),
            expires_epoch_s=now + LOCK_TTL_S,
            token=secrets.token_hex(6),
            journal=NO_JOURNAL if journal is None else _tag_safe(str(journal.resolve())),
        )
        self.endpoints.add_tag(self.endpoint, self.key, mine.to_tag())
        self.held = mine
        time.sleep(LOCK_SETTLE_S if settle_s is None else settle_s)
        now_holder = self.holder()
        if now_holder is None or now_holder.token != mine.token:
            self.held = None
            who = now_holder.describe() if now_holder else "nobody (the tag vanished)"
            raise LockHeld(f"{self.endpoint}: lost the race for its lock to {who}")
        return current

    def refresh(self) -> None:
        if self.held is not None:
            self.held = replace(self.held, expires_epoch_s=time.time() + LOCK_TTL_S)
            self.endpoints.add_tag(self.endpoint, self.key, self.held.to_tag())

    def release(self, token: str | None = None) -> None:
        """Remove the tag if it is ours (or ``token``'s): never another holder's."""
        token = token or (self.held.token if self.held else None)
        current = self.holder()
        if current is not None and current.token == token:
            self.endpoints.delete_tag(self.endpoint, self.key)
        self.held = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- the journal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Journal:
    """What a live change must put back: the scaling snapshot and the desired instance count
    (for an inference component: its desired copy count; ``endpoint`` is the hosting one)."""

    snapshot: ScalingSnapshot
    endpoint: str
    variant: str
    desired_count: int | None
    lock_token: str | None = None
    component: str | None = None

    @property
    def lock_name(self) -> str:
        return f"inference-component/{self.component}" if self.component else self.variant

    def save_new(self, path: Path) -> None:
        """Write once: an existing journal is never overwritten (FileExistsError)."""
        doc = {
            **self.snapshot.to_dict(),
            "endpoint": self.endpoint,
            "variant": self.variant,
            "desired_count": self.desired_count,
            "lock_token": self.lock_token,
            **({"component": self.component} if self.component else {}),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Journal:
        snap = ScalingSnapshot.load(path)
        data = read_json_file(path, TunerError, "restore journal")
        count = data.get("desired_count")
        if snap.resource.variant is None:
            if not data.get("endpoint"):
                raise TunerError(f"{path}: the journal names no endpoint for {snap.resource}")
            return cls(
                snapshot=snap,
                endpoint=str(data["endpoint"]),
                variant=str(data.get("variant") or "AllTraffic"),
                desired_count=int(count) if isinstance(count, int) else None,
                lock_token=data.get("lock_token"),
                component=snap.resource.name,
            )
        return cls(
            snapshot=snap,
            endpoint=str(data.get("endpoint") or snap.resource.name),
            variant=str(data.get("variant") or snap.resource.variant or "AllTraffic"),
            desired_count=int(count) if isinstance(count, int) else None,
            lock_token=data.get("lock_token"),
        )


# -- restore -------------------------------------------------------------------------------------


def with_retries(
    fn: Callable[[], T],
    what: str,
    log: Callable[[str], None],
    *,
    attempts: int | None = None,
    backoff_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, pausing 1, 2, 4... s after each AWS error (idempotent fn)."""
    attempts = RESTORE_ATTEMPTS if attempts is None else attempts
    delay = RESTORE_BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except AwsError as e:
            if attempt == attempts:
                raise
            log(f"{what} failed (attempt {attempt} of {attempts}): {e}; retrying in {delay:g} s")
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def restore_count(
    endpoints: Endpoints, journal: Journal, log: Callable[[str], None], *, wait_s: float
) -> None:
    """Set the desired instance count back (inside the original range), once not Updating."""
    want = journal.desired_count
    if want is None:
        return
    target = journal.snapshot.target
    if target is not None:
        want = min(max(want, int(target["MinCapacity"])), int(target["MaxCapacity"]))
    deadline = time.monotonic() + wait_s
    if journal.component is not None:
        _restore_copies(endpoints, journal.component, want, log, deadline, wait_s)
        return
    while True:
        state = endpoints.describe(journal.endpoint)
        counts = state.variant(journal.variant)
        if state.status == "InService":
            if counts.desired != want:
                log(f"setting {journal.endpoint}/{journal.variant} back to {want} instance(s)")
                endpoints.set_desired_count(journal.endpoint, journal.variant, want)
            return
        if time.monotonic() > deadline:
            raise AwsError(
                f"{journal.endpoint} stayed {state.status} for {wait_s:g} s: its instance count "
                f"is {counts.desired}, not the original {want}"
            )
        time.sleep(0.1)


def _restore_copies(
    endpoints: Endpoints,
    component: str,
    want: int,
    log: Callable[[str], None],
    deadline: float,
    wait_s: float,
) -> None:
    """The copy-count half of :func:`restore_count` for an inference component."""
    while True:
        state = endpoints.describe_component(component)
        if state.status == "InService":
            if state.desired != want:
                log(f"setting inference component {component} back to {want} copies")
                endpoints.set_copy_count(component, want)
            return
        if time.monotonic() > deadline:
            raise AwsError(
                f"inference component {component} stayed {state.status} for {wait_s:g} s: its "
                f"copy count is {state.desired}, not the original {want}"
            )
        time.sleep(0.1)


def restore_journal(
    journal: Journal,
    scaling: AutoScaling,
    endpoints: Endpoints,
    log: Callable[[str], None],
    *,
    count_wait_s: float = COUNT_WAIT_S,
) -> None:
    """Configuration, then instance count, each retried with backoff (AwsError if it fails)."""
    log(f"restoring the original scaling configuration of {journal.snapshot.resource.resource_id}")
    with_retries(lambda: scaling.restore(journal.snapshot), "restore", log)
    with_retries(
        lambda: restore_count(endpoints, journal, log, wait_s=count_wait_s),
        "restoring the instance count",
        log,
    )


def restore_file(
    path: Path,
    scaling: AutoScaling,
    endpoints: Endpoints,
    log: Callable[[str], None],
    *,
    count_wait_s: float = COUNT_WAIT_S,
    our_token: str | None = None,
) -> Journal:
    """``tuner restore`` of a journal: refuse if its run still lives, restore, unlock, remove.

    ``our_token``: the caller holds the lock itself (a new run restoring a killed run's journal).
    """
    journal = Journal.load(path)
    if journal.lock_token is None:  # a plain snapshot named as a journal: no lock, no count
        with_retries(lambda: scaling.restore(journal.snapshot), "restore", log)
        path.unlink(missing_ok=True)
        return journal
    lock = EndpointLock(endpoints, journal.endpoint, journal.lock_name)
    holder = lock.holder()
    ours = holder is not None and our_token is not None and holder.token == our_token
    # This very process holds it: its change is over (a restore that failed, retried in process).
    itself = (
        holder is not None
        and holder.host == _host()
        and holder.pid == os.getpid()
        and holder.token == journal.lock_token
    )
    if holder is not None and not ours and not itself and holder.alive(time.time()):
        what = "the run that wrote it" if holder.token == journal.lock_token else "another run"
        raise LockHeld(
            f"{path}: {what} still holds {journal.endpoint}: {holder.describe()}; stop it "
            "(it restores on SIGINT/SIGTERM/SIGHUP) instead"
        )
    restore_journal(journal, scaling, endpoints, log, count_wait_s=count_wait_s)
    if holder is not None and not ours and holder.token == journal.lock_token:
        with_retries(lambda: lock.release(journal.lock_token), "releasing the lock", log)
    path.unlink(missing_ok=True)
    return journal


# -- signals -------------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` for the duration (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C (or a SIGTERM, SIGHUP) during the restore must not abandon it half done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# -- the whole -----------------------------------------------------------------------------------


@dataclass
class LiveChange:
    """What :func:`live_change` yields: the journal and the lock in force."""

    journal: Journal
    journal_path: Path
    lock: EndpointLock


@contextlib.contextmanager
def live_change(
    scaling: AutoScaling,
    endpoints: Endpoints,
    resource: Resource,
    journal_path: Path,
    log: Callable[[str], None],
    *,
    endpoint_url: str | None = None,
    count_wait_s: float = COUNT_WAIT_S,
) -> Iterator[LiveChange]:
    """Lock, journal, signals, and the restore on every exit (see the module docstring)."""
    component = resource.name if resource.variant is None else None
    if component is not None:
        # The lock goes on the endpoint that hosts the component.
        endpoint, variant = endpoints.describe_component(component).endpoint, "AllTraffic"
    else:
        endpoint, variant = resource.name, resource.variant or "AllTraffic"
    journal_path = journal_path.resolve()
    lock = EndpointLock(endpoints, endpoint, lock_name(resource))
    stale = lock.acquire(journal_path)
    try:
        for path in _outstanding(stale, journal_path, endpoint_url):
            log(f"an earlier run left {path}: restoring it first")
            restore_file(
                path,
                scaling,
                endpoints,
                log,
                count_wait_s=count_wait_s,
                our_token=lock.held.token if lock.held else None,
            )
        desired = (
            endpoints.describe_component(component).desired
            if component is not None
            else endpoints.describe(endpoint).variant(variant).desired
        )
        journal = Journal(
            snapshot=scaling.snapshot(resource),
            endpoint=endpoint,
            variant=variant,
            desired_count=desired,
            lock_token=lock.held.token if lock.held else None,
            component=component,
        )
        journal.save_new(journal_path)
    except BaseException:
        with contextlib.suppress(TunerError):
            lock.release()
        raise
    refresher = _Refresher(lock, log)
    try:
        with signals_raise(), refresher:
            yield LiveChange(journal, journal_path, lock)
    finally:
        with _signals_ignored():
            _finish(
                journal, journal_path, lock, scaling, endpoints, log, endpoint_url, count_wait_s
            )


def _outstanding(stale: LockHolder | None, mine: Path, endpoint_url: str | None) -> list[Path]:
    """Journals to restore before a new snapshot: ours (a killed run), a stale lock's."""
    paths = [mine] if mine.exists() else []
    if stale is not None and stale.journal not in (str(mine), NO_JOURNAL):
        path = Path(stale.journal)
        if stale.journal != "-" and stale.host == _host() and path.is_file():
            paths.append(path)
        elif stale.journal != "-" and stale.host == _host():
            pass  # released the configuration, then died before removing the tag
        else:
            where = f" on {stale.host}" if stale.host != _host() else ""
            raise LockHeld(
                f"the lock of {stale.describe()} has expired but its journal may be "
                f"outstanding: run `tuner restore {stale.journal}`{where}, or after checking "
                "the endpoint by hand, `tuner restore --release-lock --endpoint ...`"
            )
    return paths


def _finish(
    journal: Journal,
    path: Path,
    lock: EndpointLock,
    scaling: AutoScaling,
    endpoints: Endpoints,
    log: Callable[[str], None],
    endpoint_url: str | None,
    count_wait_s: float,
) -> None:
    try:
        restore_journal(journal, scaling, endpoints, log, count_wait_s=count_wait_s)
        with_retries(lock.release, "releasing the lock", log)
    except TunerError as e:
        raise RestoreFailed(
            f"restore failed ({e}): {journal.endpoint} may still run the trial's configuration; "
            f"put the original back with: {restore_command(path, endpoint_url)}"
        ) from e
    path.unlink(missing_ok=True)


class _Refresher:
    """Refreshes the lock's expiry in a thread while a long change runs."""

    def __init__(self, lock: EndpointLock, log: Callable[[str], None]) -> None:
        self.lock, self.log = lock, log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tuner-lock", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(LOCK_TTL_S / 3):
            try:
                self.lock.refresh()
            except TunerError as e:
                self.log(f"could not refresh the lock on {self.lock.endpoint}: {e}")

    def __enter__(self) -> _Refresher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def finite(value: float, flag: str) -> float:
    """``value`` if it is a finite number, else a ValidationError naming ``flag``."""
    if not math.isfinite(value):
        raise ValidationError(f"{flag} must be a finite number, got {value}")
    return value


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
