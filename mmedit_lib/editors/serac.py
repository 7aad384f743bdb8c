"""SERAC (Mitchell et al., 2022): an edit memory, a scope classifier, and a counterfactual model.

    >>> prepared = prepare_serac(bb, train, SERACHparams())   # trains the classifier and the counterfactual model
    ... # doctest: +SKIP
    >>> edit = apply_serac(bb, request, SERACHparams(), prepared)                    # doctest: +SKIP
    >>> bb.greedy([probe])   # in scope: the counterfactual model, given the edit; else the untouched backbone
    ... # doctest: +SKIP

- **Scope classifier** g(z_e, x): an MLP over the all-MiniLM-L6-v2 embeddings of the edit's question and the
  query's question ([e_z, e_x, e_z*e_x, |e_z-e_x|]), trained with binary cross-entropy on the train split:
  in scope = the edit question and its rephrase; out of scope = the text locality question, the multimodal
  locality question and another record's question. Like SERAC's (and MMEdit's) classifier it reads text only:
  a query about another image with the same question is in scope for it — which is what MMEdit's near-zero
  M-Locality for SERAC reflects.
- **Counterfactual model** h(z_e, x), fine-tuned on the train split to answer in-scope inputs given the edit
  ("new fact : <q> <a> prompt : <x>", the query's image kept). Two readings (`counterfactual`):
  - `"copy"` (default; EasyEdit's SERAC_MULTI on MiniGPT-4, whose small_name is Vicuna itself): the backbone's
    architecture, its language model's `cf_layers` fine-tuned (empty: the whole language model; EasyEdit trains
    the parameters of layer 31, `cf_layers=[-1]`). Everything it does not train is *shared* with the backbone,
    not copied, so only the trained layers cost memory.
  - `"small"` (EasyEdit's SERAC_MULTI on BLIP-2, whose small_name is opt-125m): a separate small language model
    (`small_model`: a local folder in the Hugging Face layout, or `random:<name>` for the shipped architecture
    `backbones/published/language_models/<name>.json` with random weights, as the dry run uses) reading the
    backbone's frozen ViT and Q-Former through a new projection (nn.Linear from the Q-Former width to the small
    model's), both trained whole. It must use the backbone's tokenizer (OPT-125m and OPT-2.7b share GPT-2's BPE).
  SERAC itself (Mitchell et al., 2022) uses a separate smaller model; on the tiny backbones a copy is already small.
- **Memory**: edits are appended; a query goes to the counterfactual model with the edit of highest scope
  probability when it is at least `threshold`, else to the backbone. Sequential edits share one memory.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
from pathlib import Path

import torch

from ..backbones.backbone import Backbone, Query
from .base import EditRequest, frozen, records_of
from .float32 import Float32Adam
from .ike import EMBED_DIM, embed
from .routing import RouterEdit, fact_context, in_context
from .spec import FP16, FP32, EditorSpec, Memory, prepare_field


@dataclasses.dataclass
class SERACHparams:
    threshold: float = 0.5  # scope probability at which the counterfactual model answers
    classifier_hidden: int = prepare_field(256)
    classifier_epochs: int = prepare_field(5)
    classifier_lr: float = prepare_field(1e-3)
    cf_steps: int = prepare_field(300)  # counterfactual-model fine-tuning steps
    cf_batch: int = prepare_field(8)
    cf_lr: float = prepare_field(1e-4)
    # "copy": the backbone with `cf_layers` trained; "small": EasyEdit's BLIP-2 reading
    counterfactual: str = prepare_field("copy")
    cf_layers: tuple[int, ...] = prepare_field(())  # "copy": the LM layers trained (empty: the whole language model)
    # "small": a local folder, or random:<published language model> ("": $MMEDIT_SERAC_SMALL)
    small_model: str = prepare_field("")
    seed: int = prepare_field(0)

    def check(self) -> None:
        """Refuses an unknown `counterfactual`, or a "small" one without its model; resolves $MMEDIT_SERAC_SMALL."""
        if self.counterfactual not in COUNTERFACTUALS:
            raise ValueError(f"serac.counterfactual is one of {COUNTERFACTUALS}; got {self.counterfactual!r}")
        if self.counterfactual == "small" and not self.small_model:
            self.small_model = os.environ.get("MMEDIT_SERAC_SMALL", "")
            if not self.small_model:
                raise ValueError("serac.counterfactual='small' needs small_model (or $MMEDIT_SERAC_SMALL): a local "
                                 "folder holding the small language model (EasyEdit's small_name: facebook/opt-125m "
                                 "for BLIP-2 OPT), or random:opt-125m for its architecture with random weights")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in self.cf_layers):
            raise ValueError(f"serac.cf_layers takes layer indices; got {self.cf_layers!r}")
        if self.counterfactual == "copy" and self.small_model:
            raise ValueError("serac.small_model is read only with counterfactual='small'")


COUNTERFACTUALS = ("copy", "small")
SMALL_DIR = Path(__file__).resolve().parents[1] / "backbones" / "published" / "language_models"
# the small counterfactual language model EasyEdit's SERAC pairs with a backbone (hparams/TRAINING/SERAC/*.yaml)
EASYEDIT_SMALL = {"blip2-opt-2.7b": "opt-125m"}


def architecture_only(backbone: str) -> dict:
    """The override that builds the counterfactual model `hparams/<backbone>.yaml` names with random weights, for
    what needs only its architecture (the dry run, whose backbone is random too; memory counts): empty unless the
    file says counterfactual "small".

        >>> architecture_only("blip2-opt-2.7b"), architecture_only("tiny-blip2-opt")
        ({'small_model': 'random:opt-125m'}, {})
    """
    from .registry import backbone_hparams
    if backbone_hparams(backbone).get("serac", {}).get("counterfactual") != "small":
        return {}
    if backbone not in EASYEDIT_SMALL:
        raise ValueError(f"hparams/{backbone}.yaml: serac.counterfactual 'small' but no small architecture is "
                         f"shipped for {backbone} (EASYEDIT_SMALL)")
    return {"small_model": f"random:{EASYEDIT_SMALL[backbone]}"}


class ScopeClassifier(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4 * EMBED_DIM, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, edit: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Logits of "query is in the scope of edit", for broadcastable (..., 384) embeddings."""
        edit, query = torch.broadcast_tensors(edit, query)
        return self.net(torch.cat([edit, query, edit * query, (edit - query).abs()], -1)).squeeze(-1)


