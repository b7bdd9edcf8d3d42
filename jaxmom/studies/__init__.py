"""Studies built on jaxmom, apart from the optimizer library (``import jaxmom`` does not load them).

- :mod:`jaxmom.studies.mnist`: the seed tutorials' MNIST optimizer study (registry and config, data,
  model, training, checkpoints, sweep, report, command line).
- :mod:`jaxmom.studies.tutorials`: the computations behind the seed tutorials' pictures.

They need the ``study`` extra: ``pip install "jaxmom[study]"``.
"""
