"""The ``temtwin`` command line.

    temtwin run [--dataset DIR] [--cores N] [--profile profiles/slurm] [--set a.b=V ...] [--keep-lock]
                [-- SNAKEMAKE ARGS...]
    temtwin check [--config FILE] [--dataset DIR] [--set a.b=V ...]   validate config and dataset
    temtwin info FILE                               read one micrograph and print its calibration
    temtwin view RESULTS                            (re)build the interactive pages viewer.html, index.html
    temtwin train-unet [ARGS...]                    train the FFT-peak U-Net (see temtwin.training.fft_unet)

User errors print one line ``temtwin: error: ...`` and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import __version__
from .config import REPO_ROOT
from .errors import UserError


def check_config_args(extra: list[str]) -> None:
    """Snakemake's ``--config KEY=VALUE`` takes top-level keys only; a dotted key gets one clear line.

    (Snakemake itself answers ``a.b=c`` with a traceback, before the workflow can say anything.)
    """
    entries, inside = [], False
    for a in extra:
        if a in ("--config", "-C"):
            inside = True
            continue
        if a.startswith("--config="):
            entries.append(a.split("=", 1)[1])
            continue
        if a.startswith("-"):
            inside = False
        elif inside:
            entries.append(a)
    for e in entries:
        key, _, value = e.partition("=")
        if "." in key:
            parts = key.split(".")
            flow = parts[0] + ": " + "".join("{" + p + ": " for p in parts[1:]) + value + "}" * (len(parts) - 1)
            raise UserError(f"`--config {e}`: Snakemake's --config takes top-level keys only, not dotted "
                            f"ones; use `temtwin run --set {key}={value}` (or put `{flow}` in a YAML file)",
                            "command line")


def parse_sets(items: list[str] | None) -> dict:
    """``--set a.b.c=VALUE`` items -> a nested mapping (VALUE parsed as YAML: 1.5, true, [Si, Ge])."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise UserError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set gpa.resolution_nm=1.5")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {p} is set to a value and used as a section")
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    return out


def _user_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """(validated config, nested overrides) from --config FILE, --dataset and --set."""
    import yaml

    from .config import check_renamed_sections, load_config
    from .report.summary import deep_merge

    cfg_file = Path(args.config)
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {}
    check_renamed_sections(cfg if isinstance(cfg, dict) else None, cfg_file)
    sets = parse_sets(getattr(args, "set", None))
    check_renamed_sections(sets, "--set")
    if args.dataset:
        sets["dataset"] = args.dataset
    deep_merge(cfg, sets)
    return load_config(cfg), sets


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    import yaml

    from .io.h5 import atomic_path
    from .workflow.discovery import discover

    check_config_args(extra)
    cfg, sets = _user_config(args)
    from .workflow.snake import check_phase_names

    check_phase_names(cfg, discover(cfg["dataset"], cfg.get("samples") or None))  # fail fast, one line
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"),
           "--configfile", str(Path(args.config))]
    if sets:  # nested keys: Snakemake's --config sets top-level keys only, so pass a second config file
        set_file = Path(".snakemake") / "temtwin-set.yaml"
        set_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(set_file) as tmp:
            tmp.write_text(yaml.safe_dump(sets, sort_keys=True))
        cmd += [str(set_file)]
    cmd += ["--cores", str(args.cores)]
    if args.profile:
        cmd += ["--workflow-profile", args.profile]
    cmd += extra
    workdir = _workdir(extra)
    from .workflow.locks import stale_lock

    stale = stale_lock(workdir)
    if stale:
        if args.keep_lock:
            print(f"temtwin: error: {workdir}: the working directory is locked by a run that no longer lives "
                  f"({', '.join(p.name for p in stale)}); rerun without --keep-lock, or with `-- --unlock`",
                  file=sys.stderr)
            return 1
        print(f"temtwin: removing the stale Snakemake lock of {workdir} (left by a killed run; "
              "no Snakemake process runs there)", file=sys.stderr)
        rc = subprocess.call([*cmd, "--unlock"])
        if rc:
            return rc
    return subprocess.call(cmd)