# ---- the counterfactual model --------------------------------------------------------------------------------
def shared_copy(model: torch.nn.Module, trained: set[str]) -> torch.nn.Module:
    """A copy of `model` whose parameters named in `trained` are its own (cloned) and every other parameter and
    buffer is the very tensor of `model` (shared: no memory, and never written by training the copy).

        >>> cf = shared_copy(bb.model, {"language_model.lm_head.weight"})        # doctest: +SKIP
    """
    memo = {id(t): t for name, t in model.named_parameters() if name not in trained}
    memo.update({id(t): t for _, t in model.named_buffers()})
    return copy.deepcopy(model, memo)


def trained_names(bb: Backbone, hp: SERACHparams) -> list[str]:
    """The parameters of `bb.model` a "copy" counterfactual trains: the language model's, or its `cf_layers`'."""
    names = [n for n, _ in bb.model.named_parameters() if bb.is_language_side(n)]
    if not hp.cf_layers:
        return names
    depth = bb.n_layers
    if any(not -depth <= i < depth for i in hp.cf_layers):
        raise ValueError(f"SERAC cf_layers {hp.cf_layers} out of range for {depth} decoder layers")
    layers = sorted({i % depth for i in hp.cf_layers})
    prefixes = tuple(f"{bb.site('layers')}.{i}." for i in layers)
    return [n for n in names if n.startswith(prefixes)]


def small_language_model(spec: str, dtype: torch.dtype, seed: int):
    """The small counterfactual language model: `random:<name>` (the shipped architecture, weights seeded) or a
    local folder (from_pretrained, nothing downloaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    if spec.startswith("random:"):
        path = SMALL_DIR / f"{spec.removeprefix('random:')}.json"
        if not path.is_file():
            known = ", ".join(f"random:{p.stem}" for p in sorted(SMALL_DIR.glob("*.json")))
            raise ValueError(f"SERAC small_model {spec!r}: no shipped architecture; known: {known}")
        values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
        config = AutoConfig.for_model(**values)
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=dtype)
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"SERAC small_model {spec!r}: no config.json there (a local Hugging Face folder, "
                                f"e.g. facebook/opt-125m, or random:opt-125m)")
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)


def small_parameters(spec: str, qformer_width: int) -> int:
    """Parameters of a "small" counterfactual model (counted on the meta device): the small language model and
    its new projection from the Q-Former's `qformer_width`."""
    with torch.device("meta"):
        lm = small_language_model(spec, torch.float16, 0)
    width = lm.config.hidden_size
    return sum(p.numel() for p in lm.parameters()) + qformer_width * width + width


