"""The ``specray`` command: parses arguments and calls specray functions, nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import specray
from specray.errors import SpecrayError

log = logging.getLogger("specray")

GRID_HELP = "wavelength grid: harps, demo or linear:START:STOP:STEP[:R] (Angstrom)"

# Errors a user can fix: one line, or the whole chain with --verbose. Anything else is a
# bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (SpecrayError, OSError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with every option's default (unless it is None or already in the text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "%(default)" in text or "default" in text:
            return text
        return super()._get_help_string(action)


def _common_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options that work before or after the subcommand (``-q`` anywhere)."""
    default = (lambda value: value) if top else (lambda _: argparse.SUPPRESS)
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default(False),
        help="warnings and errors only (no progress)",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False),
        help="also show Ray's own messages and its workers' output (by default they go to "
        "OUT/logs/COMMAND-TIME.log, or a temporary folder for s3:// outputs)",
    )  # fmt: skip
    parser.add_argument(
        "--dashboard", action="store_true", default=default(False),
        help="start the local Ray with its dashboard and print its URL",
    )  # fmt: skip


def _command(commands, name: str, help: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
    _common_options(parser, top=False)
    return parser


def _ingest(args: argparse.Namespace) -> int:
    from specray.data.ingest import Preprocessing, ingest

    settings = _config(args).ingest
    report = ingest(
        args.input,
        args.out,
        grid=settings.grid,
        labels=args.labels,
        fmt=settings.format,
        preprocessing=Preprocessing.from_settings(settings),
        labels_key=settings.labels_key,
        wait_s=float("inf") if args.wait is None else args.wait,
    )
    print(report.summary())
    if report.failed:
        print(f"specray ingest: error: {report.failure()}", file=sys.stderr)
        return 1
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from specray.data.migrate import migrate

    report = migrate(args.store, wait_s=float("inf") if args.wait is None else args.wait)
    print(report.summary())
    return 0


def _synth(args: argparse.Namespace) -> int:
    from specray.data.synth_store import synthesize

    settings = _config(args).synth
    summary = synthesize(
        args.out,
        n_stars=settings.stars,
        mean_epochs=settings.visits,
        grid=settings.grid,
        fmt=settings.format,
        seed=settings.seed,
    )
    print(summary)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from specray.workflows.demo import demo

    print(
        demo(args.out, stars=args.stars, seed=args.seed, settings=args.config, overrides=args.set)
    )
    return 0


def _add_demo(commands) -> None:
    parser = _command(commands, "demo", help="the whole pipeline on the synthetic survey")
    parser.add_argument("--out", default="specray-demo", help="folder or s3:// prefix")
    parser.add_argument("--stars", type=int, default=300, help="stars in the synthetic survey")
    parser.add_argument("--seed", type=int, default=0, help="seed of the survey and the training")
    _add_config_options(parser)  # over the demo's own settings (`specray config --demo`)
    parser.set_defaults(handler=_demo)


def _config(args: argparse.Namespace, options: list[str] | None = None):
    """The settings: defaults, --config's file, the command's own options, --set."""
    from specray.config import load_config

    given = [
        f"{dest.removeprefix(SETTING)}={json.dumps(value)}"
        for dest, value in vars(args).items()
        if dest.startswith(SETTING) and value is not None
    ]
    return load_config(args.config, (options or []) + given + (args.set or []))


SETTING = "setting:"
"""Prefix of the argparse destination of an option that stands for a configuration key."""


def _setting(
    parser: argparse.ArgumentParser, flag: str, key: str, text: str, aliases=(), **kwargs
) -> None:
    """``flag`` sets the configuration key ``key`` (over --config's file); its default, shown
    in the help, is the setting's."""
    from specray.config import Config

    section, name = key.split(".")
    default = getattr(getattr(Config(), section), name)
    shown = "none" if default is None else default
    if "choices" not in kwargs:
        kwargs["metavar"] = name.upper()
    parser.add_argument(
        flag, *aliases, dest=SETTING + key, default=None,
        help=f"{text} (default: {shown}; setting {key})", **kwargs,
    )  # fmt: skip


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML or JSON settings file (`specray config --show` lists the keys)"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set train.epochs=3 (repeatable)",
    )


def _train(args: argparse.Namespace) -> int:
    from specray.train.trainer import train

    print(train(args.data, args.out, _config(args)).summary())
    return 0


def _add_train(commands) -> None:
    parser = _command(commands, "train", help="train the beta-VAE on a store (Ray Train)")
    parser.add_argument("--data", required=True, help="store folder or s3:// prefix")
    parser.add_argument("--out", required=True, help="run folder or s3:// prefix (resumes)")
    _add_config_options(parser)
    parser.set_defaults(handler=_train)


