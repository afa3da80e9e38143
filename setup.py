"""Build hook for the one optional C extension (everything else is in pyproject.toml).

``gateway.media._fastrtp`` is the RTP relay's hot path.  It is optional: with no C compiler the install
still succeeds and the gateway runs the same relay in pure Python (its log says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("gateway.media._fastrtp", ["gateway/media/_fastrtp.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"]),
    ],
)