def _workdir(extra: list[str]) -> Path:
    """Snakemake's working directory: ``--directory``/``-d`` among the extra arguments, else here."""
    for i, a in enumerate(extra):
        if a in ("--directory", "-d") and i + 1 < len(extra):
            return Path(extra[i + 1])
        if a.startswith("--directory="):
            return Path(a.split("=", 1)[1])
    return Path.cwd()


def _cmd_check(args: argparse.Namespace) -> int:
    from .workflow.discovery import discover

    cfg, _ = _user_config(args)
    samples = discover(cfg["dataset"], cfg.get("samples") or None)
    from .workflow.snake import check_phase_names

    check_phase_names(cfg, samples)
    for s in samples.values():
        print(f"{s.name}: {len(s.images)} image(s): {', '.join(f.name for f in s.images.values())}"
              f"{'; sample.yaml' if s.sample_yaml else ''}"
              f"{'; ' + str(len(s.phase_files)) + ' CIF(s)' if s.phase_files else ''}"
              f"{'; EELS ' + ','.join(p.stem for p in s.eels_files) if s.eels_files else ''}"
              f"{'; label overrides ' + ','.join(s.label_overrides) if s.label_overrides else ''}")
    print("config OK")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .io.ingest import read_micrograph
    from .workflow.discovery import read_sample_yaml

    p = Path(args.file)
    settings = read_sample_yaml(p.parent / "sample.yaml") if (p.parent / "sample.yaml").is_file() else {}
    m = read_micrograph(p, settings=settings)
    print(f"{p}: {m.shape[0]} x {m.shape[1]} px, pixel {m.pixel_size_nm[0]:.6g} x {m.pixel_size_nm[1]:.6g} nm, "
          f"field of view {m.field_of_view_nm[0]:.4g} x {m.field_of_view_nm[1]:.4g} nm, mode {m.meta['mode']}, "
          f"{m.meta['n_frames']} frame(s), mean {float(m.data.mean()):.4g} {m.meta['units']}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from .viewer.pages import view

    cfg = {}
    if args.config:
        import yaml

        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    for p in view(args.results, {"viewer": cfg.get("viewer", {})}):
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="temtwin", description="(S)TEM micrographs to phases, strain and digital twins")
    ap.add_argument("--version", action="version", version=f"temtwin {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the Snakemake workflow")
    r.add_argument("--dataset", help="dataset folder (<sample>/<images>)")
    r.add_argument("--config", default=str(REPO_ROOT / "config" / "config.yaml"))
    r.add_argument("--cores", default=str(os.cpu_count() or 1))
    r.add_argument("--profile", help="workflow profile folder, e.g. profiles/slurm")
    r.add_argument("--keep-lock", action="store_true",
                   help="stop with an error instead of removing a stale lock left by a killed run")
    c = sub.add_parser("check", help="validate the config and the dataset")
    c.add_argument("--dataset")
    c.add_argument("--config", default=str(REPO_ROOT / "config" / "config.yaml"))
    for p in (r, c):
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="set a (nested) config key, e.g. --set gpa.resolution_nm=1.5 (repeatable)")
    i = sub.add_parser("info", help="read one micrograph and print its calibration")
    i.add_argument("file")
    v = sub.add_parser("view", help="(re)build the interactive pages (viewer.html per sample, index.html)")
    v.add_argument("results", help="the workflow's results folder")
    v.add_argument("--config", help="config file whose `viewer:` section to use")
    sub.add_parser("train-unet", help="train the FFT-peak U-Net", add_help=False)
    if argv and argv[0] == "train-unet":
        from .training.fft_unet import main as train_main

        return int(train_main(argv[1:]) or 0)
    args = ap.parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args, extra)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "view":
            return _cmd_view(args)
    except UserError as err:
        print(f"temtwin: error: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
