"""Searching the disentanglement setting with Ray Tune: latent size, beta and normalisation.

``tune(store, DIR, config)`` runs ``tune.samples`` trials. Each trial is a Tune function
that copies the configuration, sets ``model.latent_dim``, ``loss.beta`` and
``loss.normalisation`` to the trial's sample, and fits a Ray Train ``TorchTrainer`` (the
Train V2 pattern) whose run folder is ``DIR/trials/<trial_id>``. ASHA stops trials whose
validation loss is poor after ``tune.grace_epochs`` epochs (and at later rungs).

Losses are ranked in "mean" normalisation units (per pixel and per latent node) whatever
a trial's normalisation, so that "sum" and "mean" trials compete on one scale; with
``tune.metric = "val_recon"`` the KL term is left out of the ranking.

Resources: a trial's driver (the Tune function) reserves only ``TRIAL_DRIVER_CPU`` of a
CPU, its Train workers reserve what ``train.workers`` / ``train.cpus_per_worker`` /
``train.use_gpu`` say, and the number of trials running at once is capped so that one CPU
per trial stays free for its driver and its Ray Data reads. A driver that held a whole CPU
next to workers holding the rest would leave Ray Data nothing, and the search would hang
(ray-notes.md).

Re-running with the same DIR resumes the experiment: finished trials are kept, and
unfinished or failed ones continue from their latest checkpoints. The outcome is written
to ``DIR/tune.json`` and plotted in ``DIR/tune.png``.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import posixpath
from dataclasses import dataclass

import ray
from ray import tune as ray_tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from specray import storage
from specray.config import Config
from specray.data.reader import object_counts
from specray.data.store import open_store
from specray.errors import SpecrayError
from specray.model.checkpoint import CheckpointError, latest_checkpoint
from specray.model.loss import NORMALISATIONS
from specray.progress import Progress
from specray.runtime import ensure_ray, printed_by_ray, ray_is_quiet
from specray.train.records import TuneResults
from specray.train.trainer import (
    build_trainer,
    check_architecture,
    check_training_split,
    fit,
    read_history,
)
from specray.train.trial_cleanup import StopTrainingWithTrial, abortable_training

log = logging.getLogger(__name__)

TRIAL_DRIVER_CPU = 0.05
"""CPU reserved by each trial's driver: it only coordinates (Train's controller needs none)."""
RESULTS_FILE = "tune.json"
PLOT_FILE = "tune.png"
TRIALS_DIR = "trials"
OBJECTIVE = "objective"
"""The name under which trials report the ranked metric (in "mean" units) to Tune."""
METRICS = ("val_loss", "val_recon")
SEARCHERS = ("random", "optuna")
EARLY_STOPPED = "EARLY_STOPPED"


class TuneSetupError(SpecrayError, ValueError):
    """A search that cannot run as configured: the message says what to change."""


@dataclass
class TuneSummary:
    out: str
    trials: list[dict]
    best: dict | None
    metric: str = "val_loss"
    resumed: bool = False

    @property
    def results(self) -> str:
        return storage.join(self.out, RESULTS_FILE)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial["status"]] = counts.get(trial["status"], 0) + 1
        states = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
        lines = [
            f"{'resumed' if self.resumed else 'ran'} a search of {len(self.trials)} trials "
            f"({states}); results in {self.results}"
        ]
        for trial in sorted(self.trials, key=_rank_key(self.metric)):
            lines.append("  " + _describe(trial))
        if self.best is None:
            lines.append("no trial finished with a validation loss; nothing to recommend")
        else:
            lines.append("best: " + _describe(self.best))
            lines.append(f"best checkpoint: {self.best['checkpoint']}")
            lines.append(
                f"  analyse it with: specray analyze --model {self.best['checkpoint']} ..."
            )
        return "\n".join(lines)


def _describe(trial: dict) -> str:
    config = trial["config"]
    return (
        f"{trial['trial_id']}: latent {config['latent_dim']}, beta {config['beta']:.4g}, "
        f"{config['normalisation']}: val_loss {_fmt(trial['val_loss'])}, "
        f"val_recon {_fmt(trial['val_recon'])}, active nodes {trial['active_nodes']}, "
        f"{trial['epochs']} epochs, {trial['status']}"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _rank_key(metric: str):
    def key(trial: dict):
        value = trial.get(metric)
        return (value is None or not math.isfinite(value), value if value is not None else 0.0)

    return key


# --- the search space, the limits and the best trial ----------------------------------------


def check_tune_config(config: Config) -> None:
    """Refuse a search space or schedule that cannot work, before Ray starts anything."""
    t = config.tune
    if t.samples < 1:
        raise TuneSetupError(f"tune.samples={t.samples}: need at least one trial")
    if not t.latent_dims or any(int(d) < 1 for d in t.latent_dims):
        raise TuneSetupError(f"tune.latent_dims={t.latent_dims}: need positive latent sizes")
    if not 0 < t.beta_min <= t.beta_max:
        raise TuneSetupError(
            f"tune.beta_min={t.beta_min}, tune.beta_max={t.beta_max}: need 0 < min <= max"
        )
    unknown = [n for n in t.normalisations if n not in NORMALISATIONS]
    if not t.normalisations or unknown:
        raise TuneSetupError(
            f"tune.normalisations={t.normalisations}: choose from {list(NORMALISATIONS)}"
        )
    if t.searcher not in SEARCHERS:
        raise TuneSetupError(f"tune.searcher={t.searcher!r}: choose from {list(SEARCHERS)}")
    if t.metric not in METRICS:
        raise TuneSetupError(f"tune.metric={t.metric!r}: choose from {list(METRICS)}")
    if not 1 <= t.grace_epochs <= config.train.epochs:
        raise TuneSetupError(
            f"tune.grace_epochs={t.grace_epochs}: must be between 1 and train.epochs "
            f"({config.train.epochs})"
        )
    if t.reduction_factor <= 1:
        raise TuneSetupError(f"tune.reduction_factor={t.reduction_factor}: must exceed 1")
    if t.max_concurrent is not None and t.max_concurrent < 1:
        raise TuneSetupError(f"tune.max_concurrent={t.max_concurrent}: must be at least 1")
    if t.prefer_fewest_nodes_within is not None and t.prefer_fewest_nodes_within < 0:
        raise TuneSetupError(
            f"tune.prefer_fewest_nodes_within={t.prefer_fewest_nodes_within}: must be >= 0"
        )


def search_space(config: Config) -> dict:
    """Tune's param_space: latent size (choice), beta (log-uniform), normalisation (choice)."""
    t = config.tune
    beta = t.beta_min if t.beta_min == t.beta_max else ray_tune.loguniform(t.beta_min, t.beta_max)
    return {
        "latent_dim": ray_tune.choice([int(d) for d in t.latent_dims]),
        "beta": beta,
        "normalisation": ray_tune.choice(list(t.normalisations)),
    }


