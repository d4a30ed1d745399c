"""The compiled kernels (Cython, built with the machine's C compiler by `pip install`).
Everything else about the package is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension("models._waybills", ["models/_waybills.pyx"])],
    compiler_directives={"language_level": 3},
))
