import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from gluon_triplet.config import PRESETS, Config
from gluon_triplet.data.datasets import load_dataset
from gluon_triplet.data.samplers import PKBatchSampler
from gluon_triplet.data.triplets import TripletDataset, create_pairs
from gluon_triplet.nets.zoo import build_model
from gluon_triplet.training.miners import get_miner, mined_loss
from gluon_triplet.training.trainer import TripletTrainer, resolve_contexts, set_seed


@pytest.mark.parametrize(
    "spec, gpus, expected",
    [
        ("auto", 0, [mx.cpu()]),
        ("auto", 2, [mx.gpu(0), mx.gpu(1)]),
        ("gpu", 2, [mx.gpu(0), mx.gpu(1)]),
        ("gpu:1", 2, [mx.gpu(1)]),
        ("cpu", 2, [mx.cpu(0)]),
        ("cpu:0,1", 0, [mx.cpu(0), mx.cpu(1)]),
    ],
)
def test_resolve_contexts(spec, gpus, expected):
    assert resolve_contexts(spec, num_gpus=gpus) == expected


@pytest.mark.parametrize(
    "spec, gpus, message",
    [
        ("gpu", 0, "no GPU visible"),
        ("gpu:3", 2, "GPU 3 does not exist"),
        ("tpu", 0, "bad --ctx"),
        ("cpu:a", 0, "must be integers"),
        ("cpu:0,0", 0, "distinct"),
    ],
)
def test_resolve_contexts_errors(spec, gpus, message):
    with pytest.raises(ValueError, match=message):
        resolve_contexts(spec, num_gpus=gpus)


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


def make_trainer(data, contexts, val=None, **overrides):
    # The reference recipe (offline triplets, SGD): these tests pin down its semantics.
    # val: (x, y) of a validation split.
    config = Config(
        **{**PRESETS["reference"], "epochs": 3, "batch_size": 128, "seed": 0, **overrides}
    )
    set_seed(config.seed)
    train_set = TripletDataset(data.x_train, data.y_train, seed=config.seed)
    net = build_model("mlp", ctx=contexts)
    return TripletTrainer(
        net,
        train_set,
        config,
        contexts,
        test_x=data.x_test,
        test_y=data.y_test,
        test_triplets=create_pairs(data.y_test, seed=0),
        **(
            {}
            if val is None
            else dict(val_x=val[0], val_y=val[1], val_triplets=create_pairs(val[1], seed=0))
        ),
    )


def test_training_on_mnist5k_beats_the_untrained_net(mnist5k):
    # eval_every 1: the untrained net (epoch 0) is scored on the test split's sample too
    trainer = make_trainer(mnist5k, [mx.cpu()], eval_every=1)
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    before, after = history[0]["test"], history[-1]["test"]
    assert after["precision_at_1"] > before["precision_at_1"] + 0.01
    assert after["triplet_accuracy"] > before["triplet_accuracy"] + 0.01
    # The mean loss over the epoch goes down and is averaged over every trained triplet.
    losses = [r["train"]["loss"] for r in history[1:]]
    assert losses[-1] < losses[0]
    # every one of the 3990 triplets, the last batch topped up to a full 128
    assert history[1]["train"]["triplets"] == trainer.num_batches * 128
    assert trainer.num_batches == -(-3990 // 128)
    assert 0 < history[1]["train"]["active_fraction"] <= 1


def test_two_cpu_contexts_match_one(mnist5k):
    """split_and_load + kvstore 'device' over two contexts is the same SGD as one context."""
    params = []
    for contexts in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        trainer = make_trainer(mnist5k, contexts, epochs=1, batch_size=256)
        trainer.fit()
        params.append(
            {k: v.data(contexts[-1]).asnumpy() for k, v in trainer.net.collect_params().items()}
        )
    for (k1, one), two in zip(params[0].items(), params[1].values()):
        # Summation order differs between one and two replicas: float32 rounding only.
        np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-6, err_msg=k1)


