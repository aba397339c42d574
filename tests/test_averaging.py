"""Weight averaging (averaging.py) against a hand-written loop, and in the trainer."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_triplet.config import Config, ConfigError
from gluon_triplet.data.triplets import TripletDataset, create_pairs
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.training.averaging import WeightAverage, average_decay
from gluon_triplet.training.trainer import TripletTrainer, set_seed


def small_net(contexts=None):
    contexts = contexts or (mx.cpu(),)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(5, in_units=4), gluon.nn.BatchNorm(in_channels=5))
    net.initialize(mx.init.Uniform(1.0), ctx=list(contexts))
    return net


def values(net, ctx=None):
    return [p.data(ctx or mx.cpu()).asnumpy().copy() for p in net.collect_params().values()]


def set_values(net, new):
    for p, v in zip(net.collect_params().values(), new):
        p.set_data(mx.nd.array(v))


def test_decay_ramps_up_then_holds():
    assert average_decay(0.999, 1) == pytest.approx(2 / 11)
    assert average_decay(0.999, 90) == pytest.approx(91 / 100)
    assert average_decay(0.5, 1) == pytest.approx(2 / 11)
    assert average_decay(0.5, 10) == 0.5
    assert average_decay(0.999, 10**6) == 0.999


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_update_matches_a_hand_loop(decay):
    """Every parameter (BatchNorm's running statistics too), on every context, against
    a NumPy loop: copy at the first update, then d_n * a + (1 - d_n) * w."""
    contexts = (mx.cpu(0), mx.cpu(1))
    net = small_net(contexts)
    average = WeightAverage(net.collect_params(), decay)
    rng = np.random.default_rng(0)
    want = None
    for n in range(1, 40):
        new = [rng.normal(size=w.shape).astype(np.float32) for w in values(net)]
        set_values(net, new)
        average.update()
        if want is None:
            want = [w.copy() for w in new]
        else:
            d = min(decay, (1 + n) / (10 + n))
            want = [d * a + (1 - d) * w for a, w in zip(want, new)]
    assert average.updates == 39
    last = values(net)
    average.swap_in()
    for ctx in contexts:
        for got, expected in zip(values(net, ctx), want):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    average.swap_out()
    for got, expected in zip(values(net), last):
        np.testing.assert_array_equal(got, expected)


def test_swap_is_idempotent_and_update_refused_while_swapped_in():
    net = small_net()
    average = WeightAverage(net.collect_params(), 0.9)
    before = values(net)
    average.swap_in()  # no update yet: the average is the net itself
    assert not average.swapped_in
    average.update()
    set_values(net, [w + 1 for w in before])
    average.update()
    average.swap_in()
    average.swap_in()
    assert average.swapped_in
    with pytest.raises(RuntimeError, match="swapped in"):
        average.update()
    training = [a.asnumpy() for a in average.training_arrays()]
    average.swap_out()
    average.swap_out()
    for got, want in zip(values(net), training):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(values(net)[0], before[0] + 1)


def test_restore_checks_shapes_and_count():
    net = small_net()
    average = WeightAverage(net.collect_params(), 0.9)
    arrays = [mx.nd.array(w) for w in values(net)]
    with pytest.raises(ValueError, match="training arrays for"):
        average.restore(arrays[:-1], 3)
    with pytest.raises(ValueError, match="of shape"):
        average.restore([mx.nd.zeros((2, 2))] + arrays[1:], 3)
    averaged = values(net)
    training = [w - 1 for w in averaged]
    average.restore([mx.nd.array(w) for w in training], 7)
    assert average.updates == 7
    for got, want in zip(values(net), training):
        np.testing.assert_array_equal(got, want)
    average.swap_in()
    for got, want in zip(values(net), averaged):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_bad_decay_is_refused(decay):
    if decay == 0.0:
        with pytest.raises(ValueError, match=r"in \(0, 1\)"):
            WeightAverage(small_net().collect_params(), decay)
    with pytest.raises(ConfigError, match="ema_decay"):
        Config(ema_decay=-0.1 if decay == 0.0 else decay)


def tiny_trainer(**overrides):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    x = (rng.normal(size=(4, 10))[y] + 0.5 * rng.normal(size=(48, 10))).astype(np.float32)
    settings = dict(
        model="mlp", hidden=(16,), embedding_size=8, epochs=2, miner="semi-hard",
        pk_classes=2, pk_samples=4, lr=0.01, seed=3,
    )  # fmt: skip
    settings.update(overrides)
    config = Config(**settings)
    set_seed(config.seed)
    net = build_model("mlp", ctx=[mx.cpu()], hidden=(16,), embedding_size=8, output="linear")
    return TripletTrainer(
        net,
        TripletDataset(x, y, seed=config.seed),
        config,
        [mx.cpu()],
        test_x=x,
        test_y=y,
        test_triplets=create_pairs(y, seed=0, warn=False),
    )


def test_trainer_averages_every_step_and_evaluates_the_average():
    """The trainer's averages equal a hand loop over the weights after each step, and
    the net it leaves (and scores) is the average."""
    trainer = tiny_trainer(ema_decay=0.8)
    steps = []
    step = trainer.trainer.step

    def recording_step(*args, **kwargs):
        step(*args, **kwargs)
        steps.append(values(trainer.net))

    trainer.trainer.step = recording_step
    trainer.fit()
    assert trainer.average.updates == len(steps) > 10
    want = steps[0]
    for n, new in enumerate(steps[1:], start=2):
        d = min(0.8, (1 + n) / (10 + n))
        want = [d * a + (1 - d) * w for a, w in zip(want, new)]
    assert trainer.average.swapped_in
    for got, expected in zip(values(trainer.net), want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for got, expected in zip(trainer.average.training_arrays(), steps[-1]):
        np.testing.assert_array_equal(got.asnumpy(), expected)
    final = {k: v for k, v in trainer.history[-1]["test"].items() if not isinstance(v, dict)}
    again = trainer.evaluate()
    for key in ("precision_at_1", "map_at_r", "triplet_accuracy"):
        assert again[key] == final[key]


def test_without_ema_decay_the_trainer_has_no_average():
    trainer = tiny_trainer()
    assert trainer.average is None
    trainer.fit()
    assert "average_updates" not in trainer.state_dict()
