"""Plugin bases: reward heads, augmenters and selectors.

Each base has one or two abstract methods; the base class does the rest (batching, pools,
provenance, saving the config). Third-party packages subclass these and register them under the
entry-point groups ``marsctl.heads``, ``marsctl.augmenters`` and ``marsctl.selectors``.

One module per base: ``head`` (``Head``), ``selector`` (``Selector`` and how a selection's ``pick``
fills a budget), ``augmenter`` (``Augmenter`` and its pool). The helpers a plugin uses are re-exported
here from the core: ``PairRewards`` and ``mean_over_members`` (``marsctl.scorefields``), ``derive_seed``
and ``sigmoid`` (``marsctl.stats``).
"""

from marsctl.plugin.augmenter import Augmenter, PoolConfig
from marsctl.plugin.head import Head
from marsctl.plugin.selector import PICKS, Selector, keep_picked, pick_needs_model, pool_request
from marsctl.scorefields import PairRewards, mean_over_members  # re-exported: part of the plugin interface
from marsctl.stats import derive_seed, sigmoid  # re-exported: part of the plugin interface

__all__ = ["PICKS", "Augmenter", "Head", "PairRewards", "PoolConfig", "Selector", "derive_seed", "keep_picked",
           "mean_over_members", "pick_needs_model", "pool_request", "sigmoid"]
