"""The training loop :func:`fit_model`."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from latentode.batch import Batch
from latentode.nn import OBS_WEIGHTINGS, ODESolveError

from . import distributed as _dist
from .averaging import WeightAverage
from .callbacks import as_callback
from .history import History, monitor_mode
from .metrics import VAL_METRICS, evaluate_classifier
from .objective import (
    FORECAST_RANGE,
    KLWarmup,
    accumulator_dtype,
    check_forecast_mix,
    drop_observations,
    evaluate_loss,
    kl_weight_schedule,
    mix_forecast,
    split_forecast,
)
from .schedule import LRSchedule, check_lr_schedule, lr_at

__all__ = ["fit_model", "OPTIMIZERS", "TrainingFailedError"]

#: the ``optimizer`` names :func:`fit_model` accepts
OPTIMIZERS = ("adamax", "adam")

Loader = Callable[[], Iterable[Batch]]

# when the training loss is monitored, epochs whose KL weight is below this are not compared
_FULL_KL = 0.99

# the progress bar's "(batch k)" text is redrawn at most this often (seconds), and for the first
# batch of every epoch: a redraw per batch floods logs that are not terminals
_BATCH_TEXT_INTERVAL = 0.5


class TrainingFailedError(RuntimeError):
    """Every batch of an epoch failed (non-finite loss or gradient, or a failed ODE solve).

    Attributes
    ----------
    epoch : int
        The failed epoch (0-based). The exception is chained from the epoch's last
        :class:`~latentode.ode.ODESolveError`, if any.
    """

    def __init__(self, message: str, *, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


def _condition_and_target(
    batch: Batch, forecast_split: float | None, obs_dropout: float,
    generator: torch.Generator | None, forecast_share: float = 0.0,
    forecast_range: tuple[float, float] = FORECAST_RANGE, forecast_mode: str = "swap",
) -> tuple[Batch, Batch | None]:
    """The data the encoder sees and the data scored (None: the same) for one training step
    (with ``forecast_mode="add"``, more series than ``batch``)."""
    cond, target = batch, None
    if forecast_split is not None:
        cond, target = split_forecast(batch, forecast_split)
    elif forecast_share > 0.0:
        cond, target = mix_forecast(batch, forecast_share, forecast_range, generator,
                                    forecast_mode)
    if obs_dropout > 0.0:
        target = cond if target is None else target
        cond = drop_observations(cond, obs_dropout, generator)
    return cond, target


def _val_generator(generator: torch.Generator | None,
                   state: torch.Tensor | None) -> torch.Generator | None:
    """The validation's source of noise: ``generator`` itself, or (``state`` given) a new
    generator on its device in that state, the same draws at every epoch."""
    if state is None or generator is None:
        return generator
    fixed = torch.Generator(device=generator.device)
    fixed.set_state(state)
    return fixed


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of the state dict on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def progress_bar(total: int, desc: str, unit: str, verbose: int) -> tqdm:
    """The progress bar of a long step of a fit (the epochs; the interval calibration): a tqdm
    bar of ``total`` steps described by ``desc``, kept on the terminal when it closes, shown
    unless ``verbose <= 0``."""
    return tqdm(total=total, desc=desc, unit=unit, disable=verbose <= 0, leave=True,
                dynamic_ncols=True)


def fit_model(
    model: nn.Module,
    train_loader: Loader,
    val_loader: Loader | None = None,
    *,
    max_epochs: int = 100,
    lr: float = 1e-2,
    kl_warmup: KLWarmup = 10,
    n_traj_samples: int = 3,
    early_stopping: bool = True,
    patience: int = 10,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    optimizer: str = "adamax",
    grad_clip: float | None = None,
    lr_decay: float | None = None,
    min_lr: float | None = None,
    weight_decay: float = 0.0,
    min_delta: float = 0.0,
    obs_dropout: float = 0.0,
    obs_weighting: str = "value",
    forecast_split: float | None = None,
    distributed: bool = False,
    loss_options: Mapping[str, Any] | None = None,
    val_metric: str = "loss",
    forecast_share: float = 0.0,
    forecast_range: tuple[float, float] = FORECAST_RANGE,
    weight_averaging: float = 0.0,
    forecast_mode: str = "swap",
    lr_schedule: LRSchedule | None = None,
) -> History:
    """Train a :class:`~latentode.nn.LatentODE` by minimising its negative IWAE bound.

    Parameters
    ----------
    model : LatentODE
        Model to train in place; on return it holds the best weights.
    train_loader : callable
        ``train_loader()`` returns a fresh iterable of :class:`~latentode.data.batch.Batch`
        per epoch (shuffling is the loader's business).
    val_loader : callable, optional
        Same for validation data. Validation loss uses KL weight 1, no gradients, eval mode;
        ``val_mse`` is that of the point predictions (:func:`~latentode.training.evaluate_loss`);
        both score the task trained (reconstruction, ``forecast_split``'s forecasts or
        ``forecast_share``'s mix), whatever ``obs_dropout`` hides.
    max_epochs : int
        Maximum number of epochs.
    lr : float
        Learning rate.
    kl_warmup : None, int, float, "exponential" or callable
        KL weight schedule (see :func:`~latentode.training.objective.kl_weight_schedule`): a
        number ``E`` ramps the weight linearly, ``min(1, epoch / E)`` (0 in the first epoch, 1
        from epoch ``E``); ``"exponential"`` is the reference's ``1 - 0.99 ** (step - 10)`` per
        optimiser step; a callable ``(epoch, step) -> weight``; 0 or None disables warm-up.
    n_traj_samples : int
        Trajectory samples ``K`` of the IWAE bound (training and validation).
    early_stopping : bool
        Stop when the monitored value (see ``val_metric``) has not improved by ``min_delta`` for
        ``patience`` epochs.
    patience : int
        Early-stopping patience in epochs.
    callbacks : sequence
        Objects with ``on_epoch_end(epoch, record, model) -> bool`` (True stops training), and
        optionally ``on_train_begin(model)`` / ``on_train_end(history, model)``; plain callables
        ``fn(epoch, record, model)`` are accepted. With ``distributed`` they run on every rank,
        and a stop asked for on any rank stops every rank after the same epoch.
    verbose : int
        0: silent; 1: tqdm epoch bar with losses in its postfix; 2: also one line per epoch.
    device : torch.device or str, optional
        Where to train (default: where the model is). The model is moved there.
    generator : torch.Generator, optional
        Source of the reparametrisation noise (reproducible training with a seeded loader).
    optimizer : {"adamax", "adam"}
        Optimiser (the reference uses Adamax).
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    lr_decay : float, optional
        Multiply the learning rate by this factor after every epoch, down to ``min_lr``.
        Not with ``lr_schedule``.
    min_lr : float, optional
        Floor of the decayed learning rate (default ``lr / 10``, as in the reference); with
        ``lr_schedule``, the rate of the last epoch (default ``lr / 100``) or a callable's
        floor (default none). Must lie in ``[0, lr]``.
    weight_decay : float
        Optimiser weight decay.
    min_delta : float
        Minimum improvement of the monitored value that counts (a decrease, or an increase
        for ``val_metric="roc_auc"``).
    obs_dropout : float
        At every training step, hide this fraction of the batch's observed values from the
        encoder (:func:`~latentode.training.objective.drop_observations`) while still scoring
        all of them, so the model learns to predict values it was not conditioned on. 0: plain
        reconstruction. Validation always uses plain reconstruction.
    obs_weighting : {"value", "channel"}
        Weight of each observed value in the log-likelihood, in training and validation (see
        :func:`~latentode.nn.observation_weights`): ``"value"`` is the plain likelihood;
        ``"channel"`` gives every channel of a series the same total weight, however often it
        was observed (the reference code's averaging).
    forecast_split : float, optional
        Train (and validate) for forecasting: each series is split at this fraction of its time
        window (:func:`~latentode.training.objective.split_forecast`); the encoder sees the past
        and only the future is scored, as in the paper's extrapolation experiments (0.5). None
        trains reconstruction.
    distributed : bool
        Train data-parallel across the processes of the initialised default
        :mod:`torch.distributed` process group (:mod:`latentode.training.distributed`). Every
        rank must call ``fit_model`` with the same arguments: loaders yielding the same
        *global* batches in the same order and a ``generator`` in the same state (checked).
        Each rank applies the batch's randomness (``obs_dropout``'s mask, the
        reparametrisation noise) to the global batch and keeps its contiguous block of series;
        one all-reduce per batch sums the gradients and losses, so every rank takes the same
        steps and decisions, and the result equals single-process training on the same global
        batches up to floating-point summation order. Only rank 0 shows progress. Training
        starts from rank 0's weights and ends with them broadcast to every rank.
    loss_options : mapping, optional
        Further keyword arguments of ``model.loss`` for every training and validation step,
        e.g. ``{"ce_weight": 100.0}`` for a model with a classifier (see
        :meth:`latentode.nn.LatentODE.loss`). The distributed step sums each rank's loss
        times its number of observed values, which is exact for the plain objective only.
    val_metric : {"loss", "mse", "log_loss", "roc_auc"}
        What early stopping and the best weights watch on the validation data (see
        :data:`~latentode.training.metrics.VAL_METRICS`): ``"loss"``, the objective
        (``val_loss``); ``"mse"``, the mean squared error of the point predictions
        (``val_mse``, the posterior mean's trajectory, see
        :func:`~latentode.training.evaluate_loss`; with ``forecast_split`` that of the
        forecasts, with ``forecast_share`` that of the mix; without ``val_loader`` both watch
        the training loss, see Notes); for a
        model with a classifier, ``"log_loss"``, the cross-entropy of its
        predicted class probabilities (``val_log_loss``, smaller is better), or ``"roc_auc"``,
        their AUC-ROC (``val_roc_auc``, two classes, larger is better), both computed by
        :func:`~latentode.training.metrics.evaluate_classifier` with one host synchronisation
        per epoch. Those two need ``val_loader``. Whenever the model has a classifier that the
        loss trains (``loss_options`` with ``ce_weight > 0`` or ``elbo=False``) or
        ``val_metric`` names one, the records carry both scores.
    forecast_share : float
        The mixed task (:func:`~latentode.training.objective.mix_forecast`): at every training
        step each series is, with this probability, conditioned only on its observations
        before a random split point and scored on all of its values (those after the split
        forecast from the past alone); the others train reconstruction. 0 (plain
        reconstruction, no random draw) or a share in ``(0, 1]``; not with ``forecast_split``.
        ``obs_dropout`` then hides values of the conditioning past. Validation scores the same
        mix without its draws (:func:`~latentode.training.objective.validation_tasks`): every
        validation series reconstructed with weight ``1 - forecast_share`` and scored whole
        from its past before a fixed split point in ``forecast_range`` with weight
        ``forecast_share`` (``val_loss``, ``val_nll`` and ``val_mse`` are those weighted sums),
        its noise drawn afresh at every epoch from ``generator``'s state at the start of
        training (with a ``generator``), so the epochs' values differ by the weights alone.
    forecast_range : (float, float)
        ``(low, high)``, ``0 < low <= high < 1``: the split points of ``forecast_share`` are
        drawn uniformly from this range of fractions of each series' window.
    weight_averaging : float
        0: the weights are the optimiser's. ``h > 0``: an exponential moving average of the
        weights over about ``h`` epochs (:class:`~latentode.training.averaging.WeightAverage`,
        updated after every optimiser step) is what every epoch validates, what the callbacks
        see, what the best weights snapshot and what training returns; the optimiser keeps
        stepping its own weights. Not with ``distributed``.
    forecast_mode : {"swap", "add"}
        How ``forecast_share`` trains forecasting
        (:data:`~latentode.training.objective.FORECAST_MODES`,
        :func:`~latentode.training.objective.mix_forecast`'s ``mode``): ``"swap"`` as above;
        ``"add"``: every series trains reconstruction as without the mix, and a copy of each
        picked series, appended to the batch, is conditioned on its past and scored on its
        values after the split (about ``1 + forecast_share`` times the series per step).
        Validation then scores every validation series' reconstruction with weight
        ``1 / (1 + forecast_share)`` and its values after the fixed split, forecast from its
        past, with weight ``forecast_share / (1 + forecast_share)``. Unused when
        ``forecast_share=0``.
    lr_schedule : {"cosine", "linear"}, callable or None
        The learning rate of every epoch, set on the optimiser at the epoch's start
        (:func:`~latentode.training.schedule.lr_at`): ``"cosine"`` anneals from ``lr`` at the
        first epoch to ``min_lr`` at epoch ``max_epochs - 1``, ``"linear"`` likewise along a
        line; a callable ``(epoch, max_epochs) -> factor`` trains epoch ``epoch`` (from 0) at
        ``lr * factor``. None: constant, or ``lr_decay``'s factor. The schedule runs over this
        call's ``max_epochs`` (early stopping may end the fit before ``min_lr``).

    Returns
    -------
    History
        Per-epoch records, the restored ``best_epoch`` and why training stopped.

    Raises
    ------
    TrainingFailedError
        A :class:`RuntimeError`: every batch of an epoch had a non-finite loss (or failed to
        solve); the best weights seen so far are restored first.
    ValueError
        If the training loader yields no batch, or for bad arguments.
    latentode.training.distributed.DistributedError
        With ``distributed=True``, on every other rank when one rank raised (that rank raises
        its own error), or when the ranks disagree (different batches or generator states).

    Notes
    -----
    The best weights (copied to the CPU) are chosen by the validation value ``val_metric``
    names, else (without ``val_loader``) by training loss.
    Training losses under different KL weights are not comparable, so without validation data
    only epochs whose KL weight reached 0.99 compete (until then the latest weights are kept).
    A non-finite loss or gradient, or an :class:`~latentode.ode.ODESolveError`, skips that
    batch's update (counted in ``n_skipped`` and warned about). ``KeyboardInterrupt`` (Ctrl-C,
    or raised by a callback) stops training cleanly: the best weights are restored,
    ``stopped_reason`` is ``"interrupted"``, a warning is emitted and the history is returned.
    With ``distributed=True`` the same holds on every rank when one rank is interrupted: Ctrl-C
    (SIGINT, while this runs in the main thread under Python's default handler, see
    :class:`~latentode.training.distributed.InterruptRequests`) or a ``KeyboardInterrupt``
    raised by a callback or during a batch's forward/backward pass is sent with the next
    all-reduce, and every rank stops after the same batch or epoch (an interrupted batch takes
    no step) with the same weights; a second Ctrl-C, or a ``KeyboardInterrupt`` elsewhere
    (e.g. during validation), propagates on that rank and the others fail at their next
    collective.
    """
    if max_epochs < 0:
        raise ValueError(f"max_epochs must be >= 0, got {max_epochs}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    if n_traj_samples < 1:
        raise ValueError(f"n_traj_samples must be >= 1, got {n_traj_samples}.")
    if not 0.0 <= obs_dropout < 1.0:
        raise ValueError(f"obs_dropout must lie in [0, 1), got {obs_dropout!r}.")
    if obs_weighting not in OBS_WEIGHTINGS:
        raise ValueError(f"obs_weighting must be one of {OBS_WEIGHTINGS}, got {obs_weighting!r}.")
    if forecast_split is not None and not 0.0 < forecast_split < 1.0:
        raise ValueError(f"forecast_split must lie in (0, 1), got {forecast_split!r}.")
    check_forecast_mix(forecast_share, forecast_range, forecast_mode,
                       ("forecast_share", "forecast_range", "forecast_mode"))
    if forecast_share > 0.0 and forecast_split is not None:
        raise ValueError("forecast_share and forecast_split are two training tasks; give one.")
    if lr_decay is not None and not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"lr_decay must lie in (0, 1], got {lr_decay!r}.")
    check_lr_schedule(lr_schedule, lr_decay, lr, min_lr)
    if distributed and not (torch.distributed.is_available()
                            and torch.distributed.is_initialized()):
        raise ValueError("distributed=True needs an initialised torch.distributed process group "
                         "(see latentode.training.distributed.init_from_env).")
    if distributed and generator is None:
        raise ValueError("distributed=True needs a generator seeded identically on every rank.")
    if not (math.isfinite(weight_averaging) and weight_averaging >= 0.0):
        raise ValueError(f"weight_averaging must be a finite number >= 0, got "
                         f"{weight_averaging!r}.")
    if distributed and weight_averaging > 0.0:
        raise ValueError("weight_averaging is not supported with distributed=True.")
    if val_metric not in VAL_METRICS:
        raise ValueError(f"val_metric must be one of {VAL_METRICS}, got {val_metric!r}.")
    has_classifier = getattr(model, "classifier", None) is not None
    if val_metric in ("log_loss", "roc_auc") and (val_loader is None or not has_classifier):
        raise ValueError(f"val_metric={val_metric!r} needs a val_loader and a model with a "
                         "classifier.")
    extra = dict(loss_options or {})
    score_classes = val_loader is not None and has_classifier and (
        val_metric in ("log_loss", "roc_auc") or float(extra.get("ce_weight", 0.0)) > 0
        or extra.get("elbo", True) is False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters.")
    device = params[0].device if device is None else torch.device(device)
    model.to(device)
    dtype = params[0].dtype
    schedule = kl_weight_schedule(kl_warmup)
    opt_cls = torch.optim.Adamax if optimizer == "adamax" else torch.optim.Adam
    opt = opt_cls(params, lr=lr, weight_decay=weight_decay)
    average = WeightAverage(params, weight_averaging) if weight_averaging > 0.0 else None
    lr_floor = lr / 10.0 if min_lr is None else float(min_lr)
    cbs = [as_callback(cb) for cb in callbacks]
    max_norm = math.inf if grad_clip is None else float(grad_clip)

    monitor = "train_loss" if val_loader is None else f"val_{val_metric}"
    sign = 1.0 if monitor_mode(monitor) == "min" else -1.0  # compare sign * value, smaller wins
    history = History(monitor=monitor, stopped_reason="max_epochs")
    best_state: dict[str, torch.Tensor] | None = None
    best = math.inf
    bad_epochs = 0
    step = 0
    acc_dtype = accumulator_dtype(device)
    # the mixed task's validation draws the same noise at every epoch (see forecast_share)
    val_noise = (generator.get_state() if forecast_share > 0.0 and generator is not None
                 and val_loader is not None else None)
    was_training = model.training
    rank, world = (_dist.get_rank(), _dist.get_world_size()) if distributed else (0, 1)
    if distributed:
        assert generator is not None
        _dist.check_same(generator.get_state(), "the generator's state", device)
        _dist.broadcast_module(model)
        verbose = verbose if rank == 0 else 0
    bar = progress_bar(max_epochs, "latentode fit", "epoch", verbose)

    last_text = [-math.inf]

    def show_batch(k: int) -> None:
        """Show the batch under way (the first epoch on a CPU can take minutes)."""
        now = time.monotonic()
        if k == 1 or now - last_text[0] >= _BATCH_TEXT_INTERVAL:
            bar.set_description(f"latentode fit (batch {k})")
            last_text[0] = now

    def _restore() -> None:
        if best_state is not None:
            model.load_state_dict(best_state)

    for cb in cbs:
        if hasattr(cb, "on_train_begin"):
            cb.on_train_begin(model)
    # distributed: Ctrl-C becomes a request that every rank acts on after the same batch
    guard = contextlib.ExitStack()
    requests = guard.enter_context(_dist.InterruptRequests()) if distributed else None
    try:
        for epoch in range(max_epochs):
            start = time.perf_counter()
            if lr_schedule is not None:
                epoch_lr = lr_at(lr_schedule, epoch, max_epochs, lr, min_lr)
                for group in opt.param_groups:
                    group["lr"] = epoch_lr
            model.train()
            acc = torch.zeros(5, device=device, dtype=acc_dtype)  # loss, nll, kl, mse, n_obs
            n_batches = n_skipped = 0
            last_solve_error: ODESolveError | None = None
            kl_weight = schedule(epoch, step)
            if distributed:
                assert generator is not None
                batches = iter(train_loader())
                while True:
                    kl_weight = float(schedule(epoch, step))
                    status, stats = _distributed_step(
                        model, params, opt, batches, rank=rank, world=world, device=device,
                        dtype=dtype, acc_dtype=acc_dtype, n_traj_samples=n_traj_samples,
                        kl_weight=kl_weight, generator=generator, obs_dropout=obs_dropout,
                        obs_weighting=obs_weighting, forecast_split=forecast_split,
                        max_norm=max_norm, epoch=epoch, loss_options=extra,
                        forecast_share=forecast_share, forecast_range=forecast_range,
                        forecast_mode=forecast_mode, interrupts=requests)
                    if status == "interrupted":  # on every rank, after the same batch
                        raise _dist.Interrupted
                    if status == "done":
                        break
                    n_batches += 1
                    show_batch(n_batches)
                    if status == "skipped":
                        n_skipped += 1
                        continue
                    step += 1
                    acc += stats
            else:
                for batch in train_loader():
                    n_batches += 1
                    show_batch(n_batches)
                    kl_weight = float(schedule(epoch, step))
                    batch = batch.to(device, dtype)
                    try:
                        cond, target = _condition_and_target(batch, forecast_split, obs_dropout,
                                                             generator, forecast_share,
                                                             forecast_range, forecast_mode)
                        out = model.loss(cond, n_traj_samples, kl_weight, target=target,
                                         generator=generator, weighting=obs_weighting, **extra)
                        opt.zero_grad(set_to_none=True)
                        out.loss.backward()
                    except ODESolveError as err:
                        n_skipped += 1
                        last_solve_error = err
                        opt.zero_grad(set_to_none=True)
                        warnings.warn(f"Epoch {epoch}: skipped a batch whose ODE solve failed: "
                                      f"{err}", RuntimeWarning, stacklevel=2)
                        continue
                    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
                    if not bool(torch.isfinite(out.loss) & torch.isfinite(norm)):  # 1 sync / batch
                        n_skipped += 1
                        opt.zero_grad(set_to_none=True)
                        continue
                    opt.step()
                    step += 1
                    if average is not None:
                        average.update()
                    n = out.n_obs.to(acc_dtype)
                    acc += torch.stack([out.loss.detach().to(acc_dtype) * n,
                                        out.nll.to(acc_dtype) * n, out.kl.to(acc_dtype) * n,
                                        out.mse.to(acc_dtype) * n, n])
            if n_batches == 0:
                raise ValueError("train_loader() yielded no batches.")
            if n_skipped == n_batches:
                raise TrainingFailedError(
                    f"Every batch of epoch {epoch} had a non-finite loss/gradient or a failed ODE "
                    "solve; training cannot continue (try a lower lr, grad_clip, a smaller "
                    "KL warm-up or checking the data for extreme values). The best weights seen "
                    "so far were restored.", epoch=epoch,
                ) from last_solve_error
            if n_skipped and rank == 0:
                warnings.warn(
                    f"Epoch {epoch}: skipped {n_skipped}/{n_batches} batches with a non-finite "
                    "loss or gradient.", RuntimeWarning, stacklevel=2,
                )
            loss_sum, nll_sum, kl_sum, mse_sum, n_obs = acc.tolist()
            n_obs = max(n_obs, 1e-12)
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum / n_obs,
                "val_loss": None,
                "kl_weight": kl_weight,
                "lr": opt.param_groups[0]["lr"],
                "seconds": 0.0,
                "n_skipped": n_skipped,
                "train_nll": nll_sum / n_obs,
                "train_kl": kl_sum / n_obs,
                "train_mse": mse_sum / n_obs,
                "val_nll": None,
                "val_mse": None,
            }
            # with weight averaging, the epoch's end (validation, the best weights' snapshot,
            # the callbacks) sees the averaged weights; the optimiser's come back afterwards
            # (an error on the way leaves the averaged ones, which the best weights replace)
            epoch_end = contextlib.ExitStack()
            if average is not None:
                average.end_epoch()
                epoch_end.enter_context(average.swapped())
            if val_loader is not None:
                val = evaluate_loss(model, val_loader(), n_traj_samples, device=device,
                                    dtype=dtype, generator=_val_generator(generator, val_noise),
                                    weighting=obs_weighting, forecast_split=forecast_split,
                                    distributed=distributed, loss_options=extra,
                                    forecast_share=forecast_share,
                                    forecast_range=forecast_range,
                                    forecast_mode=forecast_mode)
                record.update(val_loss=val["loss"], val_nll=val["nll"], val_mse=val["mse"])
                if score_classes:
                    scores = evaluate_classifier(model, val_loader(), device=device, dtype=dtype)
                    record.update(val_log_loss=scores["log_loss"], val_roc_auc=scores["roc_auc"])
            record["seconds"] = time.perf_counter() - start

            value = record[monitor]
            if monitor == "train_loss" and kl_weight < _FULL_KL:
                best_state, history.best_epoch, bad_epochs = _snapshot(model), epoch, 0
            elif value is not None and math.isfinite(value) and sign * value < best - min_delta:
                best = sign * value
                best_state, history.best_epoch, bad_epochs = _snapshot(model), epoch, 0
                history.best_loss = value
                history.best_val_loss = record["val_loss"]
            else:
                bad_epochs += 1
            history.append(record)

            if lr_decay is not None:
                for group in opt.param_groups:
                    group["lr"] = max(group["lr"] * lr_decay, lr_floor)
            postfix = {"loss": f"{record['train_loss']:.4g}", "kl_w": f"{kl_weight:.2f}"}
            if record["val_loss"] is not None:
                postfix["val"] = f"{record['val_loss']:.4g}"
            if monitor not in ("val_loss", "train_loss") and value is not None:
                postfix[monitor] = f"{value:.4g}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if verbose >= 2:
                bar.write(f"epoch {epoch + 1}/{max_epochs}: "  # from 1, like the bar
                          + ", ".join(f"{k}={v}" for k, v in postfix.items()))

            stop = interrupted = False
            try:
                for cb in cbs:
                    stop = bool(cb.on_epoch_end(epoch, record, model)) or stop
            except KeyboardInterrupt:
                if not distributed:
                    raise
                interrupted = True
            epoch_end.close()
            if distributed:  # any rank's request stops every rank, after this same epoch
                assert requests is not None
                stop, interrupted = _dist.any_rank(stop, interrupted or requests.requested,
                                                   device=device)
                if interrupted:
                    raise _dist.Interrupted
            if stop:
                history.stopped_reason = "callback"
                break
            if early_stopping and bad_epochs >= patience:
                history.stopped_reason = "early_stopping"
                break
    except KeyboardInterrupt as err:
        if distributed and not isinstance(err, _dist.Interrupted):
            raise  # a second Ctrl-C, or one the ranks could not agree on: the others fail
        history.stopped_reason = "interrupted"
        at = f"epoch {history.best_epoch}" if best_state is not None else "none (kept current)"
        if rank == 0:
            warnings.warn(f"Training interrupted after {history.n_epochs} epoch(s); best "
                          f"weights restored: {at}.", RuntimeWarning, stacklevel=2)
    finally:
        guard.close()
        bar.close()
        _restore()
        model.train(was_training)
    if distributed:  # the ranks hold the same weights; make it exact
        _dist.broadcast_module(model)
    for cb in cbs:
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(history, model)
    return history


def _distributed_step(
    model: nn.Module,
    params: list[torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    batches: Iterator[Batch],
    *,
    rank: int,
    world: int,
    device: torch.device,
    dtype: torch.dtype,
    acc_dtype: torch.dtype,
    n_traj_samples: int,
    kl_weight: float,
    generator: torch.Generator,
    obs_dropout: float,
    obs_weighting: str,
    forecast_split: float | None,
    max_norm: float,
    epoch: int,
    loss_options: Mapping[str, Any] | None = None,
    forecast_share: float = 0.0,
    forecast_range: tuple[float, float] = FORECAST_RANGE,
    forecast_mode: str = "swap",
    interrupts: _dist.InterruptRequests | None = None,
) -> tuple[str, torch.Tensor | None]:
    """One lock-step training step of every rank on its share of the next global batch.

    Returns ``("interrupted", None)``, without an optimiser step, when some rank was
    interrupted (``interrupts.requested``, or a :class:`KeyboardInterrupt` raised during this
    step's forward or backward pass); ``("done", None)`` once every rank's loader is exhausted,
    ``("skipped", None)`` when the batch failed on some rank (ODE solve) or had a non-finite
    loss or gradient, else ``("step", stats)`` with the batch's
    ``[loss, nll, kl, mse] * n_obs, n_obs`` (the same on every rank) after the optimiser step.
    Exactly one all-reduce per call.
    """
    batch: Batch | None = None
    error: BaseException | None = None
    solve_failed = interrupted = False
    n_params = len(params)
    n_grad = sum(p.numel() for p in params)
    buf = torch.zeros(n_grad + n_params + 5, device=device, dtype=acc_dtype)
    opt.zero_grad(set_to_none=True)
    try:
        batch = next(batches, None)
        if batch is not None:
            batch = batch.to(device, dtype)
            cond, target = _condition_and_target(batch, forecast_split, obs_dropout, generator,
                                                 forecast_share, forecast_range, forecast_mode)
            # the global batch's noise, drawn as single-process training draws it (for every
            # series trained: forecast_mode="add" appends copies)
            noise = model.draw_z0_noise(n_traj_samples, cond.batch_size, generator,
                                        device=device, dtype=dtype)
            rows = _dist.shard_slice(cond.batch_size, rank, world)
            if rows.stop > rows.start:
                out = model.loss(_dist.take_rows(cond, rows), n_traj_samples, kl_weight,
                                 target=None if target is None else _dist.take_rows(target, rows),
                                 weighting=obs_weighting, z0_noise=noise[:, rows],
                                 **(loss_options or {}))
                denom = out.n_obs.clamp(min=1.0)
                (out.loss * denom).backward()  # the unnormalised sum over this rank's series
                offset = 0
                for i, p in enumerate(params):
                    if p.grad is not None:
                        buf[offset:offset + p.numel()] = p.grad.reshape(-1)
                        buf[n_grad + i] = 1.0
                    offset += p.numel()
                buf[-5:] = torch.stack([out.loss.detach() * denom, out.nll * denom,
                                        out.kl * denom, out.mse * denom, out.n_obs]).to(acc_dtype)
    except ODESolveError as err:
        solve_failed = True
        warnings.warn(f"Epoch {epoch}, rank {rank}: skipped a batch whose ODE solve failed: "
                      f"{err}", RuntimeWarning, stacklevel=3)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as err:  # noqa: BLE001 - re-raised on this rank, reported on the others
        error = err
    opt.zero_grad(set_to_none=True)
    have = batch is not None
    rows_seen = batch.batch_size if batch is not None else 0
    interrupted = interrupted or (interrupts is not None and interrupts.requested)
    total, (n_have, n_rows, n_failed, n_interrupted) = _dist.all_reduce_checked(
        buf, error, header=(float(have), float(rows_seen), float(solve_failed),
                            float(interrupted)))
    if n_interrupted:
        return "interrupted", None
    if n_have == 0:
        return "done", None
    if n_have != world or n_rows != world * rows_seen:
        raise _dist.DistributedError(
            f"the ranks hold different batches in epoch {epoch} ({int(n_have)} of {world} ranks "
            "have one); every rank must iterate the same global batches."
        )
    if n_failed:
        return "skipped", None
    sums = total[-5:]
    n_obs = sums[4]
    denom = n_obs.clamp(min=1.0)
    offset = 0
    has_grad = total[n_grad:n_grad + n_params].tolist()
    for i, p in enumerate(params):
        if has_grad[i] > 0:
            p.grad = (total[offset:offset + p.numel()] / denom).to(p.dtype).view_as(p)
        offset += p.numel()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    loss = sums[0] / denom
    if not bool(torch.isfinite(loss) & torch.isfinite(norm)):
        opt.zero_grad(set_to_none=True)
        return "skipped", None
    opt.step()
    return "step", torch.stack([loss * n_obs, sums[1] / denom * n_obs, sums[2] / denom * n_obs,
                                sums[3] / denom * n_obs, n_obs])
