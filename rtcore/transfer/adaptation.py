""":func:`adapt`: one transfer method applied to a backbone and a task, cached as a backbone in its own right."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .._io import tensor_digest
from ..attacks import ProgressFn
from ..cache import ResultCache
from ..data import Task
from ..errors import CheckpointError
from ..models import Backbone, load_state_dict_into
from ..numerics import numerics_tag, positional_batch, with_fixed_threads
from ..probes import LinearProbe, list_probes
from ..cached import fit_probe
from ..validation import check_seed
from .blocks import count_params, feature_param_names, network_blocks, trainable_names, weight_distances
from .finetune import feature_fn, finetune
from .recipe import HEAD_INIT, USES_PROBE, FineTuneRecipe, check_k, check_method, method_label
from .store import AdaptedStore, StoredModel



@dataclass(frozen=True)
class AdaptInfo:
    """What an adaptation did. Distances are L2 norms (float64) of fine-tuned minus pretrained
    parameters of g: ``weight_distance`` over all of them, ``block_distance`` per block (see
    :mod:`rtcore.transfer.blocks`); ``head_distance`` is the head's distance from its initial value.
    ``params_trained``/``params_frozen`` count the parameters of g (the upstream classifier,
    unused by g, in neither); ``head_params`` those of the linear head. ``seconds``: wall time of
    the adaptation when it was computed (a cached model keeps its original time, see ``from_cache``)."""

    method: str
    label: str
    k: int | None
    task: str
    base: str
    base_fingerprint: str
    probe: str | None
    recipe: dict[str, Any] | None
    seed: int
    epochs: int
    seconds: float
    weight_distance: float
    block_distance: dict[str, float]
    head_distance: float
    params_trained: int
    params_frozen: int
    head_params: int
    blocks_trained: tuple[str, ...]
    head_init: str | None
    head_init_digest: str | None
    final_loss: float | None = None
    key: str | None = None
    from_cache: bool = False
    resumed_from_epoch: int | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks_trained"] = list(self.blocks_trained)
        return d


@dataclass(frozen=True)
class Adapted:
    """An adapted model: ``backbone`` (frozen, eval mode, preprocessing as the base) and its fitted
    linear ``head`` (``weight_``, ``bias_`` in raw feature space), usable by :mod:`rtcore.bounds`,
    :class:`~rtcore.probes.ProbedModel` and the cached pipeline steps; ``info`` says what was done."""

    backbone: Backbone
    head: LinearProbe
    info: AdaptInfo = field(repr=False)


_CARD_ONLY = ("from_cache", "resumed_from_epoch", "path")


def _check_args(g: object, task: object, method: str, k: object, probe: object, seed: object) -> tuple[int, int]:
    if not isinstance(g, Backbone):
        raise ValueError(f"g must be a rtcore Backbone, got {type(g).__name__}; create one with "
                         f"rtcore.create_backbone(name) or rtcore.as_backbone(module)")
    if not isinstance(task, Task):
        raise ValueError(f"task must be a rtcore Task, got {type(task).__name__}; load one with rtcore.create_task(name)")
    if probe not in list_probes():
        raise ValueError(f"probe={probe!r} is unknown; use one of {list_probes()}")
    blocks = network_blocks(g.net)
    if method == "ft-last-k":
        k = check_k(k, len(blocks), g.name, [b.name for b in blocks])
    elif k != 1:
        raise ValueError(f"k={k!r} applies to method 'ft-last-k' only; drop k or use method='ft-last-k'")
    return int(k), check_seed(seed)  # type: ignore[arg-type]


def _backbone_from(g: Backbone, net: torch.nn.Module, label: str, task: Task, card: dict[str, Any]) -> Backbone:
    return Backbone(net, name=f"{g.name}+{label}@{task.name}", input_size=g.input_size,
                    mean=g.mean.flatten().tolist(), std=g.std.flatten().tolist(), features=feature_fn(g),
                    card=card, source=f"{g.name} adapted to {task.name} by {label}").to(g.device)


def _from_store(g: Backbone, task: Task, label: str, hit: StoredModel) -> Adapted:
    """The adapted model of a verified store entry (CheckpointError/TypeError if it does not fit)."""
    net = copy.deepcopy(g.net)
    load_state_dict_into(net, hit.state, str(hit.folder))
    card = hit.card
    fields = {f: card[f] for f in AdaptInfo.__dataclass_fields__ if f in card and f not in _CARD_ONLY}
    fields["blocks_trained"] = tuple(fields.get("blocks_trained", ()))
    info = AdaptInfo(**fields, from_cache=True, resumed_from_epoch=None, path=str(hit.folder))
    if hit.weight.shape[0] != task.num_classes:
        raise ValueError(f"the stored head has {hit.weight.shape[0]} classes, the task {task.num_classes}")
    return Adapted(_backbone_from(g, net, label, task, card), LinearProbe.from_weights(hit.weight, hit.bias), info)


def _linear_probe(g: Backbone, task: Task, cache: ResultCache, probe: str, params: Mapping[str, object]) -> LinearProbe:
    kw = dict(params)
    if probe != "logistic-std":
        kw.setdefault("C", "auto")
    return fit_probe(g, task, cache, probe, **kw)


@with_fixed_threads
def adapt(g: Backbone, task: Task, method: str, *, k: int = 1, probe: str = "logistic", seed: int = 0,
          cache: ResultCache, progress: ProgressFn | None = None, recipe: FineTuneRecipe | None = None,
          probe_params: Mapping[str, object] | None = None) -> Adapted:
    """Adapt ``g`` to ``task`` by ``method`` (one of :data:`TRANSFER_METHODS`).

    * ``lp``: ``g`` unchanged and the cached probe of kind ``probe`` (``probe_params`` go to it);
    * ``ft``: every parameter of g trainable, from g's weights, with a fresh zero-initialised head;
    * ``lp-ft``: the probe first, then every parameter of g fine-tuned with the head initialised
      from the probe (``info.head_init_digest`` is the probe's digest);
    * ``ft-last-k``: only the last ``k`` blocks (:func:`rtcore.transfer.blocks.network_blocks`)
      trainable, with a fresh zero-initialised head, as ``ft`` (so k = all blocks equals ``ft``).

    Fine-tuning follows ``recipe`` (default :class:`FineTuneRecipe`; its seed defaults to ``seed``;
    unused by ``lp``). The result is content-addressed (base fingerprint, method, k, recipe, seed,
    train-set digest, and the probe kind for methods that fit one), stored under the cache dir
    (:mod:`rtcore.transfer.store`) and returned without training on the next call; a killed
    fine-tune resumes from its last finished epoch. ``progress(f)`` gets the fraction done in [0, 1]
    after each batch and epoch; an exception it raises stops the run (the checkpoint stays).
    """
    method = check_method(method)
    k, seed = _check_args(g, task, method, k, probe, seed)
    report = progress or (lambda f: None)
    params = dict(probe_params or {})
    label = method_label(method, k)
    blocks = network_blocks(g.net)
    all_names = feature_param_names(g.net)
    base = {"task": task.name, "base": g.name, "base_fingerprint": g.fingerprint(), "seed": seed}
    t0 = time.perf_counter()
    report(0.0)
    if method == "lp":
        head = _linear_probe(g, task, cache, probe, params)
        info = AdaptInfo(method=method, label=label, k=None, probe=probe, recipe=None, epochs=0,
                         seconds=time.perf_counter() - t0, weight_distance=0.0,
                         block_distance={b.name: 0.0 for b in blocks} | {"total": 0.0}, head_distance=0.0,
                         params_trained=0, params_frozen=count_params(g.net, all_names),
                         head_params=head.weight_.numel() + head.bias_.numel(), blocks_trained=(), head_init=None,
                         head_init_digest=None, **base)
        report(1.0)
        return Adapted(g, head, info)

    rec = (recipe or FineTuneRecipe()).resolved(seed)
    uses_probe = USES_PROBE[method]
    key = cache.key("adapted", base=g.fingerprint(), numerics=numerics_tag(g.device, positional_batch(g)), method=method, k=k if method == "ft-last-k" else None,
                    recipe=rec.as_dict(), seed=seed, train=tensor_digest(task.x_train, task.y_train),
                    num_classes=task.num_classes, probe={"kind": probe, "params": params} if uses_probe else None)
    store = AdaptedStore(cache)
    hit = store.load_model(key)
    if hit is not None:
        try:
            cached = _from_store(g, task, label, hit)
        except (CheckpointError, TypeError, ValueError, KeyError) as e:  # a card or weights that do not fit
            store.reject_model(key, f"does not fit the base backbone or the card format: {e}")
        else:
            store.drop_checkpoint(key)  # a checkpoint left by a concurrent run of the same key
            report(1.0)
            return cached

    names = trainable_names(g.net, method, k)
    if HEAD_INIT[method] == "probe":
        probe_head = _linear_probe(g, task, cache, probe, params)
        w0, b0 = probe_head.weight_.clone(), probe_head.bias_.clone()
    else:
        with torch.no_grad():
            m = g(task.x_train[:1].to(g.device)).shape[1]
        w0, b0 = torch.zeros(task.num_classes, m), torch.zeros(task.num_classes)
    before = {n: p.detach().clone() for n, p in g.net.named_parameters()}
    setup_s = time.perf_counter() - t0  # the probe fit of lp-ft; training time comes from the checkpoints
    res = finetune(g, task, names, (w0, b0), rec, key=key, store=store, progress=report)
    dist = weight_distances(before, res.net)
    head_distance = float(torch.cat([(res.weight - w0).double().flatten(), (res.bias - b0).double()]).norm())
    trained = set(names)
    info = AdaptInfo(method=method, label=label, k=k if method == "ft-last-k" else None,
                     probe=probe if uses_probe else None, recipe=rec.as_dict(), epochs=res.epochs,
                     seconds=res.seconds + setup_s,
                     weight_distance=dist["total"], block_distance=dist, head_distance=head_distance,
                     params_trained=count_params(res.net, names),
                     params_frozen=count_params(res.net, [n for n in all_names if n not in trained]),
                     head_params=res.weight.numel() + res.bias.numel(),
                     blocks_trained=tuple(b.name for b in blocks if set(b.params) & trained),
                     head_init=HEAD_INIT[method], head_init_digest=tensor_digest(w0, b0), final_loss=res.final_loss,
                     key=key, **base)
    card = {**{f: v for f, v in info.as_dict().items() if f not in _CARD_ONLY}, "torch": torch.__version__,
            "task_train_digest": tensor_digest(task.x_train, task.y_train), "base_source": g.source}
    backbone = _backbone_from(g, res.net, label, task, card)
    card["fingerprint"] = backbone.fingerprint()
    folder = store.save_model(key, res.net.state_dict(), res.weight, res.bias, card)
    store.drop_checkpoint(key)
    info = replace(info, resumed_from_epoch=res.resumed_from_epoch, path=str(folder) if folder else None)
    report(1.0)
    return Adapted(backbone, LinearProbe.from_weights(res.weight, res.bias), info)