def max_concurrent_trials(config: Config, resources: dict | None = None) -> int:
    """How many trials fit at once: ``tune.max_concurrent`` or the limiting resource.

    On GPUs, the cluster's GPUs // workers per trial (one GPU each); on CPUs, the cluster's
    CPUs // (workers x cpus_per_worker + 1), the 1 being kept free for each trial's driver
    and its Ray Data reads. Never fewer than 1 (an autoscaling cluster may show no GPU yet).
    """
    if config.tune.max_concurrent is not None:
        return config.tune.max_concurrent
    resources = ray.cluster_resources() if resources is None else resources
    workers = max(1, config.train.workers)
    per_trial_cpus = workers * config.train.cpus_per_worker + 1
    limit = int(resources.get("CPU", 0) // per_trial_cpus)
    if config.train.use_gpu:
        limit = min(limit, int(resources.get("GPU", 0) // workers))
    return max(1, limit)


def comparable_losses(
    entry: dict, normalisation: str, pixels: int, latent_dim: int
) -> dict[str, float | None]:
    """A reported epoch's val_loss and val_recon in "mean" units (per pixel, per node).

    "sum" sums the L1 over a spectrum's ``pixels`` and the KL over its ``latent_dim``
    nodes; dividing each term back gives what a "mean" run would report for that model.
    The KL weight at that step is recovered from the reported terms.
    """
    loss, recon, kl = (entry.get(name) for name in ("val_loss", "val_recon", "val_kl"))
    if loss is None or recon is None or not (math.isfinite(loss) and math.isfinite(recon)):
        return {"val_loss": None, "val_recon": None}
    if normalisation == "mean":
        return {"val_loss": float(loss), "val_recon": float(recon)}
    weight = (loss - recon) / kl if kl else 0.0
    mean_recon = recon / pixels
    mean_kl = (kl or 0.0) / latent_dim
    return {"val_loss": float(mean_recon + weight * mean_kl), "val_recon": float(mean_recon)}


def select_best(
    trials: list[dict], metric: str = "val_loss", prefer_fewest_nodes_within: float | None = None
) -> dict | None:
    """The trial with the lowest ``metric``; or, given a tolerance ``tol``, the one with the
    fewest active nodes among those with ``metric <= best * (1 + tol)`` (ties: lower metric).

    Trials that ran all their epochs are preferred over early-stopped or failed ones (whose
    losses come from fewer epochs); those count only when no trial finished.
    """

    def usable(trial: dict) -> bool:
        value = trial.get(metric)
        return value is not None and math.isfinite(value)

    candidates = [t for t in trials if usable(t) and t.get("status") == "TERMINATED"]
    candidates = candidates or [t for t in trials if usable(t)]
    if not candidates:
        return None
    best = min(candidates, key=lambda t: t[metric])
    if prefer_fewest_nodes_within is None:
        return best
    bound = best[metric] + abs(best[metric]) * prefer_fewest_nodes_within
    close = [t for t in candidates if t[metric] <= bound]
    return min(close, key=lambda t: (t.get("active_nodes", math.inf), t[metric]))


# --- one trial -------------------------------------------------------------------------------


class _ReportToTune(TuneReportCallback):
    """Passes each epoch's metrics to Tune, with the ranked metric in "mean" units added."""

    def __init__(self, metric: str, normalisation: str, pixels: int, latent_dim: int):
        super().__init__()
        self._metric = metric
        self._shape = (normalisation, pixels, latent_dim)

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            extra = comparable_losses(metrics[0], *self._shape)
            value = extra[self._metric]
            first = {**metrics[0], OBJECTIVE: math.nan if value is None else value}
            metrics = [first, *metrics[1:]]
        super().after_report(run_context, metrics, checkpoint)


def trial_config(base: dict, params: dict) -> Config:
    """A copy of the search's configuration with one trial's sample applied."""
    config = Config.from_dict(base)
    config.model.latent_dim = int(params["latent_dim"])
    config.loss.beta = float(params["beta"])
    config.loss.normalisation = str(params["normalisation"])
    return config


def _run_trial(params: dict, store_uri: str, out_uri: str, base: dict, pixels: int) -> None:
    """The Tune function: fit one TorchTrainer on this trial's configuration."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = trial_config(base, params)
    trial_id = ray_tune.get_context().get_trial_id()
    run_uri = storage.join(out_uri, TRIALS_DIR, trial_id)
    report = _ReportToTune(
        config.tune.metric, config.loss.normalisation, pixels, config.model.latent_dim
    )
    with abortable_training(trial_id) as running:
        try:
            # the controller's handle is posted before the first report reaches Tune,
            # which may stop the trial there
            trainer = build_trainer(
                store_uri, run_uri, config, callbacks=[running.callback, report]
            )
            result = fit(trainer)
        except Exception:
            if running.stopping:
                return  # Tune stopped this trial and its cleanup aborted the run
            raise
    if result.error and not running.stopping:
        raise result.error


_run_trial.__mixins__ = (StopTrainingWithTrial,)  # Tune builds the trainable class with it


_shown_trials: tuple[Progress, int] | None = None
"""The ``tune`` progress line and the planned epochs per trial, while a search runs."""


class _TrialProgress(ray_tune.Callback):
    """Counts finished trials on the ``tune`` progress line, with one line per trial. Tune
    runs callbacks on the driver but pickles them with the experiment (for a resume), so
    this one holds no state and finds the display in :data:`_shown_trials`."""

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        _trial_finished(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        _trial_finished(trial, failed=True)


def _trial_finished(trial, failed: bool) -> None:
    if _shown_trials is None:
        return
    shown, planned = _shown_trials
    result = trial.last_result or {}
    epochs = result.get("epoch")
    if failed:
        how = "failed"
    elif epochs is not None and epochs < planned:
        how = f"stopped early by ASHA after {epochs} of {planned} epochs"
    else:
        how = f"finished {planned} epochs"
    objective = result.get(OBJECTIVE)
    score = f", {OBJECTIVE} {objective:.4g}" if isinstance(objective, float) else ""
    shown.advance(1)
    shown.note(f"trial {trial.trial_id} {how}{score}")


def _trial_dirname(trial) -> str:
    return f"tune_{trial.trial_id}"


# --- the search --------------------------------------------------------------------------------


def _experiment_location(out_uri: str) -> tuple[str, dict]:
    """Tune's experiment path for DIR, and the storage filesystem option for s3://."""
    if storage.is_remote(out_uri):
        fs, path = storage.arrow_filesystem(out_uri)
        return path.rstrip("/"), {"storage_filesystem": fs}
    return storage.filesystem(out_uri)[1].rstrip("/"), {}


def _searcher(config: Config, concurrent: int):
    """(search_alg, max_concurrent_trials) for Tune.

    Tune ignores ``max_concurrent_trials`` for its random-search generator, so that limit
    is given to the generator itself; Optuna gets it through Tune's limiter.
    """
    t = config.tune
    if t.searcher == "optuna":
        if importlib.util.find_spec("optuna") is None:
            raise TuneSetupError(
                "tune.searcher='optuna' needs Optuna, an optional extra: "
                "pip install 'specray[tune]' (or use tune.searcher=random)"
            )
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=t.seed), concurrent
    return BasicVariantGenerator(max_concurrent=concurrent, random_state=t.seed), None


def _new_tuner(
    trainable, config: Config, path: str, options: dict, concurrent: int
) -> ray_tune.Tuner:
    search_alg, max_concurrent = _searcher(config, concurrent)
    scheduler = ASHAScheduler(
        time_attr="epoch",
        max_t=config.train.epochs,
        grace_period=config.tune.grace_epochs,
        reduction_factor=config.tune.reduction_factor,
    )
    return ray_tune.Tuner(
        trainable,
        param_space=search_space(config),
        tune_config=ray_tune.TuneConfig(
            metric=OBJECTIVE,
            mode="min",
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=config.tune.samples,
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=ray_tune.RunConfig(
            name=posixpath.basename(path),
            storage_path=posixpath.dirname(path),
            failure_config=ray_tune.FailureConfig(max_failures=0),
            callbacks=[_TrialProgress()],
            verbose=0 if ray_is_quiet() else None,  # Tune's status tables: --verbose only
            **options,
        ),
    )


def tune(store_uri: str, out_uri: str, config: Config) -> TuneSummary:
    """Run (or resume) the search on the store; write DIR/tune.json and DIR/tune.png."""
    store_uri, out_uri = storage.normalize(store_uri), storage.normalize(out_uri)
    check_tune_config(config)
    store = open_store(store_uri)  # fails early, with the store's message, if missing
    grid = store.grid
    check_architecture(config, grid)  # what every trial shares, checked before Ray starts
    check_training_split(store, object_counts(store), config, validation_required=True)
    ensure_ray()
    path, options = _experiment_location(out_uri)
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(
            _run_trial,
            store_uri=store_uri,
            out_uri=out_uri,
            base=config.to_dict(),
            pixels=grid.length,
        ),
        {"CPU": TRIAL_DRIVER_CPU},
    )
    resumed = ray_tune.Tuner.can_restore(path, **options)
    if resumed:
        log.info(
            "%s: resuming the search there: finished trials are kept, unfinished and failed "
            "ones continue from their checkpoints (its search space and trial count are "
            "the ones it started with)",
            out_uri,
        )
        tuner = ray_tune.Tuner.restore(path, trainable, resume_errored=True, **options)
    else:
        concurrent = max_concurrent_trials(config)
        log.info(
            "%s: new search of %d trials, up to %d at a time, ASHA grace %d of %d epochs",
            out_uri, config.tune.samples, concurrent, config.tune.grace_epochs,
            config.train.epochs,
        )  # fmt: skip
        tuner = _new_tuner(trainable, config, path, options, concurrent)
    results = _fit_showing_trials(tuner, config)
    trials = collect_trials(results, out_uri, config, grid.length)
    best = select_best(trials, config.tune.metric, config.tune.prefer_fewest_nodes_within)
    summary = TuneSummary(out_uri, trials, best, config.tune.metric, resumed)
    write_results(summary, config)
    failed = [t["trial_id"] for t in trials if t["status"] == "ERROR"]
    if failed:
        log.warning(
            "%d trials failed (%s); re-run with the same --out to resume them",
            len(failed), ", ".join(failed),
        )  # fmt: skip
    return summary


# --- the outcome -----------------------------------------------------------------------------


def _fit_showing_trials(tuner: ray_tune.Tuner, config: Config):
    """``tuner.fit()`` with a ``tune`` progress line counting finished trials."""
    global _shown_trials
    with Progress("tune", config.tune.samples, "trials") as shown:
        _shown_trials = (shown, config.train.epochs)
        try:
            with printed_by_ray():
                return tuner.fit()
        finally:
            _shown_trials = None


def _statuses(results) -> dict[str, str]:
    analysis = getattr(results, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None) or []
    return {trial.trial_id: str(trial.status) for trial in trials}


def _trial_id(result) -> str:
    name = posixpath.basename(str(result.path).rstrip("/"))
    return name.removeprefix("tune_")


def collect_trials(results, out_uri: str, config: Config, pixels: int) -> list[dict]:
    """One row per trial from Tune's results and the trial's own run folder."""
    statuses = _statuses(results)
    trials = []
    for result in results:
        trial_id = _trial_id(result)
        params = result.config or {}
        run_uri = storage.join(out_uri, TRIALS_DIR, trial_id)
        history = read_history(run_uri)
        last = history[-1].as_metrics() if history else {}
        latent_dim = int(params.get("latent_dim", 0))
        normalisation = str(params.get("normalisation", config.loss.normalisation))
        losses = comparable_losses(last, normalisation, pixels, max(latent_dim, 1))
        epochs = int(last.get("epoch", 0))
        # Tune's last result for the trial is the one it acted on: one short of the last
        # epoch means ASHA stopped it (its run may have trained on a little meanwhile).
        seen = int((result.metrics or {}).get("epoch", epochs))
        status = statuses.get(trial_id) or ("ERROR" if result.error else "TERMINATED")
        if result.error:
            status = "ERROR"
        elif status == "TERMINATED" and min(seen, epochs) < config.train.epochs:
            status = EARLY_STOPPED
        try:
            checkpoint = latest_checkpoint(run_uri)
        except CheckpointError:
            checkpoint = None
        trials.append(
            {
                "trial_id": trial_id,
                "config": {
                    "latent_dim": latent_dim,
                    "beta": float(params.get("beta", math.nan)),
                    "normalisation": normalisation,
                },
                "val_loss": losses["val_loss"],
                "val_recon": losses["val_recon"],
                "val_loss_reported": last.get("val_loss"),
                "active_nodes": int(last.get("active_nodes", 0)),
                "epochs": epochs,
                "steps": int(last.get("step", 0)),
                "status": status,
                "stopped_at_epoch": seen if status == EARLY_STOPPED else None,
                "run": run_uri,
                "checkpoint": checkpoint,
                "error": None if result.error is None else str(result.error).splitlines()[0],
            }
        )
    return sorted(trials, key=lambda trial: trial["trial_id"])


def write_results(summary: TuneSummary, config: Config) -> None:
    """DIR/tune.json (atomically) and DIR/tune.png."""
    document = TuneResults(
        metric=summary.metric,
        units="losses in 'mean' normalisation units (per pixel, per latent node)",
        max_epochs=config.train.epochs,
        prefer_fewest_nodes_within=config.tune.prefer_fewest_nodes_within,
        search_space={
            "latent_dims": list(config.tune.latent_dims),
            "beta": [config.tune.beta_min, config.tune.beta_max],
            "normalisations": list(config.tune.normalisations),
            "searcher": config.tune.searcher,
        },
        trials=summary.trials,
        best=summary.best,
    )
    document.write(summary.results)
    storage.atomic_write_bytes(storage.join(summary.out, PLOT_FILE), plot_trials(summary))


def read_results(out_uri: str) -> TuneResults:
    """The ``tune.json`` of the search in ``out_uri``."""
    return TuneResults.read(storage.join(out_uri, RESULTS_FILE))


def plot_trials(summary: TuneSummary) -> bytes:
    """PNG: validation loss and live nodes against beta (log) and latent size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    figure = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    metric = summary.metric
    rows = [t for t in summary.trials if t.get(metric) is not None]
    for column, (x_name, label) in enumerate((("beta", "beta"), ("latent_dim", "latent size"))):
        for row, (y_name, y_label) in enumerate(
            ((metric, f"{metric} (mean units)"), ("active_nodes", "active latent nodes"))
        ):
            ax = axes[row][column]
            for finished in (True, False):
                chosen = [t for t in rows if (t["status"] == "TERMINATED") == finished]
                if not chosen:
                    continue
                ax.scatter(
                    [t["config"][x_name] for t in chosen],
                    [t[y_name] for t in chosen],
                    facecolors="tab:blue" if finished else "none",
                    edgecolors="tab:blue",
                    label="finished" if finished else "stopped early / failed",
                )
            if summary.best is not None:
                ax.scatter(
                    [summary.best["config"][x_name]],
                    [summary.best[y_name]],
                    marker="*",
                    s=200,
                    c="tab:red",
                    label="best",
                )
            if x_name == "beta":
                ax.set_xscale("log")
            else:
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted({t["config"]["latent_dim"] for t in rows}) or [1])
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.minorticks_off()
            ax.set_xlabel(label)
            ax.set_ylabel(y_label)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"{len(summary.trials)} trials; best by {metric}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
