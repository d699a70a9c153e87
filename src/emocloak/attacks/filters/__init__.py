"""Instagram-style filters (pilgram's 26) as batched, differentiable torch ops, for the filter cloak."""

from emocloak.attacks.filters.instagram import FILTER_NAMES, FILTERS, apply_chain, apply_gene

__all__ = ["FILTERS", "FILTER_NAMES", "apply_chain", "apply_gene"]
