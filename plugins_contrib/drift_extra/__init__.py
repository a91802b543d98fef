"""Extra drift metrics: ``chi_square`` (categorical), ``jensen_shannon`` (both kinds) and
``wasserstein`` (numerical). Pure numpy at run time, like the built-in ``psi`` and ``ks``."""
