"""The context a stage function receives, with or without Snakemake.

Every rule's ``script:`` is a thin adapter::

    from temtwin.workflow.context import run_stage
    run_stage(snakemake)          # the stage function is the rule's entry in temtwin.workflow.stages

``run_stage`` builds a :class:`StageContext` from the ``snakemake`` object, sends log records to
the rule's log file, and calls the stage function with it.  A :class:`~temtwin.errors.UserError`
becomes one clear line on stderr (and in the log) and exit status 1, with no traceback; any other
exception is logged with its traceback and re-raised.

Tests build a context directly with :meth:`StageContext.create`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from ..errors import UserError
from ..io.h5 import atomic_h5, atomic_path, make_provenance, remove_stale_temporaries


#: seconds between progress lines on stderr
PROGRESS_STDERR_S = 30.0


@dataclass
class StageContext:
    """Inputs, outputs and settings of one stage run.

    Attributes
    ----------
    rule: rule name (``segment``, ``fft_peaks``, ...).
    input, output: name -> path (or list of paths) as declared by the rule.
    params: the rule's params (name -> value).
    config: the whole validated configuration (defaults filled in).
    wildcards: e.g. ``{"sample": ..., "image": ...}``.
    threads: CPU threads the stage may use.
    log: logger writing to the rule's log file.
    """

    rule: str
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    wildcards: Mapping[str, str] = field(default_factory=dict)
    threads: int = 1
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("temtwin"))

    @classmethod
    def create(cls, rule: str, input: Mapping[str, Any], output: Mapping[str, Any],
               config: Mapping[str, Any] | None = None, **kw: Any) -> "StageContext":
        """A context for tests and library use (config defaults are filled in)."""
        from ..config import load_config

        cfg = load_config(dict(config or {}), require_dataset=False)
        return cls(rule=rule, input=dict(input), output=dict(output), config=cfg, **kw)

    @property
    def seed(self) -> int:
        """The workflow seed from config (``seed``)."""
        return int(self.config.get("seed", 0))

    @property
    def provenance(self) -> dict:
        """Provenance attributes for this rule's result files."""
        return make_provenance(self.rule, self.config, self.input)

    def section(self, name: str) -> dict:
        """The config section of a stage (e.g. ``ctx.section("segment")``).

        Under Snakemake this is the rule's ``params.settings[name]``: the global section with the
        sample's ``sample.yaml`` ``overrides.<name>`` merged in (``Workflow.settings``); otherwise the
        section of ``config``.
        """
        settings = self.params.get("settings") if isinstance(self.params, Mapping) else None
        if isinstance(settings, Mapping) and name in settings:
            return dict(settings[name])
        return dict(self.config.get(name, {}) or {})

    def paths(self, key: str) -> list[str]:
        """Input ``key`` as a list of paths (empty when the rule has no such input or it is empty)."""
        v = self.input.get(key)
        if v is None:
            return []
        if isinstance(v, (str, Path)):
            return [str(v)] if str(v) else []
        return [str(p) for p in v]

    def sample_yaml(self) -> Path | None:
        """The sample's ``sample.yaml`` when the rule has it as input (``settings``) and it exists."""
        return next((Path(p) for p in self.paths("settings") if Path(p).is_file()), None)

    def sample_settings(self) -> dict:
        """The validated ``sample.yaml`` mapping of the rule's sample ({} without one)."""
        from .discovery import read_sample_yaml

        p = self.sample_yaml()
        return read_sample_yaml(p) if p is not None else {}

    @contextlib.contextmanager
    def h5(self, key: str = "h5") -> Iterator[h5py.File]:
        """Open output ``key`` for an atomic HDF5 write with provenance attributes."""
        with atomic_h5(self.output[key], self.provenance) as f:
            yield f

    @contextlib.contextmanager
    def file(self, key: str) -> Iterator[Path]:
        """A temporary path for output ``key``, renamed into place on success."""
        with atomic_path(self.output[key]) as p:
            yield p

    def not_applicable(self, reason: str, summary_key: str | None, key: str = "h5") -> None:
        """Write output ``key`` as not applicable: root attrs ``applicable = False`` and ``reason``, the
        summary fragment ``{summary_key: {applicable: false, reason}}`` (none when ``summary_key`` is None),
        and an empty ``figures`` folder when the rule has one.  The one way every stage records that it
        does not apply (GPA on an amorphous image, Keating on InP, ...); write any other output yourself.
        """
        from ..io.h5 import set_summary

        self.log.warning("%s: not applicable: %s", self.rule, reason)
        with self.h5(key) as f:
            f.attrs["applicable"] = False
            f.attrs["reason"] = reason
            if summary_key:
                set_summary(f, {summary_key: {"applicable": False, "reason": reason}})
        if self.output.get("figures"):
            Path(self.output["figures"]).mkdir(parents=True, exist_ok=True)

    def progress(self, i: int, n: int, what: str = "items", every: int | None = None) -> None:
        """Log a progress line ``what i/n (pct%)``; logs about 20 lines per loop at most.

        Long stages also show a progress line on stderr at most every ``PROGRESS_STDERR_S`` seconds (the
        log file has them all), so a long job never looks hung.
        """
        every = every or max(1, n // 20)
        if i == n or i % every == 0:
            self.log.info("progress: %s %d/%d (%.0f%%)", what, i, n, 100.0 * i / max(n, 1))
        now = time.monotonic()
        last = self.__dict__.setdefault("_progress_t", now)
        if now - last >= PROGRESS_STDERR_S and i < n:
            self.__dict__["_progress_t"] = now
            where = "/".join(str(v) for v in self.wildcards.values())
            print(f"temtwin: {self.rule} {where}: {what} {i}/{n} ({100.0 * i / max(n, 1):.0f}%)", file=sys.stderr,
                  flush=True)


def _resolve(func: Callable | str) -> Callable:
    if callable(func):
        return func
    mod, _, name = func.partition(":")
    return getattr(importlib.import_module(mod), name)


def _named(io: Any) -> dict[str, Any]:
    """Snakemake's Namedlist -> dict (named entries; unnamed ones as ``_0``, ``_1``...)."""
    out: dict[str, Any] = {}
    try:
        names = dict(io.items())
    except Exception:  # pragma: no cover - plain list
        names = {}
    out.update(names)
    if not names:
        for i, v in enumerate(io):
            out[f"_{i}"] = v
    return out


def setup_logging(logfile: str | None) -> logging.Logger:
    """Configure the ``temtwin`` logger to write to ``logfile`` (and stderr at WARNING)."""
    log = logging.getLogger("temtwin")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        h = logging.FileHandler(logfile, mode="w")
        h.setFormatter(fmt)
        log.addHandler(h)
    s = logging.StreamHandler(sys.stderr)
    s.setLevel(logging.WARNING)
    s.setFormatter(logging.Formatter("temtwin: %(message)s"))
    log.addHandler(s)
    log.propagate = False
    return log


def run_stage(smk: Any, func: Callable[[StageContext], Any] | str | None = None) -> None:
    """Run a stage function from a Snakemake ``script:`` (``smk`` is the ``snakemake`` object).

    ``func`` defaults to the rule's entry in the stage registry (:mod:`temtwin.workflow.stages`).
    """
    if func is None:
        from .stages import stage

        func = stage(smk.rule).entry
    logfile = smk.log[0] if len(smk.log) else None
    log = setup_logging(logfile)
    threads = int(getattr(smk, "threads", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    ctx = StageContext(
        rule=smk.rule, input=_named(smk.input), output=_named(smk.output),
        params=_named(smk.params), config=dict(smk.config), wildcards=dict(smk.wildcards.items()),
        threads=threads, log=log,
    )
    t0 = time.perf_counter()
    log.info("rule %s %s: start (threads=%d)", ctx.rule, dict(ctx.wildcards), threads)
    for p in ctx.output.values():  # temporaries a killed run of this rule left beside its outputs
        for q in ([p] if isinstance(p, (str, os.PathLike)) else list(p)):
            for r in remove_stale_temporaries(q):
                log.info("removed %s, left by a killed run", r)
    try:
        _set_threads(threads)
        _resolve(func)(ctx)
    except UserError as err:
        log.error("error: %s", err)
        logging.shutdown()
        sys.exit(1)
    except Exception:
        log.exception("rule %s failed", ctx.rule)
        raise
    log.info("rule %s: done in %.2f s", ctx.rule, time.perf_counter() - t0)


def _set_threads(n: int) -> None:
    """Limit numeric libraries to ``n`` threads without importing them.

    torch and numba take about 2 s to import, so they are imported only by the stages that use them.
    Their thread counts come from the environment (``OMP_NUM_THREADS`` for torch and BLAS,
    ``NUMBA_NUM_THREADS`` for numba), which both read when first imported; a library that is
    already imported in this process is set directly.
    """
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    numba = sys.modules.get("numba")
    if numba is None:
        # read by numba at import; never changed once numba is loaded (numba refuses a thread-pool size
        # that differs from the one it launched with)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(min(n, os.cpu_count() or n)))
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(n)
    if numba is not None:
        with contextlib.suppress(Exception):
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
