"""Training layer: KL warm-up, the training loop, callbacks and history (torch only)."""

from .calibration import SCALE_GRID, calibrate_level, calibrate_spread
from .callbacks import (
    Callback,
    CallbackProtocol,
    EarlyStopping,
    LambdaCallback,
    as_callback,
    check_callbacks,
)
from .history import MONITORS, STOP_REASONS, History
from .loop import OPTIMIZERS, TrainingFailedError, fit_model
from .metrics import VAL_METRICS, binary_roc_auc, evaluate_classifier
from .objective import (
    FORECAST_MODES,
    FORECAST_RANGE,
    KLSchedule,
    drop_observations,
    evaluate_loss,
    exponential_kl_schedule,
    kl_weight_schedule,
    linear_kl_schedule,
    mix_forecast,
    split_forecast,
    validation_tasks,
)
from .schedule import LR_SCHEDULES, LRSchedule, lr_at

__all__ = [
    "fit_model",
    "TrainingFailedError",
    "calibrate_spread",
    "calibrate_level",
    "SCALE_GRID",
    "History",
    "STOP_REASONS",
    "OPTIMIZERS",
    "Callback",
    "CallbackProtocol",
    "EarlyStopping",
    "LambdaCallback",
    "as_callback",
    "check_callbacks",
    "KLSchedule",
    "kl_weight_schedule",
    "linear_kl_schedule",
    "exponential_kl_schedule",
    "evaluate_loss",
    "evaluate_classifier",
    "binary_roc_auc",
    "VAL_METRICS",
    "MONITORS",
    "drop_observations",
    "split_forecast",
    "mix_forecast",
    "validation_tasks",
    "FORECAST_RANGE",
    "FORECAST_MODES",
    "LR_SCHEDULES",
    "LRSchedule",
    "lr_at",
]
