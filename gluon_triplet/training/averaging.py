"""Weight averaging: an exponential moving average of a net's parameters (Polyak
averaging, as timm's ``ModelEma``), updated after each optimizer step and swapped into the
net for evaluation and saving."""

from __future__ import annotations

from typing import List, Optional

from mxnet import gluon, nd

__all__ = ["WeightAverage", "average_decay"]

# Weights per multi_sgd_update call (MXNet's kernel takes at most 60).
_CHUNK = 50


def average_decay(decay: float, updates: int) -> float:
    """The decay of the ``updates``-th update: ``min(decay, (1 + updates) / (10 + updates))``
    (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``).

    Parameters
    ----------
    decay : float
        In [0, 1).
    updates : int
        1 for the first update.
    """
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """Exponential moving average of every parameter of ``params`` (BatchNorm's running
    statistics included), on every context the parameters live on.

    The first :meth:`update` copies the weights (the net's parameters may be initialised
    only by the first forward pass); after the ``n``-th (n >= 2) each average is
    ``a = d_n * a + (1 - d_n) * w`` with ``d_n = average_decay(decay, n)``. Until the
    first update the average is the net itself.

    Parameters
    ----------
    params : gluon.ParameterDict
        ``net.collect_params()``; deferred initialisation may still be pending.
    decay : float
        In (0, 1).
    """

    def __init__(self, params: gluon.ParameterDict, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self._params = list(params.values())
        self._averages: Optional[List[List[nd.NDArray]]] = None
        # The training weights while the averages are in the net (see swap_in).
        self._training: Optional[List[List[nd.NDArray]]] = None

    @property
    def swapped_in(self) -> bool:
        """True while the net holds the averages."""
        return self._training is not None

    def update(self) -> None:
        """Fold the net's current weights into the averages (after an optimizer step)."""
        if self._training is not None:
            raise RuntimeError("update() while the averages are swapped in")
        self.updates += 1
        if self._averages is None:
            self._averages = self._copy_of_net()
            return
        decay = average_decay(self.decay, self.updates)
        # SGD's update (1 - lr * wd) * a - lr * rescale_grad * w with lr 1, wd 1 - d and
        # rescale_grad -(1 - d) is d * a + (1 - d) * w: one fused, in-place operation for
        # up to _CHUNK parameters of a context, no temporary array.
        for c in range(len(self._averages[0])):
            averages = [a[c] for a in self._averages]
            weights = [p.list_data()[c] for p in self._params]
            for start in range(0, len(averages), _CHUNK):
                outs = averages[start : start + _CHUNK]
                pairs = [x for pair in zip(outs, weights[start : start + _CHUNK]) for x in pair]
                nd.multi_sgd_update(
                    *pairs,
                    lrs=[1.0] * len(outs),
                    wds=[1.0 - decay] * len(outs),
                    rescale_grad=-(1.0 - decay),
                    num_weights=len(outs),
                    out=outs,
                )

    def swap_in(self) -> None:
        """Put the averages into the net, keeping the training weights aside."""
        if self._training is not None or self._averages is None:
            return
        self._training = self._copy_of_net()
        self._into_net(self._averages)

    def swap_out(self) -> None:
        """Put the training weights back into the net."""
        if self._training is None:
            return
        self._into_net(self._training)
        self._training = None

    def training_arrays(self) -> List[nd.NDArray]:
        """The training weights, one array per parameter (first context), in
        ``params`` order: the net's own while not swapped in."""
        source = self._training or [p.list_data() for p in self._params]
        return [arrays[0] for arrays in source]

    def restore(self, training: List[nd.NDArray], updates: int) -> None:
        """Resume: the net's current weights become the averages, ``training`` (in
        :meth:`training_arrays` order) goes into the net.

        Raises
        ------
        ValueError
            ``training`` does not match the parameters' number or shapes.
        """
        if len(training) != len(self._params):
            raise ValueError(f"{len(training)} training arrays for {len(self._params)} parameters")
        for value, param in zip(training, self._params):
            if value.shape != param.shape:
                raise ValueError(
                    f"training array of shape {value.shape} for parameter {param.name} "
                    f"of shape {param.shape}"
                )
        self._training = None
        self._averages = self._copy_of_net()
        self._into_net(
            [[value] * len(param.list_data()) for value, param in zip(training, self._params)]
        )
        self.updates = int(updates)

    def snapshot(self):
        """A copy of the averages and the update count, for :meth:`rewind`."""
        averages = self._averages
        copied = None if averages is None else [[a.copy() for a in c] for c in averages]
        return copied, self.updates

    def rewind(self, snapshot) -> None:
        """Go back to a :meth:`snapshot` (the net must hold its training weights)."""
        averages, updates = snapshot
        self._averages = None if averages is None else [[a.copy() for a in c] for c in averages]
        self.updates = int(updates)

    def _copy_of_net(self) -> List[List[nd.NDArray]]:
        """The net's weights, copied: per parameter, one array per context."""
        return [[w.copy() for w in p.list_data()] for p in self._params]

    def _into_net(self, values: List[List[nd.NDArray]]) -> None:
        """Write ``values`` (per parameter, one array per context) into the net."""
        for arrays, param in zip(values, self._params):
            for value, weight in zip(arrays, param.list_data()):
                value.as_in_context(weight.context).copyto(weight)
