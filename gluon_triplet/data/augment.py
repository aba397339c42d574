"""Training-time augmentation of image batches: :class:`Augmenter`, a ``HybridBlock`` the
training step runs between gathering a batch and the net (MXNet's RNG, seeded per epoch;
never used by evaluation or embedding).

``digits``
    Small random shifts (up to 10% of the side) and rotations (up to 10 degrees), never
    flips: a mirrored 2 or 7 is not a digit.
``objects``
    Horizontal flip and small random shifts (up to 10% of the side), nothing else: for
    centred objects whose mirror image is the same kind of thing (garments, products).
``photos``
    Random resized crop (35-100% of the area, aspect 3/4-4/3), horizontal flip, and colour
    jitter (brightness, contrast and saturation each scaled by 0.6-1.4).

Each is one affine resampling (``GridGenerator`` + ``BilinearSampler``) per image, plus
per-image colour factors for ``photos``.
"""

from __future__ import annotations

import math

from mxnet import gluon

__all__ = ["AUGMENTATIONS", "Augmenter", "make_augmenter"]

AUGMENTATIONS = ("none", "digits", "objects", "photos")

_SHIFT = 0.1  # digits and objects: fraction of the side
_ROTATE = math.radians(10.0)
_AREA = (0.35, 1.0)  # photos: random resized crop
_ASPECT = (3 / 4, 4 / 3)
_JITTER = 0.4  # photos: brightness / contrast / saturation factors in 1 +- this


class Augmenter(gluon.HybridBlock):
    """Random augmentation of a batch of images: ``(B, C, H, W) -> (B, C, H, W)``.

    Parameters
    ----------
    kind : {"digits", "objects", "photos"}
    sample_shape : (H, W) or (C, H, W)
        Shape of one sample; ``(H, W)`` batches ``(B, H, W)`` get their channel axis
        added and removed here.

    The output has the input's shape; pixels stay in the input's range for ``digits`` and
    are clipped to [0, 1] for ``photos``.
    """

    def __init__(self, kind: str, sample_shape, **kwargs):
        super().__init__(**kwargs)
        if kind not in AUGMENTATIONS[1:]:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {kind!r}")
        shape = tuple(int(s) for s in sample_shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"augmentation needs (H, W) or (C, H, W) samples, not {shape}")
        self.kind = kind
        self.sample_ndim = len(shape)
        self.size = shape[-2:]  # the sampling grid's shape is fixed in the graph

    def hybrid_forward(self, F, x):
        if self.sample_ndim == 2:
            x = F.expand_dims(x, axis=1)
        # One row of random numbers per image, shaped from the batch itself so the graph
        # needs no batch size.
        row = F.slice_axis(F.reshape(x, shape=(0, -1)), axis=1, begin=0, end=1)  # (B, 1)

        def uniform(lo, hi):
            return F.random.uniform_like(row, low=lo, high=hi)

        def shift():
            return uniform(-2 * _SHIFT, 2 * _SHIFT)

        zero = F.zeros_like(row)
        if self.kind == "digits":
            angle = uniform(-_ROTATE, _ROTATE)
            cos, sin = F.cos(angle), F.sin(angle)
            # Sampling grid in [-1, 1] coordinates: source = A @ (x_out, y_out, 1).
            theta = F.concat(cos, -sin, shift(), sin, cos, shift(), dim=1)
        elif self.kind == "objects":
            flip = F.sign(uniform(-1.0, 1.0))
            one = F.ones_like(row)
            theta = F.concat(flip, zero, shift(), zero, one, shift(), dim=1)
        else:
            area = uniform(*_AREA)
            log_aspect = uniform(math.log(_ASPECT[0]), math.log(_ASPECT[1]))
            aspect = F.exp(log_aspect)
            sx = F.minimum(F.sqrt(area * aspect), F.ones_like(row))
            sy = F.minimum(F.sqrt(area / aspect), F.ones_like(row))
            flip = F.sign(uniform(-1.0, 1.0))
            tx, ty = (1 - sx) * uniform(-1.0, 1.0), (1 - sy) * uniform(-1.0, 1.0)
            theta = F.concat(sx * flip, zero, tx, zero, sy, ty, dim=1)
        grid = F.GridGenerator(theta, transform_type="affine", target_shape=self.size)
        out = F.BilinearSampler(x, grid)
        if self.kind == "photos":
            out = self._jitter(F, out, uniform)
        if self.sample_ndim == 2:
            out = F.squeeze(out, axis=1)
        return out

    @staticmethod
    def _jitter(F, x, uniform):
        def factor():
            return F.reshape(uniform(1 - _JITTER, 1 + _JITTER), shape=(-1, 1, 1, 1))

        grey = F.mean(x, axis=1, keepdims=True)  # (B, 1, H, W)
        x = F.broadcast_add(F.broadcast_mul(F.broadcast_sub(x, grey), factor()), grey)
        mean = F.mean(grey, axis=(1, 2, 3), keepdims=True)
        x = F.broadcast_add(F.broadcast_mul(F.broadcast_sub(x, mean), factor()), mean)
        x = F.broadcast_mul(x, factor())
        return F.clip(x, 0.0, 1.0)


def make_augmenter(kind: str, sample_shape):
    """The :class:`Augmenter` for ``config.augment`` and one sample's shape, or None.

    Raises
    ------
    ValueError
        An unknown kind, or augmentation asked for samples that are not images.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {kind!r}")
    if kind == "none":
        return None
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 8:
        raise ValueError(
            f"--augment {kind} needs image samples (H, W) or (C, H, W); the data's samples are "
            f"shaped {shape}"
        )
    aug = Augmenter(kind, shape)
    aug.initialize()
    return aug