def _tune(args: argparse.Namespace) -> int:
    from specray.train.tune import tune

    samples = [] if args.samples is None else [f"tune.samples={args.samples}"]
    print(tune(args.data, args.out, _config(args, samples)).summary())
    return 0


def _add_tune(commands) -> None:
    parser = _command(commands, "tune", help="search latent size and beta (Ray Tune)")
    parser.add_argument("--data", required=True, help="store folder or s3:// prefix")
    parser.add_argument("--out", required=True, help="experiment folder (re-run resumes)")
    parser.add_argument("--samples", type=int, help="number of trials (tune.samples, 8)")
    _add_config_options(parser)
    parser.set_defaults(handler=_tune)


def _analyze(args: argparse.Namespace) -> int:
    from specray.analysis.analyze import analyze

    overrides = []
    if args.labels:
        overrides.append(f"analysis.labels=[{args.labels}]")
    if args.condition:
        overrides.append(f"analysis.condition=[{args.condition}]")
    if args.permutations is not None:
        overrides.append(f"analysis.permutations={args.permutations}")
    if args.seed is not None:
        overrides.append(f"analysis.seed={args.seed}")
    config = _config(args, overrides)
    print(
        analyze(args.out, config, data=args.data, model=args.model, latents=args.latents).summary()
    )
    return 0


def _add_analyze(commands) -> None:
    parser = _command(commands, "analyze", help="which latent nodes are physics (MI, significance)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="store to encode with --model")
    source.add_argument("--latents", help="an existing latent table (Parquet) to analyse")
    parser.add_argument("--model", help="training run folder (its latest checkpoint)")
    parser.add_argument(
        "--out", required=True, help="output folder: latents, analysis.json, report"
    )
    parser.add_argument(
        "--labels",
        help="comma-separated label columns (default: analysis.labels, rv,teff,logg,feh)",
    )
    parser.add_argument(
        "--condition",
        help="comma-separated nuisance labels (e.g. snr,airmass) every attribution estimate "
        "is conditioned on (default: analysis.condition, none)",
    )
    parser.add_argument(
        "--permutations",
        help="permutations per node-label pair, or auto: enough to resolve the FDR threshold "
        "(default: analysis.permutations, auto)",
    )
    parser.add_argument("--seed", type=int, help="analysis seed (default: analysis.seed, 0)")
    _add_config_options(parser)
    parser.set_defaults(handler=_analyze)


def _retrain(args: argparse.Namespace) -> int:
    from specray.config import read_overrides
    from specray.workflows.retrain import retrain

    result = retrain(
        args.raw,
        args.store,
        args.run,
        args.analysis,
        overrides=read_overrides(args.config, args.set),
        grid=args.grid,
        labels=args.labels,
        from_scratch=args.from_scratch,
    )
    print(result.summary())
    return 0


def _add_retrain(commands) -> None:
    parser = _command(commands, "retrain", help="ingest new files, fine-tune, re-analyse, compare")
    parser.add_argument("--raw", required=True, help="folder or s3:// prefix of raw FITS files")
    parser.add_argument("--store", required=True, help="the store to grow")
    parser.add_argument("--run", required=True, help="the training run to fine-tune")
    parser.add_argument("--analysis", help="analysis folder (default RUN/analysis)")
    parser.add_argument("--grid", default="demo", help=GRID_HELP + " for a new store")
    parser.add_argument("--labels", help="labels table (CSV or Parquet) joined at ingest")
    parser.add_argument(
        "--from-scratch", action="store_true", help="train a new model instead of fine-tuning"
    )
    _add_config_options(parser)  # over the run's own settings
    parser.set_defaults(handler=_retrain)


def _add_ingest(commands) -> None:
    parser = _command(commands, "ingest", help="FITS files -> Parquet shards (Ray Data)")
    parser.add_argument("input", help="folder or s3:// prefix holding FITS files")
    parser.add_argument("--out", required=True, help="store folder or s3:// prefix")
    parser.add_argument("--labels", help="CSV or Parquet table joined by id (or object)")
    _setting(parser, "--grid", "ingest.grid", GRID_HELP)
    _setting(
        parser,
        "--labels-key",
        "ingest.labels_key",
        "join the labels by id or by object (none: id if the table has an id column)",
        choices=["id", "object"],
    )
    _setting(
        parser,
        "--format",
        "ingest.format",
        "FITS layout: ESO ADP table, HARPS DRS s1d "
        "image, a linear-WCS 1-D image, or detected per file",
        choices=["auto", "adp", "s1d", "linear"],
    )
    _setting(
        parser,
        "--min-snr",
        "ingest.min_snr",
        "quarantine spectra below this SNR per pixel, estimated from the spectrum (0: off)",
        type=float,
    )
    _setting(
        parser,
        "--min-median",
        "ingest.min_median",
        "quarantine spectra at or below this "
        "median flux, in the input's units (none: off; 50 suits HARPS ADU)",
        type=float,
    )
    _setting(
        parser,
        "--min-coverage",
        "ingest.min_coverage",
        "quarantine spectra covering less than this fraction of the grid",
        type=float,
    )
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="how long to wait while another ingest writes the same store "
        "(default: until it finishes; 0 = refuse at once)",
    )
    _add_config_options(parser)
    parser.set_defaults(handler=_ingest)  # fmt: skip


