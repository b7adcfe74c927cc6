"""Build script: metadata lives in pyproject.toml.

The compiled extension ``mdn_fast._C`` is added by the C++/CUDA issue; until then this is a pure-Python
install (the package works on its reference backend without ``_C``).
"""
from setuptools import setup

setup()
