"""Where samples come from and how they are grouped: dataset sources (IDX, npz, picture
folders, RecordIO), decoding and streaming of pictures, balanced triplets, P x K samplers
and augmentation."""

from typing import TYPE_CHECKING

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".datasets": ("DataBundle", "load_dataset"),
        ".idx": ("read_idx", "write_idx"),
        ".decoding": ("ImageOptions", "MAX_PIXELS", "check_pixels", "picture_size"),
        ".folder": ("scan_folder",),
        ".recordio": ("pack_folder",),
        ".streaming": ("LazyImages",),
        ".mapped": ("MappedSamples",),
        ".triplets": ("TripletDataset", "create_pairs", "encode_labels"),
        ".samplers": ("PKBatchSampler",),
        ".augment": ("AUGMENTATIONS", "make_augmenter"),
        ".validation": ("ValidationSplit", "carve_validation"),
    },
)

if TYPE_CHECKING:
    from .augment import AUGMENTATIONS, make_augmenter
    from .datasets import DataBundle, load_dataset
    from .decoding import MAX_PIXELS, ImageOptions, check_pixels, picture_size
    from .folder import scan_folder
    from .idx import read_idx, write_idx
    from .mapped import MappedSamples
    from .recordio import pack_folder
    from .samplers import PKBatchSampler
    from .streaming import LazyImages
    from .triplets import TripletDataset, create_pairs, encode_labels
    from .validation import ValidationSplit, carve_validation
