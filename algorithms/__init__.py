"""Algorithms: the common interface (`base`), shared networks (`nets`) and one module each.

`algorithms.base.get(name)` imports an algorithm's module on first use, so naming or
validating algorithms does not pay for importing JAX.
"""