def small_counterfactual(bb: Backbone, hp: SERACHparams) -> torch.nn.Module:
    """EasyEdit's BLIP-2 counterfactual: the backbone's ViT, query tokens and Q-Former (shared, frozen), a new
    projection and the small language model (trainable), as one Blip2ForConditionalGeneration."""
    from transformers import Blip2ForConditionalGeneration
    if bb.arch.model_class != "Blip2ForConditionalGeneration":
        raise ValueError(f"SERAC counterfactual='small' is EasyEdit's BLIP-2 construction (a small LM reading the "
                         f"Q-Former); {bb.name} is {bb.arch.name}: use counterfactual='copy' (with cf_layers)")
    lm = small_language_model(hp.small_model, bb.dtype, hp.seed)
    if lm.get_input_embeddings().num_embeddings < len(bb.tokenizer):  # as EasyEdit's add_padding grows it
        lm.resize_token_embeddings(len(bb.tokenizer), mean_resizing=False)
    config = copy.deepcopy(bb.model.config)
    config.text_config = lm.config
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    model.vision_model, model.qformer, model.query_tokens = bb.model.vision_model, bb.model.qformer, \
        bb.model.query_tokens
    torch.manual_seed(hp.seed)
    projection = torch.nn.Linear(bb.model.config.qformer_config.hidden_size, lm.config.hidden_size)
    model.language_projection = projection.to(device=bb.device, dtype=bb.dtype)
    model.language_model = lm.to(bb.device)
    return model.eval()


def counterfactual_model(bb: Backbone, hp: SERACHparams) -> tuple[torch.nn.Module, list[str]]:
    """(the counterfactual model before training, the names of its own parameters: those that train), its own
    parameters frozen; the shared ones are the backbone's, their flags untouched (`_train_counterfactual` freezes
    them only while it trains, under `base.frozen`)."""
    if hp.counterfactual == "small":
        model = small_counterfactual(bb, hp)
        names = [n for n, _ in model.named_parameters() if n.startswith(("language_model.", "language_projection."))]
    else:
        names = trained_names(bb, hp)
        model = shared_copy(bb.model, set(names))
    for name in names:
        model.get_parameter(name).requires_grad_(False)
    return model, names


def counterfactual_gib(bb: Backbone, hp: SERACHparams) -> float:
    """What training the counterfactual model adds at its peak (GiB): each trained weight in the model's dtype, its
    gradient, Adam's two float32 moments and a float32 master unless the model is float32 already."""
    if hp.counterfactual == "small":
        count = small_parameters(hp.small_model, bb.model.config.qformer_config.hidden_size)
    else:
        names = set(trained_names(bb, hp))
        count = sum(p.numel() for n, p in bb.model.named_parameters() if n in names)
    size = torch.finfo(bb.dtype).bits // 8
    return count * (2 * size + 8 + (0 if bb.dtype == torch.float32 else 4)) / 2 ** 30


