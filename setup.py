"""Install gluon-triplet.

MXNet comes in several wheels that all install the module ``mxnet``; installing two of
them breaks both. The CPU wheel is the default; pick another with the environment
variable ``GLUON_TRIPLET_MXNET``, e.g.::

    GLUON_TRIPLET_MXNET="mxnet-cu112==1.9.1" pip install .
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "gluon_triplet", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

MXNET = os.environ.get("GLUON_TRIPLET_MXNET", "mxnet==1.9.1")

# Using a trained model: nearest-neighbour search (faiss), an export served without
# MXNet (onnx, onnxruntime) and `gluon-triplet serve` (Starlette, uvicorn, python-multipart).
# Imported lazily; these versions resolve together with numpy<1.24 and protobuf<3.21
# (checked with pip on Python 3.11).
SERVE = [
    "faiss-cpu==1.8.0.post1",
    "onnx==1.17.0",
    'onnxruntime==1.26.0; python_version >= "3.10"',
    'onnxruntime; python_version < "3.10"',
    'starlette==1.10.0; python_version >= "3.10"',
    'starlette; python_version < "3.10"',
    'uvicorn==0.55.0; python_version >= "3.10"',
    'uvicorn; python_version < "3.10"',
    'python-multipart==0.0.34; python_version >= "3.10"',
    'python-multipart; python_version < "3.10"',
]

# The tests of `serve`: Starlette's TestClient (httpx2) and the page in headless Chromium
# driven by Selenium through Debian's chromedriver (never a downloaded browser or driver).
SERVE_TEST = [
    'httpx2==2.17.0; python_version >= "3.10"',
    'httpx; python_version < "3.10"',
    'selenium==4.51.0; python_version >= "3.10"',
    'selenium; python_version < "3.10"',
]

# Streamed pictures: OpenCV decodes plain PNGs in a third of Pillow's CPU, to the same
# pixels (gluon_triplet/fastpng.py). Imported lazily; 4.11 is the last release that
# resolves with numpy<1.24 (4.12 needs numpy 2).
FAST = ["opencv-python-headless==4.11.0.86"]

setup(
    name="gluon-triplet",
    version=read_version(),
    description="Learn embeddings with triplet loss in MXNet Gluon, visualised with mxboard",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(exclude=("tests", "bench")),
    # the page of `gluon-triplet serve`
    package_data={"gluon_triplet.search": ["static/*.html", "static/*.js", "static/*.css"]},
    python_requires=">=3.8,<3.12",
    install_requires=[
        MXNET,
        # MXNet 1.9.1 uses numpy aliases removed in numpy 1.24.
        "numpy>=1.17,<1.24",
        "mxboard==0.1.0",
        # mxboard 0.1.0's generated protobuf modules fail to import on protobuf>=3.21.
        "protobuf>=3.19,<3.21",
        "tensorboard>=2.9",
        "mlxtend>=0.19",
        "tqdm>=4.40",
        "pillow>=8",
        # the PNG pictures of a run (plots.py); imported lazily
        "matplotlib>=3.5",
        "scikit-learn>=1.0",
        "threadpoolctl>=2",
    ],
    extras_require={
        "serve": SERVE,
        "fast": FAST,
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "ruff==0.17.6",
            "mypy==1.14.1",
            *SERVE,
            *FAST,
            *SERVE_TEST,
        ],
    },
    entry_points={"console_scripts": ["gluon-triplet=gluon_triplet.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
