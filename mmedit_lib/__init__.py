"""mmedit: multimodal knowledge editing, reproduced on an embedded visual world.

    >>> import mmedit_lib
    >>> mmedit_lib.__version__
    '0.1.0'

Importing the package forbids downloads (HF_HUB_OFFLINE=1): every model and dataset loads from local folders.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