def test_two_cpu_contexts_online_mine_within_their_own_slice(mnist5k):
    """Online, split_and_load gives each context half of a P x K batch and each mines its
    half: the same SGD as one context stepping on the mean of the two halves' mined losses."""
    trainer = make_trainer(mnist5k, [mx.cpu(0), mx.cpu(1)], miner="batch-hard", epochs=1)
    trainer.fit()
    config, train_set = trainer.config, trainer.train_set

    # Brute force on one context from public pieces, the halves mined one by one.
    set_seed(config.seed)
    net = build_model("mlp", ctx=[mx.cpu(0)])
    sgd = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": config.lr})
    miner = get_miner("batch-hard", margin=config.margin, metric=config.distance)
    loss_fn = gluon.loss.TripletLoss(margin=config.margin)
    sampler = PKBatchSampler(
        train_set.labels, trainer.pk_classes, config.pk_samples, seed=config.seed
    )
    for batch in sampler.epoch_batches():
        half = len(batch) // 2  # split_and_load's cut for two contexts
        with autograd.record():
            means = []
            for idx in (batch[:half], batch[half:]):
                emb = net(nd.array(train_set.x[idx]))
                mined = miner.mine(emb, nd.array(train_set.labels[idx]))
                means.append(mined_loss(loss_fn, emb, *mined))
            objective = (means[0] + means[1]) / 2
        objective.backward()
        sgd.step(1)
    pairs = zip(trainer.net.collect_params().values(), net.collect_params().values())
    for two, one in pairs:
        # Summation order differs between one and two replicas: float32 rounding only.
        np.testing.assert_allclose(
            two.data(mx.cpu(1)).asnumpy(), one.data().asnumpy(), rtol=1e-4, atol=1e-6
        )


def test_non_finite_loss_stops_with_epoch_and_batch(mnist5k):
    trainer = make_trainer(mnist5k, [mx.cpu()], lr=1e30, output="linear", log_every=1)
    with pytest.raises(FloatingPointError, match="epoch 1, batch"):
        trainer.fit()


def test_epochs_are_evaluated_on_a_fixed_sample_and_the_last_on_the_whole_split(mnist5k):
    from gluon_triplet.evaluation.metrics import (
        clustering_metrics,
        evaluate_embeddings,
        per_class_precision_at_1,
    )

    trainer = make_trainer(mnist5k, [mx.cpu()], epochs=4, eval_samples=300, eval_every=2)
    pick, triplets = trainer._eval_sample
    assert len(pick) == 300 and np.all(np.diff(pick) > 0)
    sample_metrics = trainer.evaluate(sample=True)
    emb = trainer.embed(mnist5k.x_test[pick])
    expected = evaluate_embeddings(emb, mnist5k.y_test[pick], triplets=triplets, margin=1.0)
    assert sample_metrics.pop("evaluated_on") == "fixed sample of 300 of 1000"
    assert sample_metrics == expected
    history = trainer.fit()
    tests = [r["test"] for r in history]
    # epoch 0 and 2 on the sample, 1 and 3 not evaluated, 4 (the last) on everything
    assert [t.get("evaluated_on") for t in tests[:3]] == ["fixed sample of 300 of 1000", None] + [
        "fixed sample of 300 of 1000"
    ]
    assert tests[1] == {} and tests[3] == {}
    final = dict(tests[4])
    assert "evaluated_on" not in final and final["num_queries"] == 1000
    emb = trainer.embed(mnist5k.x_test)
    assert final.pop("per_class_precision_at_1") == per_class_precision_at_1(emb, mnist5k.y_test)
    clusters = clustering_metrics(emb, mnist5k.y_test, seed=0)
    assert {k: final.pop(k) for k in clusters} == clusters
    final.pop("raw_embedding_norm", None)
    expected = evaluate_embeddings(emb, mnist5k.y_test, triplets=trainer.test_triplets, margin=1.0)
    assert final == expected


def test_by_default_epochs_score_a_validation_sample_and_the_test_split_once(mnist5k):
    from gluon_triplet.evaluation.metrics import evaluate_embeddings

    x_val, y_val = mnist5k.x_train[:600], mnist5k.y_train[:600]
    trainer = make_trainer(mnist5k, [mx.cpu()], epochs=2, eval_samples=300, val=(x_val, y_val))
    history = trainer.fit()
    # the test split: only after the last epoch, whole; never for the epochs before
    assert [bool(r["test"]) for r in history] == [False, False, True]
    assert history[-1]["test"]["num_queries"] == 1000
    assert "evaluated_on" not in history[-1]["test"]
    # the validation split: every epoch, on one fixed sample of 300 of its 600
    for record in history:
        assert record["val"]["evaluated_on"] == "fixed sample of 300 of 600"
        assert record["val"]["num_queries"] == 300
    # the whole validation split when it is no larger than --eval-samples
    whole = make_trainer(mnist5k, [mx.cpu()], epochs=1, eval_samples=600, val=(x_val, y_val))
    record = whole.evaluate_validation()
    emb = whole.embed(x_val)
    expected = evaluate_embeddings(emb, y_val, triplets=whole.val_triplets, margin=1.0)
    assert record == expected


