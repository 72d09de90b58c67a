"""scikit-learn style classifier of whole series: :class:`LatentODEClassifier`.

It shares the regressor's machinery (frame validation, time encoding, scaling, static
covariates, the training loop, save / load and pickling): :class:`LatentODEClassifier` is a
:class:`~latentode.LatentODERegressor` whose network has a classification head and whose
training objective adds its cross-entropy, with one label per series.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import metadata_routing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import data as _data
from ._param_validation import Boolean, InstanceOf, Interval, Options
from .batch import UNLABELLED
from .data.validation import external_stacklevel
from .estimator import LatentODERegressor, _fmt_ids, _plain, _with_n_jobs
from .nn.classifier import CLASSIFIER_INPUTS, HEAD_INPUTS
from .nn.model import POINT_SAMPLES
from .training import FORECAST_RANGE
from .training.metrics import CLASSIFIER_SCORINGS

__all__ = ["LatentODEClassifier"]


class LatentODEClassifier(ClassifierMixin, LatentODERegressor):
    """Classify irregularly sampled series with a Latent ODE (Rubanova et al., 2019, sec. 5).

    One label per series (binary or multi-class): in-hospital mortality of an ICU stay, the
    regime of a system from a few noisy observations. Trained as the paper's PhysioNet
    classifier: the ELBO of each series' observations plus ``ce_weight`` times the
    cross-entropy of a classifier that reads the initial latent state ``z_t0`` (and the
    series' static covariates); or, with ``classifier="encoder"``, by the cross-entropy alone
    with the classifier on the encoder's output (the paper's ODE-RNN classifier).

    Parameters
    ----------
    classifier : {"latent", "encoder"}, default="latent"
        ``"latent"``: the Latent ODE classifier, an MLP on samples of ``z_t0`` trained with
        ``-ELBO + ce_weight * CE``; the model is also a full Latent ODE of the series
        (:meth:`extrapolate` and :meth:`sample` work). ``"encoder"``: the ODE-RNN (or GRU)
        classifier, the same MLP on the encoder's output (the posterior mean of ``z_t0``)
        trained by the cross-entropy alone; faster (no latent ODE solve, no decoder), and
        nothing but :meth:`predict` / :meth:`predict_proba` / :meth:`score` is available.
    ce_weight : float, default=10.0
        Weight of the cross-entropy against the ELBO per observed value (``"latent"`` only).
        The paper uses 100; on PhysioNet mortality (5 splits, README) 10 and 1 gave a mean
        AUC-ROC of 0.825 and 0.826 against 0.796 for 100, which lets the cross-entropy drive
        the encoder and overfits within a few epochs.
    class_weight : dict, "balanced" or None, default=None
        Weight of each class in the cross-entropy, as in scikit-learn: ``{label: weight}``
        (classes not listed weigh 1; a label that is no class of ``y`` is a ValueError,
        unless every class of ``y`` has a weight: then it is ignored, so that a dict of every
        class serves cross-validation folds without a rare one), ``"balanced"``
        (``n_series / (n_classes * n_series_of_class)`` over the training series) or None (all
        1). The loss of a mini-batch is ``sum_b w_b CE_b / B``.
    scoring : {"log_loss", "roc_auc", "loss"}, default="log_loss"
        What early stopping (``early_stopping``, ``patience``) and the choice of the best
        weights watch on the validation series (``validation_fraction``): ``"log_loss"``, the
        cross-entropy of the class probabilities :meth:`predict_proba` gives them (weighted by
        ``class_weight``: :func:`sklearn.metrics.log_loss` with those sample weights; smaller
        is better); ``"roc_auc"``, the AUC-ROC of the probability of ``classes_[1]`` (two
        classes only, and the validation series must hold both; larger is better); ``"loss"``,
        the training objective (``-ELBO / n_obs + ce_weight * CE``, or the cross-entropy of
        the training samples for ``classifier="encoder"``), as the regressor does. The values
        are in ``history_`` (``val_log_loss``, ``val_roc_auc``, ``val_loss``; ``monitor``
        names the one watched). Without validation series the training loss is watched,
        whatever ``scoring`` says.
    classifier_dropout : float, default=0.0
        Dropout probability in ``[0, 1)`` of the classifier head's input (``z_t0``, the
        static covariates and, with ``head_inputs="latent+summary"``, the summaries, with
        ``"+pooled"`` the pooled states) and hidden layers during training;
        :meth:`predict_proba` and the validation scores use the whole head (eval mode:
        deterministic). 0: no dropout. On PhysioNet mortality (3,200
        training stays, early stopping) 0.5 lifted the mean AUC-ROC of the summary head from
        0.843 to 0.852; on small data sets trained for a fixed number of epochs it slowed
        learning and lost accuracy (README), so it is not the default.
    weight_decay : float, default=0.0
        L2 penalty on every weight of the network (encoder, dynamics, decoder and head), the
        ``weight_decay`` of the Adamax optimiser (added to each gradient as ``weight_decay *
        w``). 0: none.
    semi_supervised : bool, default=False
        Whether :meth:`fit` may take series without a label (a missing value in ``y``, or no
        entry for the series): they train the ELBO only (semi-supervised training, see the
        Notes). False: a series without a label is a ValueError. Needs
        ``classifier="latent"``.
    head_inputs : {"latent", "latent+summary", "latent+wide", "latent+pooled", \
"latent+summary+pooled"}, default="latent+summary+pooled"
        What the classifier head reads beside the static covariates: the latent code alone
        (``z_t0``, or the encoder's output for ``classifier="encoder"``), or also summaries
        of each series' observed values, per channel: the last value, mean, minimum and
        maximum (standardised units), ``log(1 + count)`` of its observations, the time from
        its last observation to the series' last time point (model time) and an indicator
        that the channel is not observed in the series (then ``count`` is 0 and the five
        others are 0 after standardisation: no value is made up). Each summary is
        standardised with the mean and standard deviation over the training series, computed
        once at :meth:`fit` and stored with the model (a channel's value summaries over the
        training series that observe it). ``"latent+summary"`` appends them to the head's
        input; ``"latent+wide"`` adds a linear function of them to the head's logits (a
        "wide and deep" head: a logistic regression on the summaries beside the MLP on
        ``z_t0``). The latent code then need only add what the summaries lack. The
        ``"+pooled"`` values add to the MLP's input what the encoder saw of the whole series:
        its hidden states after each observation's update, pooled over the series' observed
        time points (their mean and an attention-weighted average with a learned query,
        :class:`~latentode.nn.pooling.StatePooling`; ``2 * rec_dim`` inputs, ``4 * rec_dim``
        with ``encoder="mtan"``, whose states are those of its bidirectional GRU at each
        reference time), through which
        the cross-entropy also trains the encoder directly. ``"latent+summary"`` beat
        ``"latent"`` on PhysioNet mortality (5 splits) and on synthetic oscillators told
        apart by their frequency; the default since 2026-11-29, ``"latent+summary+pooled"``,
        is level with it on PhysioNet (5 splits) and above it on the oscillators (README);
        ``"latent"`` is the paper's head (and that of files saved before this parameter
        existed).
    latent_dim, encoder, rec_dim, units, n_layers, gru_units, decoder_layers : see regressor
        The networks, as for :class:`~latentode.LatentODERegressor` (same meaning, same
        defaults). The classifier head has two ReLU layers of ``units``.
    gradient, solver, rtol, atol, step_size : see regressor
        The latent ODE solve, as for the regressor.
    n_traj_samples, max_epochs, batch_size, lr, lr_decay, kl_warmup : see regressor
        The objective and the optimiser, as for the regressor.
    obs_dropout, obs_weighting, forecast_split, validation_fraction : see regressor
        What the training hides and scores, as for the regressor.
    early_stopping, patience, poisson_process, obs_std : see regressor
        Stopping, the Poisson process and the observation noise, as for the regressor, except
        ``patience=10`` here (the classifier's figures were measured with it; the regressor's
        is 20 since 2026-12-02).
    calibrate, device, random_state, verbose, warm_start, max_steps, n_jobs : see regressor
        As for the regressor. ``calibrate`` applies to the predictive spread of
        :meth:`extrapolate` / :meth:`sample` (``"latent"`` only).
    callbacks : see regressor
        Called after every training epoch, as for the regressor.
    likelihood, obs_df, linear_term, time_scale, readout, readout_aux, readout_reach : see regressor
        The observation model, the latent dynamics' linear term, the model time unit and the
        readout of the means and its auxiliary term, as for the regressor (``readout`` and
        ``readout_aux`` are unused by ``classifier="encoder"``, which decodes nothing), except
        that ``readout`` defaults to ``"latent"`` here: the classifier reads ``z_t0``, whose
        figures (README) were measured with the decoder alone.
    forecast_share, forecast_range : see regressor
        The mixed reconstruction and forecasting task, as for the regressor; with
        ``classifier="encoder"``, which decodes nothing, the split series' past alone is
        classified at that step (like ``obs_dropout``, an augmentation of the inputs).
    readout_sides : {"shared", "split"}, default="shared"
        Whether ``readout="neighbours"`` gives its one-sided and two-sided queries their own
        parameters, as for the regressor; ``"shared"`` here, the readout the classifier's
        figures were measured with.
    weight_averaging : float, default=2.0
        Horizon, in epochs, of the exponential moving average of the network's weights, as for
        the regressor (see :class:`LatentODERegressor`), but on by default here: the averaged
        weights are what every epoch validates (``scoring``), what early stopping keeps and what
        the fitted model holds. 0: no averaging (the default until 2026-11-29, what files and
        pickles saved before the parameter existed load with).
    mtan_ref_points : int, default=64
        With ``encoder="mtan"``: the number of reference times (see
        :class:`LatentODERegressor`; mTAN's PhysioNet classifier was published with 128).
    mtan_embed_dim : int or None, default=None
        With ``encoder="mtan"``: the size of its time embedding (mTAN's ``embed_time``,
        published with 128); None: ``units``.
    dynamics_activation : {"tanh", "elu", "softplus"}, default="tanh"
        Hidden non-linearity of the latent dynamics, as for the regressor.
    forecast_noise : bool, default=False
        The forecast values of ``forecast_share`` / ``forecast_split`` training scored under
        a noise of their own, as for the regressor.
    posterior_time : {"first"}, default="first"
        The latent state the posterior is over, as for the regressor; only ``"first"`` here:
        the classifier reads the state at each series' start, so ``"last"`` is a ValueError
        in :meth:`fit`.
    input_fences : float or None, default=None
        Fences of the values the model conditions on (encoder, readout and the head's
        summaries; the likelihood scores the real values), as for the regressor; None: none.
    calibration_structure : {"validation", "training"}, default="training"
        Which series fit the structure of the interval calibration (``classifier="latent"``
        with ``calibrate``), as for the regressor (the default since 2026-11-30; files saved
        before the parameter existed load with ``"validation"``).
    point_prediction : {"posterior_mean", "predictive_mean"}, default="predictive_mean"
        The point prediction of :meth:`extrapolate` and :meth:`predict_intensity`
        (``classifier="latent"``), as for the regressor; the class probabilities do not use it.
    point_samples : int, default=16
        Posterior samples that ``point_prediction="predictive_mean"`` averages, as for the
        regressor.
    forecast_mode : {"swap", "add"}, default="swap"
        What the series that ``forecast_share`` picks give up to forecast, as for the
        regressor; with ``"add"`` the appended copies carry no label, so the classification
        term scores each series once, on all of its values (``classifier="encoder"``, which
        decodes nothing, then trains as without the mix).
    calibration_density : {False, True, "validated"}, default="validated"
        Whether the interval calibration (``classifier="latent"`` with ``calibrate``) also
        fits a density factor of the number of observations a series conditions on, and
        whether the validation series choose how much of its slope to keep
        (``"validated"``, the default), as for the regressor (files saved before the
        parameter existed load with False).
    lr_schedule : {None, "cosine", "linear"} or callable, default=None
        The learning rate of every epoch, as for the regressor (``"cosine"``: from ``lr`` at
        the first epoch to ``min_lr`` at the last; None, with which files saved before the
        parameter existed load: constant, or ``lr_decay``'s); not with ``lr_decay``.
    min_lr : float or None, default=None
        The schedule's last learning rate (None: ``lr / 100``), a callable's floor, or
        ``lr_decay``'s floor (None: ``lr / 10``), as for the regressor.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The labels seen in :meth:`fit`, sorted (``numpy.unique``); the columns of
        :meth:`predict_proba`.
    model_, history_, time_encoder_, scaler_, time_col_, id_col_, target_cols_, static_cols_, \
static_encoder_, feature_names_in_, n_features_in_, device_
        As for :class:`~latentode.LatentODERegressor`.

    Notes
    -----
    **Labels.** ``y`` gives one label per series, in either of two forms:

    * a :class:`pandas.Series` indexed by series id (one entry per series; ``y.index`` is
      read as ids unless it is exactly ``df.index``);
    * one label per row of ``df`` (what scikit-learn's cross-validation passes on, since it
      splits rows): an array-like of ``len(df)``, or a Series whose index is ``df.index``.
      The labels of a series' rows must agree (missing ones are ignored).

    A series of ``df`` without a label (unless ``semi_supervised=True``), a label for an id
    that is not in ``df``, a label that varies within a series, or fewer than two classes are
    ValueErrors naming the series.

    **Semi-supervised training** (``semi_supervised=True``). A series is unlabelled when its
    label is missing: NaN, None or ``pd.NA`` in ``y`` (a nullable dtype such as ``"Int64"``
    keeps integer classes), or no entry for it in a ``y`` indexed by id; with one label per
    row, when none of its rows has one. Unlabelled series train the ELBO only: the
    cross-entropy of a mini-batch (which mixes both kinds, shuffled together) is averaged over
    its labelled series, ``sum_b w_b CE_b / B_labelled`` (0 for a batch without one), so that
    ``ce_weight`` weighs one labelled series' cross-entropy against the ELBO per observed
    value as in a fully labelled fit. They never enter ``classes_``, ``class_weight="balanced"``
    (counted over the labelled series), the validation ``log_loss`` / ``roc_auc`` or the
    early-stopping decisions on them; they do enter the fitted time encoder and channel
    scaler, the ELBO part of ``val_loss`` and the calibration of the spread.
    ``validation_fraction`` is applied to the labelled and the unlabelled series separately
    (at least one labelled validation series when two or more are labelled). scikit-learn's
    semi-supervised estimators mark unlabelled samples with ``-1``; here a label ``-1`` (a
    number) is ambiguous and a ValueError (write NaN for an unlabelled series, or recode a
    class named -1); so are no labelled series at all, and unlabelled series with
    ``classifier="encoder"`` (which trains no ELBO). With every series labelled the fit is the
    supervised one. :meth:`score` then counts the labelled series only.
    Series without an observed target value are left out of the fit (one warning), as by the
    regressor; every bad input of the regressor is refused here with the same message.

    **Outputs.** :meth:`predict_proba` and :meth:`predict` return one row per series of
    ``df``, indexed by series id (index named ``id_col``), in the order of each series' first
    row in ``df``. A series with no observed target value gets NaN (one warning): there is
    nothing to condition on.

    **scikit-learn.** ``clone``, pickling, ``save`` / ``load`` (the regressor's file format),
    :class:`~sklearn.pipeline.Pipeline` and ``cross_val_score`` / ``GridSearchCV`` work. For
    cross-validation pass per-row labels and the ids as groups, so that the folds split
    series, not rows: ``cross_val_score(clf, df, df["id"].map(labels), groups=df["id"],
    cv=GroupKFold(5))`` or ``StratifiedGroupKFold`` (which stratifies the series by their
    label). :meth:`score` is the accuracy over series (scikit-learn's default for
    classifiers). scikit-learn's scorers (``scoring="roc_auc"``, ``"accuracy"``,
    ``"neg_log_loss"``, ...) compare the predictions with ``y`` row by row, so they cannot score
    one prediction per series: :meth:`predict` and :meth:`predict_proba` called by them raise
    a ``ValueError`` that says so. Wrap the name instead:
    ``scoring=latentode.evaluation.make_series_scorer("roc_auc")`` reduces ``y`` to one label
    per series, as :meth:`fit` does, and scores the predictions per series. Of
    :mod:`sklearn.utils.estimator_checks`, the checks that need only a constructed estimator
    apply (the same list as the regressor's, ``tests/test_classifier.py``); the checks that
    fit numpy arrays do not, for the reasons given by the regressor.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from latentode import LatentODEClassifier
    >>> t = np.linspace(0, 5, 20)
    >>> df = pd.DataFrame({"id": np.repeat([0, 1, 2, 3], 20), "t": np.tile(t, 4),
    ...                    "x": np.r_[np.sin(t), np.sin(3 * t), np.sin(t), np.sin(3 * t)]})
    >>> y = pd.Series(["slow", "fast", "slow", "fast"], index=[0, 1, 2, 3])
    >>> clf = LatentODEClassifier(latent_dim=4, rec_dim=8, units=16, n_layers=1, gru_units=16,
    ...                           encoder="gru", max_epochs=2, verbose=0, random_state=0)
    >>> clf.fit(df, y).predict_proba(df).shape
    (4, 2)
    """

    _empty_series_methods: ClassVar[str] = "predict_proba and predict"

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **LatentODERegressor._parameter_constraints,
        "classifier": [Options(CLASSIFIER_INPUTS)],
        "ce_weight": [Interval(Real, 0, None, closed="neither",
                               description="be a positive finite number")],
        "class_weight": [None, Options(("balanced",)), InstanceOf(dict, "a dict")],
        "scoring": [Options(CLASSIFIER_SCORINGS)],
        "classifier_dropout": [Interval(Real, 0, 1, closed="left")],
        "semi_supervised": [Boolean()],
        "head_inputs": [Options(HEAD_INPUTS)],
    }

    def __init__(
        self,
        classifier: str = "latent",
        ce_weight: float = 10.0,
        class_weight: dict[Any, float] | str | None = None,
        scoring: str = "log_loss",
        classifier_dropout: float = 0.0,
        weight_decay: float = 0.0,
        semi_supervised: bool = False,
        head_inputs: str = "latent+summary+pooled",
        latent_dim: int = 20,
        encoder: str = "odernn",
        rec_dim: int = 40,
        units: int = 50,
        n_layers: int = 3,
        gru_units: int = 50,
        decoder_layers: int = 0,
        gradient: str = "adjoint",
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        n_traj_samples: int = 3,
        max_epochs: int = 100,
        batch_size: int = 50,
        lr: float = 1e-2,
        lr_decay: float | None = None,
        kl_warmup: float | str | None = 10,
        obs_dropout: float = 0.0,
        obs_weighting: str = "value",
        forecast_split: float | None = None,
        validation_fraction: float = 0.1,
        early_stopping: bool = True,
        patience: int = 10,
        poisson_process: bool = False,
        obs_std: str | float = "learned",
        calibrate: bool = True,
        device: str | torch.device = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
        warm_start: bool = False,
        max_steps: int = 10_000,
        n_jobs: int | None = None,
        callbacks: Sequence[Any] | None = None,
        likelihood: str = "gaussian",
        obs_df: str | float = "learned",
        linear_term: bool = False,
        time_scale: float | None = None,
        readout: str = "latent",
        readout_aux: float = 1.0,
        readout_reach: str = "window",
        forecast_share: float = 0.0,
        forecast_range: tuple[float, float] = FORECAST_RANGE,
        readout_sides: str = "shared",
        weight_averaging: float = 2.0,
        mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
        dynamics_activation: str = "tanh",
        forecast_noise: bool = False,
        posterior_time: str = "first",
        input_fences: float | None = None,
        calibration_structure: str = "training",
        point_prediction: str = "predictive_mean",
        point_samples: int = POINT_SAMPLES,
        forecast_mode: str = "swap",
        calibration_density: bool | str = "validated",
        lr_schedule: str | Callable[[int, int], float] | None = None,
        min_lr: float | None = None,
    ) -> None:
        super().__init__(
            latent_dim=latent_dim, encoder=encoder, rec_dim=rec_dim, units=units,
            n_layers=n_layers, gru_units=gru_units, decoder_layers=decoder_layers,
            gradient=gradient, solver=solver, rtol=rtol, atol=atol, step_size=step_size,
            n_traj_samples=n_traj_samples, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
            lr_decay=lr_decay, kl_warmup=kl_warmup, obs_dropout=obs_dropout,
            obs_weighting=obs_weighting, forecast_split=forecast_split,
            validation_fraction=validation_fraction, early_stopping=early_stopping,
            patience=patience, poisson_process=poisson_process, obs_std=obs_std,
            calibrate=calibrate, device=device, random_state=random_state, verbose=verbose,
            warm_start=warm_start, callbacks=callbacks, max_steps=max_steps, n_jobs=n_jobs,
            likelihood=likelihood, obs_df=obs_df, linear_term=linear_term, time_scale=time_scale,
            readout=readout, readout_aux=readout_aux, readout_reach=readout_reach,
            forecast_share=forecast_share, forecast_range=forecast_range,
            weight_decay=weight_decay, readout_sides=readout_sides,
            mtan_ref_points=mtan_ref_points, mtan_embed_dim=mtan_embed_dim,
            dynamics_activation=dynamics_activation, forecast_noise=forecast_noise,
            posterior_time=posterior_time, input_fences=input_fences,
            calibration_structure=calibration_structure, point_prediction=point_prediction,
            point_samples=point_samples, forecast_mode=forecast_mode,
            calibration_density=calibration_density, lr_schedule=lr_schedule, min_lr=min_lr,
            weight_averaging=weight_averaging,
        )
        self.classifier = classifier
        self.ce_weight = ce_weight
        self.class_weight = class_weight
        self.scoring = scoring
        self.classifier_dropout = classifier_dropout
        self.semi_supervised = semi_supervised
        self.head_inputs = head_inputs

    @classmethod
    def _added_params(cls) -> dict[str, Any]:
        """The regressor's added parameters and the classifier's own (older pickles)."""
        return {**super()._added_params(), "classifier_dropout": 0.0, "semi_supervised": False,
                "head_inputs": "latent"}

    # ``df`` is the data, never metadata (the regressor hides it from fit, predict, score)
    __metadata_request__predict_proba = {"df": metadata_routing.UNUSED}

    def __sklearn_tags__(self):
        """A classifier of long DataFrames: ``y`` is required (one label per series)."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ fit
    @_with_n_jobs
    def fit(  # type: ignore[override]
        self,
        df: pd.DataFrame,
        y: Any,
        *,
        time_col: str = "t",
        id_col: str | None = "id",
        target_cols: Sequence[str] | None = None,
        static_cols: Sequence[str] | None = None,
        group_col: str | None = None,
        validation_data: tuple[pd.DataFrame, Any] | None = None,
    ) -> LatentODEClassifier:
        """Fit the Latent ODE and its classifier to the labelled series of a long DataFrame.

        Parameters
        ----------
        df : pandas.DataFrame
            Long format, as for :meth:`LatentODERegressor.fit`. Not modified.
        y : pandas.Series or array-like
            One label per series: a Series indexed by series id, or one label per row of
            ``df`` (see the class Notes). Binary or multi-class; any labels
            :func:`numpy.unique` can sort (strings, integers, booleans). With
            ``semi_supervised=True``, a missing label (NaN, None, ``pd.NA``, no entry) marks
            an unlabelled series.
        time_col, id_col, target_cols, static_cols, group_col : see LatentODERegressor.fit
            As for :meth:`LatentODERegressor.fit`. With ``semi_supervised=True`` the labelled
            and unlabelled series are split apart, each keeping its share of validation
            series; ``group_col`` then splits the groups of each, and a group holding both
            labelled and unlabelled series is a ValueError.
        validation_data : (pandas.DataFrame, labels), optional
            The validation series given apart, with their labels (as Keras's
            ``validation_data=(x_val, y_val)``): the frame as for
            :meth:`LatentODERegressor.fit` (``validation_data``), the labels in either form of
            ``y`` (by series id, or one per row of that frame). Their labels must be classes of
            ``y`` and are weighted by ``y``'s ``class_weight``; with ``semi_supervised=True``
            a missing label marks an unlabelled validation series. No validation split of
            ``df`` is drawn; these series serve early stopping, the choice of the best
            (averaged) weights and the scores (``scoring``). Not modified.

        Returns
        -------
        self : LatentODEClassifier

        Raises
        ------
        ValueError
            Every error of :meth:`LatentODERegressor.fit`, and for labels: missing for a
            series of ``df`` (unless ``semi_supervised=True``), given for an id not in ``df``,
            varying within a series, a single class, a ``class_weight`` naming an unknown
            class, or a continuous ``y``; with ``semi_supervised=True``, the label -1, no
            labelled series, or unlabelled series with ``classifier="encoder"``; a
            ``group_col`` group holding labelled and unlabelled series; a ``validation_data``
            that is not a pair, or whose labels are missing, no class of ``y`` or varying
            within a series (its messages start with ``"validation_data:"``). Raised before
            any training.
        """
        frame, labels = None, None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("validation_data must be a pair (df_val, y_val): the "
                                 "validation series and their labels, got "
                                 f"{type(validation_data).__name__}.")
            frame, labels = validation_data
        return self._fit(df, y, time_col=time_col, id_col=id_col, target_cols=target_cols,
                         static_cols=static_cols, group_col=group_col,
                         validation_data=frame, validation_y=labels)

    def _series_labels(
        self, df: pd.DataFrame, vf: Any, y: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class indices (:data:`~latentode.batch.UNLABELLED` for a series without a label),
        classes and loss weights of the series of ``vf`` (its order)."""
        semi = bool(self.semi_supervised)
        labels = self._labels_per_series(df, vf, y, allow_missing=semi)
        where = "" if vf.id_col is None else f" (column {vf.id_col!r})"
        if labels.empty:
            raise ValueError(f"y has no label for any of the {vf.n_series} fitted series of df"
                             f"{where}; semi-supervised training needs labelled series of two "
                             "or more classes besides the unlabelled ones.")
        values = labels.to_numpy()
        if semi:
            _check_no_minus_one(values)
        if values.dtype == object:  # scikit-learn reads tuples as "legacy multi-label" data
            odd = [i for i, v in enumerate(values)
                   if isinstance(v, (tuple, list, set, frozenset, dict, np.ndarray))]
            if odd:
                sid = labels.index[odd[0]]
                raise ValueError(
                    f"The label of series {_plain(sid)!r}{where} is a "
                    f"{type(values[odd[0]]).__name__} ({values[odd[0]]!r}); a label is one "
                    "class per series (a number, string or bool)"
                    f"{f' ({len(odd)} such labels)' if len(odd) > 1 else ''}.")
        try:  # before scikit-learn's check, which calls such labels of "unknown" type
            classes = np.unique(values)
        except TypeError:
            raise ValueError("The labels mix types that cannot be sorted (e.g. strings and "
                             "numbers); use one type.") from None
        check_classification_targets(values)
        n_unlabelled = vf.n_series - len(values)
        among = (f"{len(values)} labelled series ({n_unlabelled} unlabelled)" if n_unlabelled
                 else f"{len(values)} fitted series")
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({_plain(classes[0])!r}) among the "
                             f"{among}; a classifier needs two or more.")
        if n_unlabelled and self.classifier != "latent":
            raise ValueError(f"{n_unlabelled} series of df have no label, and "
                             f"classifier={self.classifier!r} trains by the cross-entropy "
                             "alone, to which they add nothing; semi-supervised training "
                             "needs classifier='latent' (their ELBO trains the encoder).")
        if bool(self.warm_start) and self.__sklearn_is_fitted__() and (
                len(classes) != len(self.classes_) or (classes != self.classes_).any()):
            raise ValueError(f"warm_start=True needs the classes of the previous fit "
                             f"({_fmt_ids([_plain(c) for c in self.classes_])}), got "
                             f"{_fmt_ids([_plain(c) for c in classes])}.")
        known = np.searchsorted(classes, values).astype(np.int64)
        per_class = self._class_weights(classes, known)
        codes = np.full(vf.n_series, UNLABELLED, dtype=np.int64)
        codes[labels.index.to_numpy()] = known
        weights = np.zeros(vf.n_series)  # unlabelled: no cross-entropy
        weights[labels.index.to_numpy()] = per_class[known]
        return codes, classes, weights

    def _held_labels(
        self, df: pd.DataFrame, held: Any, y: Any, classes: np.ndarray | None,
        labels: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class indices (:data:`~latentode.batch.UNLABELLED` without a label) and loss
        weights of the validation series given apart (``held``, ``df`` validated), in the
        training classes and with the training series' class weights (``labels``)."""
        assert classes is not None and labels is not None
        try:
            given = self._labels_per_series(df, held, y, allow_missing=bool(self.semi_supervised))
        except ValueError as err:
            raise ValueError(f"validation_data: {err}") from err
        values = given.to_numpy()
        known = pd.Index(classes, dtype=object).get_indexer(pd.Index(values, dtype=object))
        if (known < 0).any():
            bad = np.flatnonzero(known < 0)
            where = "" if held.id_col is None else f" (column {held.id_col!r})"
            raise ValueError(
                f"validation_data: labels {_fmt_ids([_plain(v) for v in pd.unique(values[bad])])}"
                f" of series {_fmt_ids([_plain(held.series_ids[i]) for i in given.index[bad]])}"
                f"{where} are no class of y (classes: {_fmt_ids([_plain(c) for c in classes])}).")
        per_class = self._class_weights(classes, labels[labels != UNLABELLED])
        codes = np.full(held.n_series, UNLABELLED, dtype=np.int64)
        codes[given.index.to_numpy()] = known
        weights = np.zeros(held.n_series)
        weights[given.index.to_numpy()] = per_class[known]
        return codes, weights

    def _labels_per_series(self, df: pd.DataFrame, vf: Any, y: Any,
                           allow_missing: bool = False) -> pd.Series:
        """The labels of the series of ``vf`` that have one, indexed by series position ``s``
        (``vf.series_ids[s]``), in that order, with ``y``'s dtype; a series without a label
        is a ValueError unless ``allow_missing``, when it is left out."""
        if y is None:
            raise ValueError("LatentODEClassifier.fit needs y: one label per series (a Series "
                             "indexed by series id, or one label per row of df).")
        if isinstance(y, pd.DataFrame):
            if y.shape[1] != 1:
                raise ValueError(f"y must be one column of labels, got a DataFrame with "
                                 f"{y.shape[1]} columns.")
            y = y.iloc[:, 0]
        id_col = vf.id_col
        where = "" if id_col is None else f" (column {id_col!r})"
        n = vf.n_series
        if isinstance(y, pd.Series) and not (len(y) == len(df) and y.index.equals(df.index)):
            if y.index.has_duplicates:
                dup = pd.unique(y.index[y.index.duplicated()])
                raise ValueError(f"y has several labels for series {_fmt_ids(list(dup))}; give "
                                 "one label per series id (or one per row of df, with df's "
                                 "index).")
            known = set(vf.series_ids.tolist()) | set(vf.dropped_series.tolist())
            unknown = [i for i in y.index if i not in known]
            if unknown:
                # a Series of one label per row read as labels by id: its index is not df's
                hint = (" A Series of one label per row must have df's index (it has "
                        f"{len(y)} labels for the {len(df)} rows of df but another index); "
                        "give it df's index or pass an array."
                        if len(y) == len(df) else "")
                raise ValueError(f"y has labels for series {_fmt_ids([_plain(i) for i in unknown])}"
                                 f" that are not in df{where}.{hint}")
            pos = y.index.get_indexer(pd.Index(vf.series_ids))
            have = np.flatnonzero(pos >= 0)
            out = y.iloc[pos[have]].set_axis(pd.RangeIndex(n)[have])
        else:  # one label per row
            arr = y if isinstance(y, pd.Series) else np.asarray(y)
            if arr.ndim != 1 or len(arr) != len(df):
                raise ValueError(
                    f"y must hold one label per series (a pandas Series indexed by series id) "
                    f"or one per row of df ({len(df)} rows); got an array of shape "
                    f"{np.shape(arr)}.")
            values = pd.Series(arr).reset_index(drop=True)
            codes = (np.zeros(len(df), dtype=np.int64) if id_col is None
                     else vf.lookup_series(df[id_col]))
            keep = codes >= 0
            groups = values[keep].groupby(codes[keep], sort=True)
            varying = groups.nunique(dropna=True)
            if (varying > 1).any():
                code = int(varying.index[np.argmax(varying.to_numpy() > 1)])
                shown = pd.unique(values[keep][codes[keep] == code].dropna())[:2]
                raise ValueError(
                    f"y has different labels on the rows of series "
                    f"{_plain(vf.series_ids[code])!r}{where}: "
                    f"{_fmt_ids([_plain(v) for v in shown])}; one label per series.")
            out = groups.first()
        missing = np.ones(n, dtype=bool)
        missing[out.index[np.asarray(out.notna())].to_numpy()] = False
        if missing.any() and not allow_missing:
            ids = [_plain(i) for i in vf.series_ids[missing]]
            raise ValueError(f"y has no label for {int(missing.sum())} series of df: "
                             f"{_fmt_ids(ids)}{where}. Give every series a label (or leave the "
                             "unlabelled series out of df, or set semi_supervised=True to "
                             "train them without one: the ELBO only).")
        return out[~missing[out.index.to_numpy()]] if missing.any() else out

    def _class_weights(self, classes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The loss weight of each class (``class_weight``)."""
        cw = self.class_weight
        k = len(classes)
        if cw is None:
            return np.ones(k)
        if isinstance(cw, str):  # "balanced"
            counts = np.bincount(codes, minlength=k).astype(np.float64)
            return len(codes) / (k * np.maximum(counts, 1.0))
        out = np.ones(k)
        index = pd.Index(classes, dtype=object)
        positions = {label: index.get_indexer([label])[0] for label in cw}
        unknown = [label for label, pos in positions.items() if pos < 0]
        # as scikit-learn: a weight for a class absent from y (a cross-validation fold without
        # a rare class) is ignored when every class of y has one; otherwise it is a typo
        if unknown and len(cw) - len(unknown) < k:
            raise ValueError(f"class_weight has a weight for {unknown[0]!r}, which is not a class "
                             f"of y (classes: {_fmt_ids([_plain(c) for c in classes])}).")
        for label, weight in cw.items():
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
                    math.isfinite(weight) and weight >= 0):
                raise ValueError(f"class_weight[{label!r}] must be a non-negative finite number, "
                                 f"got {weight!r}.")
            if positions[label] >= 0:
                out[positions[label]] = float(weight)
        return out

    def _build_model(self, n_channels: int, n_static: int = 0, **kwargs: Any) -> Any:
        return super()._build_model(n_channels, n_static,
                                    classifier_dropout=float(self.classifier_dropout),
                                    head_inputs=self.head_inputs, **kwargs)

    def _init_model(self, model: Any, train: Any) -> None:
        super()._init_model(model, train)
        if model.summary is not None:  # the head's summaries: standardised on training series
            device = next(model.parameters()).device
            model.summary.fit(_data.iterate_batches(train, int(self.batch_size), device=device))

    def _refresh_model(self, model: Any) -> None:
        fitted = model.hparams.get("head_inputs", "latent")
        if fitted != self.head_inputs:
            raise ValueError(f"warm_start=True needs the head_inputs of the previous fit "
                             f"({fitted!r}), got {self.head_inputs!r}. Use warm_start=False to "
                             "refit.")
        super()._refresh_model(model)
        if model.classifier is not None:  # warm start: this fit's dropout
            model.classifier.dropout = float(self.classifier_dropout)
            model.hparams["classifier_dropout"] = float(self.classifier_dropout)

    def _fit_options(self, classes: np.ndarray | None,
                     val_labels: np.ndarray | None) -> dict[str, Any]:
        if val_labels is None or classes is None:  # no validation series: the training loss
            return {}
        val_labels = val_labels[val_labels != UNLABELLED]
        if not len(val_labels) and self.scoring != "loss":
            raise ValueError(f"scoring={self.scoring!r} needs labelled validation series, but "
                             f"validation_fraction={self.validation_fraction} (or "
                             "validation_data) leaves none; label more series or use "
                             "scoring='loss'.")
        if self.scoring == "roc_auc":
            if len(classes) != 2:
                raise ValueError(f"scoring='roc_auc' needs two classes; y has {len(classes)} "
                                 f"({_fmt_ids([_plain(c) for c in classes])}). Use "
                                 "scoring='log_loss'.")
            present = np.unique(val_labels)
            if len(present) < 2:
                raise ValueError(
                    f"scoring='roc_auc' needs validation series of both classes, but the "
                    f"{len(val_labels)} validation series (validation_fraction="
                    f"{self.validation_fraction}) are all of class "
                    f"{_plain(classes[present[0]])!r}; raise validation_fraction or use "
                    "scoring='log_loss'.")
        return {"val_metric": self.scoring}

    def _loss_options(self) -> dict[str, Any]:
        if self.classifier == "encoder":
            return {"elbo": False}
        return {**super()._loss_options(), "ce_weight": float(self.ce_weight)}

    def _calibrates(self) -> bool:
        return self.classifier == "latent"

    def _check_distributed(self) -> None:
        raise ValueError("LatentODEClassifier does not train across processes yet (its "
                         "cross-entropy is averaged per series, which the distributed step does "
                         "not split exactly); run it in one process.")

    def _check_posterior_time(self) -> None:
        if self.posterior_time == "last":
            raise ValueError("LatentODEClassifier cannot use posterior_time='last': its head "
                             "reads the latent state at each series' start; use "
                             "posterior_time='first'.")

    # ------------------------------------------------------------------ predict
    @_with_n_jobs
    def predict_proba(self, df: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities of each series of ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Long frame with the fitted id, time, target (and static) columns; series may be
            new. Not modified.

        Returns
        -------
        pandas.DataFrame
            One row per series, indexed by series id (index named ``id_col``), in the order of
            each series' first row in ``df``; one column per class (``classes_``), rows
            summing to 1. NaN for a series with no observed target value (one warning).
        """
        _refuse_row_scorers("predict_proba")
        proba, ids = self._series_proba(df)
        return pd.DataFrame(proba, index=ids, columns=pd.Index(self.classes_))

    @_with_n_jobs
    def predict(self, df: pd.DataFrame) -> pd.Series:  # type: ignore[override]
        """The most probable class of each series of ``df``.

        Returns
        -------
        pandas.Series
            One label (from ``classes_``) per series, indexed and ordered like
            :meth:`predict_proba`; NaN (object dtype) for a series with no observed target
            value.
        """
        _refuse_row_scorers("predict")
        proba, ids = self._series_proba(df)
        ok = np.isfinite(proba).all(axis=1)
        labels = self.classes_[np.argmax(np.where(ok[:, None], proba, 0.0), axis=1)]
        if not ok.all():
            labels = labels.astype(object)
            labels[~ok] = np.nan
        return pd.Series(labels, index=ids)

    @_with_n_jobs
    def score(self, df: pd.DataFrame, y: Any) -> float:  # type: ignore[override]
        """Accuracy over the series of ``df`` (scikit-learn's default score of a classifier).

        Parameters
        ----------
        df : pandas.DataFrame
            Long frame (as for :meth:`predict`).
        y : pandas.Series or array-like
            Labels, in either form that :meth:`fit` takes (per series id, or per row).

        Returns
        -------
        float
            Share of the series with an observed value whose predicted class equals their
            label (each series counts once, however many rows it has). With
            ``semi_supervised=True``, series without a label are left out.
        """
        labels, rows = self._scored_labels(df, y)
        if not len(labels):
            raise ValueError("No series of df has both an observed target value to classify "
                             "and a label.")
        predicted = self.predict(df).to_numpy()[rows]
        return float(np.mean(predicted.astype(object) == labels.astype(object)))

    def _scored_labels(self, df: pd.DataFrame, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The labels of the series of ``df`` that can be scored, and which rows of
        :meth:`predict` / :meth:`predict_proba` they belong to.

        The one reduction of ``y`` (per series id or per row, as :meth:`fit` reads it) to the
        series :meth:`score` and :func:`latentode.evaluation.make_series_scorer` compare the
        predictions with: a series is scored when it has a label (with
        ``semi_supervised=True`` some have none) and an observed target value (without one its
        prediction is NaN).

        Returns
        -------
        labels : numpy.ndarray
            One label per scored series, with ``y``'s dtype, in the order of the predictions.
        rows : numpy.ndarray of bool
            ``True`` for the rows of the predictions (one per series of ``df``, in the order of
            each series' first row) that are scored.
        """
        check_is_fitted(self)
        vf, padded = self._prepare(df)
        truth = self._labels_per_series(df, vf, y, allow_missing=bool(self.semi_supervised))
        order = self._prediction_order(vf)
        labelled = np.zeros(vf.n_series, dtype=bool)
        labelled[truth.index.to_numpy()] = True
        rows = (labelled & (np.asarray(padded.lengths) > 0))[order]
        return truth.loc[order[rows]].to_numpy(), rows

    def _prediction_order(self, vf: Any) -> np.ndarray:
        """Series positions of ``vf`` in the order of the predictions (each one's first row)."""
        return pd.unique(vf.row_series_codes) if self.id_col_ is not None else np.array([0])

    def _series_proba(self, df: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
        """``(n_series, n_classes)`` probabilities in first-appearance order, and the ids."""
        check_is_fitted(self)
        vf, padded = self._prepare(df)
        proba = np.full((vf.n_series, len(self.classes_)), np.nan)
        live = np.flatnonzero(padded.lengths > 0)
        if len(live) < vf.n_series:
            empty = vf.series_ids[padded.lengths == 0]
            warnings.warn(
                f"{len(empty)} series {'has' if len(empty) == 1 else 'have'} no observed value "
                f"to condition on: {_fmt_ids([_plain(i) for i in empty])}"
                f"{'' if self.id_col_ is None else f' (column {self.id_col_!r})'}; "
                f"{'its' if len(empty) == 1 else 'their'} class probabilities are NaN.",
                UserWarning, stacklevel=external_stacklevel())
        if len(live):
            sub = _data.subset(padded, live)
            dtype = next(self.model_.parameters()).dtype
            bs = int(self.batch_size)
            self.model_.eval()
            with torch.no_grad():
                for k, batch in enumerate(_data.iterate_batches(sub, bs, device=self.device_,
                                                                dtype=dtype)):
                    p = torch.softmax(self.model_.classify(batch), dim=-1)
                    proba[live[k * bs:k * bs + batch.batch_size]] = p.double().cpu().numpy()
        order = self._prediction_order(vf)
        ids = pd.Index(vf.series_ids[order], name=self.id_col_)
        return proba[order], ids

    # ------------------------------------------------------------------ generative methods
    def _needs_decoder(self, method: str) -> None:
        check_is_fitted(self)
        if self.classifier != "latent":
            raise ValueError(f"{method} needs the Latent ODE classifier (classifier='latent'): "
                             "the encoder-only classifier trains no decoder.")

    def extrapolate(self, df: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """:meth:`LatentODERegressor.extrapolate` of the jointly trained Latent ODE
        (``classifier="latent"`` only)."""
        self._needs_decoder("extrapolate")
        return super().extrapolate(df, *args, **kwargs)

    def sample(self, df: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """:meth:`LatentODERegressor.sample` of the jointly trained Latent ODE
        (``classifier="latent"`` only)."""
        self._needs_decoder("sample")
        return super().sample(df, *args, **kwargs)

    def predict_intensity(self, df: pd.DataFrame, times: Any = None) -> pd.DataFrame:
        """:meth:`LatentODERegressor.predict_intensity` (``classifier="latent"`` only)."""
        self._needs_decoder("predict_intensity")
        return super().predict_intensity(df, times)

    @classmethod
    def load(cls, path: str | os.PathLike[str],
             device: str | torch.device | None = None) -> LatentODEClassifier:
        """Load a classifier written by :meth:`save` (see :meth:`LatentODERegressor.load`)."""
        return super().load(path, device=device)  # type: ignore[return-value]


#: scikit-learn's modules that call a classifier's ``predict`` / ``predict_proba`` to compare
#: the output with ``y`` row by row: its scorers (``scoring="accuracy"``, ``"roc_auc"``, ...)
#: and ``_get_response_values`` (the scorers, ``RocCurveDisplay.from_estimator``, ...)
_ROW_SCORERS = ("sklearn.metrics._scorer", "sklearn.utils._response")
#: and the one that places the predictions by row: ``cross_val_predict``
_ROW_PLACERS = ("sklearn.model_selection._validation",)
#: modules between such a caller and the method: the threads wrapper, a Pipeline's last step
_PASSED_THROUGH = ("latentode.estimator", "sklearn.pipeline", "sklearn.utils._available_if")


def _refuse_row_scorers(method: str) -> None:
    """Refuse to predict for scikit-learn's built-in scorers, with the reason and the remedy.

    They compare the predictions with ``y`` row by row. Cross-validation passes one label per
    row of the long frame (the splitters split rows), while the classifier predicts one per
    series, so they fail inside scikit-learn (``inconsistent numbers of samples``,
    ``InvalidIndexError``) with messages that do not say why; so does ``cross_val_predict``
    (``IndexError``), which places the predictions by row. Called first by the public
    method: the caller is read from the stack (as :func:`external_stacklevel` does), through
    the threads wrapper and a Pipeline. ``score`` and
    :func:`latentode.evaluation.make_series_scorer` call the methods from latentode, so they
    are not refused.
    """
    frame = sys._getframe(2)  # 1: the public method, 2: the threads wrapper or the caller
    while frame is not None and frame.f_globals.get("__name__") in _PASSED_THROUGH:
        frame = frame.f_back
    caller = None if frame is None else frame.f_globals.get("__name__")
    if caller in _ROW_PLACERS:
        raise ValueError(
            f"LatentODEClassifier.{method} was called by scikit-learn's cross_val_predict, "
            "which places the predictions at the rows of the test fold; but the classifier "
            "predicts one per series. Collect them per series from the splitter's folds: "
            "pd.concat([clone(clf).fit(df.iloc[tr], y.iloc[tr]).predict_proba(df.iloc[te]) "
            "for tr, te in cv.split(df, y, groups=df['id'])]).")
    if caller not in _ROW_SCORERS:
        return
    raise ValueError(
        f"LatentODEClassifier.{method} was called by a scikit-learn scorer (such as "
        "scoring='accuracy', 'roc_auc', 'neg_log_loss' or 'balanced_accuracy'), which compares "
        "its output with y row by row; but the classifier predicts one label per series, and "
        "the y of a cross-validation holds one label per row of the long frame. Score the "
        "series instead: scoring=latentode.evaluation.make_series_scorer('roc_auc') (any "
        "scikit-learn scorer name) reduces y to one label per series as fit does; or leave "
        "scoring unset for the accuracy over series (score).")


def _check_no_minus_one(values: np.ndarray) -> None:
    """Refuse the label -1 in semi-supervised training (scikit-learn's "unlabelled" marker)."""
    if values.dtype.kind in "iuf":
        found = bool((values == -1).any())
    elif values.dtype.kind == "O":
        found = any(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                    and v == -1 for v in values)
    else:
        found = False
    if found:
        raise ValueError(
            "y has the label -1 with semi_supervised=True, which is ambiguous: scikit-learn's "
            "semi-supervised estimators read -1 as 'unlabelled', latentode reads a missing "
            "label (NaN, None, pd.NA, or no entry for the series) as unlabelled. Write NaN for "
            "the unlabelled series (a nullable dtype such as 'Int64' keeps integer classes), "
            "or recode the class named -1.")
