"""Transfer methods: when does the bound help choose between linear probing and fine-tuning?

:func:`adapt` turns a frozen :class:`~rtcore.models.Backbone` and a task into an :class:`Adapted`
model (a frozen backbone plus a fitted linear head) by one of :data:`TRANSFER_METHODS`:

* ``lp``: the base backbone unchanged and a linear probe (:func:`rtcore.cached.fit_probe`);
* ``ft``: fine-tune every parameter of g with a fresh zero-initialised head;
* ``lp-ft``: fit the probe, then fine-tune everything starting from it;
* ``ft-last-k``: fine-tune the last k blocks only (:mod:`.blocks` defines blocks), fresh head.

Fine-tuning follows a small deterministic :class:`FineTuneRecipe` (:mod:`.finetune`); each
adapted model is content-addressed and stored with a JSON card under the cache dir
(:mod:`.store`), and resumes from its last finished epoch if it was killed.
:mod:`rtcore.runs.compare` evaluates adapted models and compares the methods.
"""

from .adaptation import Adapted, AdaptInfo, adapt
from .blocks import Block, network_blocks
from .recipe import METHOD_DESCRIPTIONS, TRANSFER_METHODS, FineTuneRecipe, method_label

__all__ = [
    "METHOD_DESCRIPTIONS", "TRANSFER_METHODS", "AdaptInfo", "Adapted", "Block", "FineTuneRecipe", "adapt",
    "method_label", "network_blocks",
]