def test_a_sample_among_many_classes_holds_ten_of_each_of_fewer_classes(mnist5k):
    # 200 classes of 5: a uniform sample of 100 would hold about one pair per class
    x_val, y_val = mnist5k.x_train[:1000], np.repeat(np.arange(200), 5)
    trainer = make_trainer(mnist5k, [mx.cpu()], epochs=1, eval_samples=100, val=(x_val, y_val))
    record = trainer.evaluate_validation()
    assert record["evaluated_on"] == "fixed sample of 100 of 1000, 20 of 200 classes"
    assert record["num_queries"] == 100


def test_a_run_stopped_early_ends_with_the_whole_split(mnist5k):
    from gluon_triplet.training.callbacks import Callback

    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer):
            trainer.stop_training = True

    trainer = make_trainer(mnist5k, [mx.cpu()], epochs=3, eval_samples=200, eval_every=1)
    trainer.callbacks.callbacks.append(StopAfterOne())
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [0, 1]
    assert history[0]["test"]["evaluated_on"] == "fixed sample of 200 of 1000"
    assert "evaluated_on" not in history[1]["test"]
    assert history[1]["test"]["num_queries"] == 1000
    assert "per_class_precision_at_1" in history[1]["test"] and "nmi" in history[1]["test"]


def test_the_last_evaluation_embedding_is_shared_while_the_weights_stand(mnist5k):
    # trainer.embed(x, test_index=i) for x = test_x[i]: from the whole split's last
    # evaluation after the last epoch (no second pass through the net), else computed;
    # always what a fresh pass gives (the net's call count says which it was).
    from gluon_triplet.training.callbacks import Callback

    index = np.array([3, 10, 11, 500, 999])
    x = mnist5k.x_test[index]
    seen = []

    class Compare(Callback):
        def check(self, trainer, when):
            calls = []
            hook = trainer.net.register_forward_hook(lambda *a: calls.append(1))
            shared = trainer.embed(x, test_index=index)
            hook.detach()
            # equal up to rounding: the net's kernels block a batch of 5 and one of 1000
            # differently
            np.testing.assert_allclose(shared, trainer.embed(x), rtol=1e-4, atol=1e-6)
            seen.append((when, trainer.epoch, len(calls)))

        def on_batch_end(self, trainer):
            if trainer.batch == 1:  # the weights moved since any evaluation
                self.check(trainer, "batch")

        def on_epoch_end(self, trainer):
            if trainer.epoch == 1:
                trainer.evaluate()  # a whole evaluation before more training
            self.check(trainer, "epoch end")

        def on_train_end(self, trainer):
            self.check(trainer, "train end")

    trainer = make_trainer(mnist5k, [mx.cpu()], epochs=2, eval_samples=200)
    trainer.callbacks.callbacks.append(Compare())
    trainer.fit()
    # the net ran for the shared call except after a whole evaluation
    assert seen == [
        ("batch", 1, 1),
        ("epoch end", 1, 0),
        ("batch", 2, 1),
        ("epoch end", 2, 0),
        ("train end", 2, 0),
    ]
    # released once training has ended
    after = []
    hook = trainer.net.register_forward_hook(lambda *a: after.append(1))
    trainer.embed(x, test_index=index)
    hook.detach()
    assert after == [1]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"miner": "offline", "batch_size": 64}, {"ctx": "cpu:0,1"}],
    ids=["semi-hard-cnn", "offline", "two-contexts"],
)
def test_timing_batches_before_training_leaves_the_epochs_as_they_were(overrides):
    """The default CNN has BatchNorm, whose running statistics a forward pass in training
    mode moves: timed or not, the trained weights and statistics are the same bits."""
    from gluon_triplet.nets.zoo import model_from_config

    data = load_dataset("mnist-5k")
    pick = np.concatenate([np.flatnonzero(data.y_train == c)[:40] for c in range(10)])
    x, y = data.x_train[pick], data.y_train[pick]
    config = Config(**{"seed": 0, "epochs": 1, "log_every": 5, **overrides})
    contexts = resolve_contexts(config.ctx)
    trained = []
    for timed in (False, True):
        set_seed(0)
        net, _ = model_from_config(config, x.shape[1:], ctx=contexts)
        trainer = TripletTrainer(net, TripletDataset(x, y, seed=0), config, contexts)
        if timed:
            seconds = trainer.time_batches()
            assert 0 < seconds < 60
        trainer.fit()
        trained.append([d.asnumpy() for p in net.collect_params().values() for d in p.list_data()])
    assert len(trained[0]) == len(trained[1])
    for before, after in zip(*trained):
        np.testing.assert_array_equal(before, after)