class SERACPrepared:
    """The trained classifier and counterfactual weights (saved); the counterfactual backbone (built on use)."""

    def __init__(self, classifier: dict, cf_weights: dict, hidden: int, hp: SERACHparams | None = None):
        self.classifier_state, self.cf_weights, self.hidden = classifier, cf_weights, hidden
        self.hp = hp  # how the counterfactual model is built (counterfactual, cf_layers, small_model, seed)
        self._runtime = {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_runtime"}

    def __setstate__(self, state):
        self.__dict__.update({"hp": None, **state})
        self._runtime = {}

    def classifier(self) -> ScopeClassifier:
        if "classifier" not in self._runtime:
            clf = ScopeClassifier(self.hidden)
            clf.load_state_dict(self.classifier_state)
            self._runtime["classifier"] = clf.eval().requires_grad_(False)
        return self._runtime["classifier"]

    def counterfactual(self, bb: Backbone) -> Backbone:
        key = ("cf", id(bb))
        if key not in self._runtime:
            model, names = counterfactual_model(bb, self.hp or SERACHparams())
            if set(names) != set(self.cf_weights):
                raise ValueError("SERAC: the prepared counterfactual weights do not match the model they are loaded "
                                 "into (another backbone or counterfactual setting)")
            with torch.no_grad():
                for name, value in self.cf_weights.items():
                    model.get_parameter(name).copy_(value)
            self._runtime[key] = bb.like(model, f"{bb.name}/serac-counterfactual")
        return self._runtime[key]

    def embedding(self, text: str) -> torch.Tensor:
        cache = self._runtime.setdefault("embeddings", {})
        if text not in cache:
            cache[text] = embed([text])[0]
        return cache[text]


def _train_classifier(records, hp: SERACHparams, rng: random.Random) -> dict:
    pairs = []
    for i, r in enumerate(records):
        other = records[rng.randrange(len(records))]
        pairs += [(r.src, r.src, 1.0), (r.src, r.rephrase, 1.0)]
        pairs += [(r.src, x, 0.0) for x in (r.loc, r.m_loc_q, other.src) if x != r.src]
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    vectors = embed(texts)
    index = {t: i for i, t in enumerate(texts)}
    edit = vectors[[index[a] for a, _, _ in pairs]]
    query = vectors[[index[b] for _, b, _ in pairs]]
    labels = torch.tensor([y for _, _, y in pairs])
    clf = ScopeClassifier(hp.classifier_hidden)
    optimizer = torch.optim.Adam(clf.parameters(), lr=hp.classifier_lr)
    generator = torch.Generator().manual_seed(hp.seed)
    for _ in range(hp.classifier_epochs):
        for batch in torch.randperm(len(pairs), generator=generator).split(256):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(clf(edit[batch], query[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return clf.state_dict()


def _train_counterfactual(bb: Backbone, train, hp: SERACHparams, rng: random.Random) -> dict:
    with frozen(bb.model):  # no gradient reaches the backbone's own (shared) weights; its flags come back as they were
        return _train_own(bb, train, hp, rng)


def _train_own(bb: Backbone, train, hp: SERACHparams, rng: random.Random) -> dict:
    model, names = counterfactual_model(bb, hp)
    params = {name: model.get_parameter(name) for name in names}
    for p in params.values():
        p.requires_grad_(True)
    cf = bb.like(model, bb.name)
    optimizer = Float32Adam(params.values(), lr=hp.cf_lr)
    for _ in range(hp.cf_steps):
        queries = []
        for i in rng.sample(range(len(train)), min(hp.cf_batch, len(train))):
            case = train[i]
            context = fact_context(bb, case.request.query)
            queries.append(in_context(bb, case.probes[rng.choice(["rel", "t_gen", "m_gen"])], context))
        optimizer.step_on(cf.loss(queries))
    return {name: p.detach().clone() for name, p in params.items()}


def prepare_serac(bb: Backbone, train, hp: SERACHparams) -> SERACPrepared:
    rng = random.Random(f"serac-{hp.seed}")
    torch.manual_seed(hp.seed)
    classifier = _train_classifier(records_of(train), hp, rng)
    return SERACPrepared(classifier, _train_counterfactual(bb, train, hp, rng), hp.classifier_hidden, hp)


class SERACRouter:
    def __init__(self, bb: Backbone, prepared: SERACPrepared, memory: tuple, threshold: float):
        self.bb, self.prepared, self.memory, self.threshold = bb, prepared, memory, threshold

    def scope(self, query: Query) -> tuple[float, int]:
        """(highest scope probability over the memory, index of that edit)."""
        edits = torch.stack([self.prepared.embedding(self.bb.question_of(m.prompt)) for m in self.memory])
        x = self.prepared.embedding(self.bb.question_of(query.prompt))
        with torch.no_grad():
            probs = torch.sigmoid(self.prepared.classifier()(edits, x[None]))
        best = int(probs.argmax())
        return float(probs[best]), best

    def route(self, queries: list[Query]) -> list[tuple[Backbone, Query]]:
        cf = self.prepared.counterfactual(self.bb)
        out = []
        for q in queries:
            prob, best = self.scope(q)
            out.append((cf, in_context(self.bb, q, fact_context(self.bb, self.memory[best])))
                       if prob >= self.threshold else (self.bb, q))
        return out


def apply_serac(bb: Backbone, request: EditRequest, hp: SERACHparams, prepared: SERACPrepared) -> RouterEdit:
    previous = bb.router
    memory = previous.memory if isinstance(previous, SERACRouter) and previous.prepared is prepared else ()
    if previous is not None and not memory:
        raise RuntimeError("SERAC cannot stack on another routing edit")
    return RouterEdit(bb, SERACRouter(bb, prepared, memory + (request.query,), hp.threshold))


def memory(s, hp: SERACHparams) -> Memory:
    """An edit keeps its text; prepare keeps the counterfactual model's own weights (what it does not train is the
    backbone's, shared) and the scope classifier."""
    if hp.counterfactual == "small":
        counterfactual = small_parameters(hp.small_model, s.bridge_hidden)
    else:
        counterfactual = len(set(hp.cf_layers)) * s.layer if hp.cf_layers else s.language
    return Memory(0, 0, counterfactual * FP16 + 4 * EMBED_DIM * hp.classifier_hidden * FP32)


SPEC = EditorSpec("serac", SERACHparams, apply_serac, prepare_serac, label="SERAC", memory=memory,
                  quick={"cf_steps": 2, "classifier_epochs": 1}, smoke={"cf_steps": 10, "classifier_epochs": 2},
                  architecture_only=architecture_only, prepare_gib=counterfactual_gib,
                  summary="SERAC: edit memory, scope classifier, counterfactual model")
