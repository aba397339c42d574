"""One worker of the dist_sync job in tests/test_dist.py (run by the launcher, not by pytest).

Trains ``TripletTrainer`` on a quarter of mnist-5k with the kvstore named by argv[2]
and saves the final parameters, in the net's order, to ``<argv[1]>/worker-<rank>.npz``.
"""

import os
import sys
import traceback

# The test's reference run uses these too: keep them in one place.
STRIDE = 4
SETTINGS = {"epochs": 2, "batch_size": 64, "seed": 0}


def make_trainer(kvstore, batch_size):
    import mxnet as mx

    from gluon_triplet.config import PRESETS, Config
    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.data.triplets import TripletDataset
    from gluon_triplet.nets.zoo import build_model
    from gluon_triplet.training.trainer import TripletTrainer, set_seed

    data = load_dataset("mnist-5k")
    config = Config(
        **{**PRESETS["reference"], **SETTINGS, "batch_size": batch_size, "kvstore": kvstore}
    )
    set_seed(config.seed)
    # Every few samples: the file is sorted by class.
    x, y = data.x_train[::STRIDE], data.y_train[::STRIDE]
    train_set = TripletDataset(x, y, seed=config.seed)
    net = build_model("mlp", ctx=[mx.cpu()])
    return TripletTrainer(net, train_set, config, [mx.cpu()])


def main(out_dir, kvstore):
    import numpy as np

    trainer = make_trainer(kvstore, SETTINGS["batch_size"])
    trainer.fit()
    params = [p.data().asnumpy() for p in trainer.net.collect_params().values()]
    path = os.path.join(out_dir, f"worker-{trainer.rank}.npz")
    np.savez(path, *params, num_batches=trainer.num_batches, workers=trainer.num_workers)
    print(f"saved {path}", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        # A failed worker must not wait in ps-lite's exit barrier for the others.
        os._exit(1)
