"""One pure normalizer per provider; :mod:`wacanon.providers.registry` maps names to them."""
