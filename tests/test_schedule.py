import pytest

from gluon_triplet.config import (
    DEFAULT_LR,
    SHORT_RUN_EPOCHS,
    SHORT_RUN_LR,
    SHORT_RUN_WARMUP,
    Config,
    ConfigError,
    resolve_schedule,
    short_run,
)
from gluon_triplet.training.schedule import make_lr_scheduler


def rates(scheduler, updates):
    return [scheduler(u) for u in updates]


def test_no_warmup_keeps_todays_schedules():
    assert make_lr_scheduler(Config(lr_schedule="constant", epochs=4, warmup_epochs=0), 10) is None
    assert make_lr_scheduler(Config(lr_schedule="constant", epochs=6), 10) is None
    assert make_lr_scheduler(Config(epochs=0), 10) is None
    cosine = make_lr_scheduler(Config(lr=0.1, epochs=4, warmup_epochs=0), 10)
    assert cosine(0) == pytest.approx(0.1)
    assert cosine(20) == pytest.approx(0.05)
    assert cosine(40) == pytest.approx(0.0, abs=1e-12)


def test_linear_warmup_then_cosine():
    s = make_lr_scheduler(Config(lr=0.1, epochs=4, warmup_epochs=1), 10)
    assert rates(s, [0, 5]) == pytest.approx([0.0, 0.05])
    # The cosine runs over the 30 updates after the warm-up.
    assert rates(s, [10, 25, 40]) == pytest.approx([0.1, 0.05, 0.0], abs=1e-12)


def test_linear_warmup_then_constant():
    s = make_lr_scheduler(Config(lr=0.1, epochs=3, lr_schedule="constant", warmup_epochs=0.5), 8)
    assert rates(s, [0, 2, 4, 5, 23]) == pytest.approx([0.0, 0.05, 0.1, 0.1, 0.1])


def test_warmup_validation():
    with pytest.raises(ConfigError, match="warmup_epochs must be >= 0"):
        Config(warmup_epochs=-1)
    with pytest.raises(ConfigError, match=r"warmup_epochs \(2\) must be < epochs \(2\)"):
        Config(warmup_epochs=2, epochs=2)
    assert Config(warmup_epochs=3, epochs=0).warmup_epochs == 3  # nothing trains


@pytest.mark.parametrize("epochs", [0, 1, 3, 5, 6, 10, 30])
def test_automatic_rate_and_warmup_depend_on_the_run_length_only_when_left_automatic(epochs):
    short = 0 < epochs <= SHORT_RUN_EPOCHS
    assert short_run(epochs) == short
    assert resolve_schedule(None, None, epochs) == (
        (SHORT_RUN_LR, SHORT_RUN_WARMUP) if short else (DEFAULT_LR, 0.0)
    )
    assert resolve_schedule(0.05, 0.5, epochs) == (0.05, 0.5)
    assert resolve_schedule(0.05, None, epochs)[0] == 0.05
    assert resolve_schedule(None, 0.0, epochs) == (SHORT_RUN_LR if short else DEFAULT_LR, 0.0)


def test_an_automatic_short_run_ramps_up_then_decays():
    s = make_lr_scheduler(Config(epochs=3), 10)  # 3 warm-up updates of 30
    assert rates(s, [0, 3]) == pytest.approx([0.0, SHORT_RUN_LR])
    assert s(30) == pytest.approx(0.0, abs=1e-12)
    long = make_lr_scheduler(Config(epochs=10), 10)
    assert long(0) == pytest.approx(DEFAULT_LR)