def _add_migrate(commands) -> None:
    parser = _command(
        commands, "migrate", help="rewrite a store in the current store format (resumable)"
    )
    parser.add_argument("store", help="store folder or s3:// prefix")
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="how long to wait while another writer holds the store "
        "(default: until it finishes; 0 = refuse at once)",
    )
    parser.set_defaults(handler=_migrate)


def _add_synth(commands) -> None:
    parser = _command(commands, "synth", help="generate the synthetic survey (ground truth)")
    parser.add_argument("--out", required=True, help="folder or s3:// prefix")
    _setting(parser, "--stars", "synth.stars", "stars in the survey", type=int)
    _setting(
        parser,
        "--visits",
        "synth.visits",
        "mean observations per star (--epochs is the old name)",
        type=float,
        aliases=["--epochs"],
    )
    _setting(parser, "--grid", "synth.grid", GRID_HELP)
    _setting(
        parser,
        "--format",
        "synth.format",
        "parquet: a ready store; fits: ADP files plus labels.csv, for `specray ingest`",
        choices=["parquet", "fits"],
    )
    _setting(parser, "--seed", "synth.seed", "seed of the survey", type=int)
    _add_config_options(parser)
    parser.set_defaults(handler=_synth)  # fmt: skip


def _show_config(args: argparse.Namespace) -> int:
    from specray.config import DEMO_OVERRIDES, describe, load_config

    base = DEMO_OVERRIDES if args.demo else []
    print(describe(load_config(args.config, args.set, base=base)))
    return 0


def _add_config(commands) -> None:
    parser = _command(commands, "config", help="print the effective settings and their meaning")
    parser.add_argument(
        "--show", action="store_true", help="print every setting (the default action)"
    )
    parser.add_argument(
        "--demo", action="store_true", help="start from the settings `specray demo` uses"
    )
    _add_config_options(parser)
    parser.set_defaults(handler=_show_config)


COMMANDS: list[Callable] = [
    _add_demo,
    _add_synth,
    _add_ingest,
    _add_migrate,
    _add_train,
    _add_tune,
    _add_analyze,
    _add_retrain,
    _add_config,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specray",
        description="Learn what survey spectra have in common, and which learned factors are physics.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"specray {specray.__version__}")
    _common_options(parser, top=True)
    parser.add_argument(
        "--address",
        help="Ray cluster to join (host:port); default RAY_ADDRESS, else a new local Ray. "
        "'local' starts a local Ray even when RAY_ADDRESS is set",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def log_file(args: argparse.Namespace, started: datetime | None = None) -> str | None:
    """Where Ray's own messages go for this command: ``OUT/logs/COMMAND-TIME-PID.log``
    for a local output folder, the same name under the system's temporary folder for an
    s3:// one or a folder of synthetic FITS files (an archive of inputs, kept clean);
    None with ``--verbose`` (on the terminal) or for a command without Ray."""
    if args.verbose or args.command == "config":
        return None
    from specray import storage

    out = storage.normalize(getattr(args, "out", None) or getattr(args, "store", None) or ".")
    archive = args.command == "synth" and _config(args).synth.format == "fits"
    folder = (
        os.path.join(tempfile.gettempdir(), "specray") if archive or storage.is_remote(out) else out
    )
    stamp = (started or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return os.path.join(folder, "logs", f"{args.command}-{stamp}-{os.getpid()}.log")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from specray import progress
    from specray.runtime import cluster_address, ray_output

    progress.enable(not args.quiet)
    try:
        with cluster_address(args.address), ray_output(log_file(args), args.dashboard):
            return args.handler(args)
    except USER_ERRORS as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"specray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.enable(False)


if __name__ == "__main__":
    sys.exit(main())
