"""The Backbone: a multimodal model (BLIP-2, LLaVA) with its tokenizer and image processor, and what editors need.

    >>> bb = load_backbone("tiny-blip2-opt")                                   # doctest: +SKIP
    >>> q = Query(image=img, prompt=bb.vqa_prompt("what color is the circle ?"), target="red")
    >>> bb.greedy([q])                                                        # doctest: +SKIP
    ['blue']
    >>> logits, target_ids = bb.target_logits([q])[0]                        # doctest: +SKIP

Inputs are `[<image>] * n_image_tokens + <s> + prompt + target` (the `blip2` prompt format; `minigpt4-chat`
wraps the image as MiniGPT-4's chat does, `llava-1.5` as LLaVA's USER/ASSISTANT turns: `prompt_format.py`); a
query without an image goes through the language model alone (the papers' T-Locality "removes the visual
module"). The image-token embeddings are replaced by the image features the architecture computes (BLIP-2's
projected Q-Former outputs, LLaVA's projected vision-tower patches: `architectures.py`) exactly as
`Blip2ForConditionalGeneration.forward` and `LlavaForConditionalGeneration.forward` do (tests check the logits
agree). Nothing here names a model class: the architecture adapter does.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib

import torch
from PIL import Image

from .architectures import Site, architecture_of
from .prompt_format import FORMATS, TINY_VQA_TEMPLATE, PromptFormat


@dataclasses.dataclass
class Query:
    """One model input: an image (PIL, a processed (3,H,W) tensor, or None), a prompt, and an optional target.

    `context` is text the model reads between `<s>` and the prompt (IKE's demonstrations, SERAC's edit fact); the
    logits `query_logits` returns skip it, so a query scores the same positions with or without a context.
    """
    image: Image.Image | torch.Tensor | None
    prompt: str
    target: str | None = None
    context: str = ""


@dataclasses.dataclass
class QueryLogits:
    """One query's teacher-forced logits: every real position (L, V), the target-predicting ones (T, V), targets."""
    sequence: torch.Tensor
    target: torch.Tensor
    target_ids: torch.Tensor


@dataclasses.dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L), left-padded
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    pixel_values: torch.Tensor | None  # (n_images, 3, H, W) for the rows that have an image
    target_slices: list[slice]  # positions of each row's target tokens in the sequence
    target_ids: list[torch.Tensor]
    context_slices: list[slice]  # positions of each row's context tokens (empty when it has none)


class Backbone:
    def __init__(self, name: str, model, tokenizer, image_processor, family: str,
                 vqa_template: str = TINY_VQA_TEMPLATE, prompt_format: PromptFormat | None = None):
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.family = family
        self.vqa_template = vqa_template
        self.prompt_format = prompt_format or FORMATS["blip2"]
        self.arch = architecture_of(model.config)
        self.n_image_tokens = self.arch.n_image_tokens(model.config)
        self.image_token_id = model.config.image_token_id
        self.stop_ids = stop_token_ids(model.config, tokenizer)
        # What edits attach while they hold (slot -> value; `editors.base.SlotEdit` adds and removes them): the
        # backbone reads only "router" (queries answered elsewhere or in a context: IKE, SERAC); any other slot
        # belongs to the editor module that names it (GRACE's and BalancEdit's "codebook", UniKE's
        # "latent_memory"), and a new editor picks its own without changing this class.
        self.attached: dict[str, object] = {}
        # The batch of the full forward pass under way (None outside one, and during greedy decoding's one-token
        # steps): hooks that route per input (GRACE, BalancEdit) read where each row's prompt ends from it.
        self.forward_batch: Batch | None = None
        # image features of recent pixel tensors, reused while the image side is untouched (`_image_cache_key`)
        self._image_cache: collections.OrderedDict = collections.OrderedDict()
        self._image_modules: list[torch.nn.Module] | None = None

    def like(self, model, name: str) -> "Backbone":
        """Another model (SERAC's counterfactual one) with this backbone's tokenizer, images, formats and stops."""
        other = Backbone(name, model, self.tokenizer, self.image_processor, model.config.text_config.model_type,
                         self.vqa_template, self.prompt_format)
        other.stop_ids = self.stop_ids  # answers end as this backbone's do, whatever the other model's config says
        return other

    @property
    def dtype(self) -> torch.dtype:
        return next(self.language_model.parameters()).dtype

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    # ---- structure -------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.model.config.text_config.num_hidden_layers

    @property
    def sites(self) -> dict[str, Site]:
        """Every site this backbone has (name -> `architectures.Site`)."""
        return self.arch.sites(self.model.config)

    def stack_depth(self, site: str) -> int:
        """Layers in the stack a site belongs to (vision encoder, bridge or language decoder); for the vision side,
        the blocks whose output reaches the language model."""
        return self.arch.depth(self.model.config, self.sites[site].stack)

    def site_info(self, site: str, layer: int | None = None) -> Site:
        """The site with its layer filled in: path, stack, the side editors read, its widths."""
        return self.arch.site(self.model.config, site, layer)

    def site(self, site: str, layer: int | None = None) -> str:
        return self.site_info(site, layer).path

    @property
    def gated_ffn(self) -> bool:
        """Whether the decoder's FFN is gated (SwiGLU: gate, up and down projections) rather than two layers."""
        return "ffn_gate" in self.sites

    @property
    def language_model(self) -> torch.nn.Module:
        """The decoder's base model (embeddings, layers, final norm)."""
        return self.arch.language_model(self.model)

    def is_language_side(self, path: str) -> bool:
        """Whether a module path is in the decoder or its head (not the vision tower or the bridge)."""
        return any(path == p or path.startswith(p + ".") for p in (self.arch.language_prefix, self.arch.lm_head))

    def module(self, site: str, layer: int | None = None) -> torch.nn.Module:
        return self.model.get_submodule(self.site(site, layer))

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        return self.model.get_submodule(self.site("layers"))

    def layer_of(self, path: str) -> int | None:
        """The index of the decoder layer that holds the module at `path` (None when no decoder layer does).

            >>> bb.layer_of(bb.site("ffn_out", -1)) == bb.n_layers - 1       # doctest: +SKIP
        """
        prefix = self.site("layers") + "."
        if not path.startswith(prefix):
            return None
        return int(path[len(prefix):].split(".")[0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- inputs ----------------------------------------------------------------------------------
    def vqa_prompt(self, question: str) -> str:
        return self.vqa_template.format(question)

    def question_of(self, prompt: str) -> str:
        """The question inside a VQA-template prompt; any other prompt (captions, text questions) as it is."""
        head, _, tail = self.vqa_template.partition("{}")
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) > len(head) + len(tail):
            return prompt[len(head):len(prompt) - len(tail)].strip()
        return prompt

    def pixel_values(self, images) -> torch.Tensor:
        tensors = [img for img in images if isinstance(img, torch.Tensor)]
        if len(tensors) == len(images):
            return torch.stack(tensors)
        pil = [img.convert("RGB") if isinstance(img, Image.Image) else img for img in images]
        return torch.stack([p if isinstance(p, torch.Tensor) else
                            self.image_processor(images=p, return_tensors="pt")["pixel_values"][0] for p in pil])

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def target_ids(self, target: str) -> list[int]:
        """The answer's own tokens, without </s> (as MMEdit's token accuracy counts them)."""
        return self._ids(" " + target.strip())

    def encode(self, queries: list[Query]) -> Batch:
        rows, slices, targets, images, contexts = [], [], [], [], []
        fmt, bos = self.prompt_format, [self.tokenizer.bos_token_id]
        for q in queries:
            if q.image is not None:
                images.append(q.image)
                image = [self.image_token_id] * self.n_image_tokens
                head = ((bos if fmt.bos_before_image else []) + self._ids(fmt.before_image) + image
                        + self._ids(fmt.after_image) + (bos if fmt.bos_after_image else []))
            else:
                head = bos
            context = self._ids(q.context)
            contexts.append((len(head), len(context)))
            prompt = head + context + self._ids(q.prompt)
            target = self.target_ids(q.target) if q.target is not None else []
            rows.append(prompt + target)
            targets.append(torch.tensor(target, dtype=torch.long))
            slices.append((len(prompt), len(target)))
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        target_slices = [slice(width - len(r) + start, width - len(r) + start + n)
                         for r, (start, n) in zip(rows, slices)]
        context_slices = [slice(width - len(r) + start, width - len(r) + start + n)
                          for r, (start, n) in zip(rows, contexts)]
        pixel_values = self.pixel_values(images) if images else None
        return Batch(input_ids, attention_mask, position_ids, pixel_values, target_slices, targets, context_slices)

    def input_embeddings(self, batch: Batch, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the image tokens replaced by the image features."""
        device = self.device
        embeds = self.model.get_input_embeddings()(batch.input_ids.to(device))
        if batch.pixel_values is not None or image_features is not None:
            if image_features is None:
                image_features = self.image_features(batch.pixel_values)
            mask = (batch.input_ids == self.image_token_id).unsqueeze(-1).to(device)
            embeds = embeds.masked_scatter(mask, image_features.to(embeds.dtype))
        return embeds

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, n_image_tokens, d_lm): the language-model inputs an image contributes.

        An editor's optimisation loop feeds the same image dozens of times while only the language side changes, and
        evaluation reads the same images before and after an edit, so the features of the last few pixel batches are
        kept and returned again (the same computation on the same bytes: bit-identical) as long as nothing on the
        image side can differ (see `_image_cache_key`)."""
        key = self._image_cache_key(pixel_values)
        if key is not None and key in self._image_cache:
            self._image_cache.move_to_end(key)
            return self._image_cache[key]
        param = next(self.model.get_submodule(self.arch.image_side[0]).parameters())
        features = self.arch.image_features(self.model, pixel_values.to(param.device, param.dtype))
        if key is not None:
            self._image_cache[key] = features
            while len(self._image_cache) > 16:
                self._image_cache.popitem(last=False)
        return features

    def _image_cache_key(self, pixel_values: torch.Tensor) -> tuple | None:
        """What the image features depend on: the pixels (their bytes' digest, shape, dtype) and every image-side
        parameter (identity, storage, in-place version). None (compute afresh, keep nothing) while anything else
        could change them or needs their graph: an image-side parameter that requires grad under autograd (FT and
        MEND on the vision side), a hook on an image-side module (tracing, MEND's activations), a module in training
        mode."""
        import torch.nn.modules.module as module_globals
        if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
            return None
        if self._image_modules is None:  # editors hook modules, never replace them, so the list is fixed
            self._image_modules = [sub for path in self.arch.image_side
                                   for sub in self.model.get_submodule(path).modules()]
        if any(m.training or m._forward_hooks or m._forward_pre_hooks for m in self._image_modules):
            return None
        params = [p for m in self._image_modules for p in m._parameters.values() if p is not None]
        params += list(self.model._parameters.values())  # BLIP-2's query_tokens
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return None
        pixels = pixel_values.detach().cpu().contiguous()
        raw = pixels.reshape(-1).view(torch.uint8).numpy()  # the bytes, whatever the dtype (numpy has no bfloat16)
        digest = hashlib.blake2b(raw.tobytes(), digest_size=16).hexdigest()
        versions = tuple((id(p), p.data_ptr(), p._version) for p in params)
        return (digest, tuple(pixels.shape), str(pixels.dtype), versions)

    # ---- forward passes --------------------------------------------------------------------------
    @contextlib.contextmanager
    def forwarding(self, batch: Batch | None):
        """`forward_batch` is `batch` inside (restored on exit, whatever happens)."""
        previous, self.forward_batch = self.forward_batch, batch
        try:
            yield
        finally:
            self.forward_batch = previous

    def logits(self, batch: Batch) -> torch.Tensor:
        embeds = self.input_embeddings(batch)
        with self.forwarding(batch):
            out = self.arch.logits(self.model, inputs_embeds=embeds,
                                   attention_mask=batch.attention_mask.to(self.device),
                                   position_ids=batch.position_ids.to(self.device), use_cache=False)
        return out.logits

    def logits_above(self, batch: Batch, start: int):
        """A function returning `self.logits(batch)` computed from decoder layer `start` on: the hidden state that
        enters layer `start` (and the arguments the decoder gives its layers) are taken once, here, and each call
        runs layers `start`.., the decoder's tail and the head on them. For editors that train something at or above
        `start` over one batch many times (T-Patcher's and UniKE's patches): the same numbers as `self.logits`, bit
        for bit, while nothing below `start` changes, at a fraction of the cost. Where a hook sits on a module below
        `start` (it could change what enters it), the function is `self.logits` itself.

            >>> run = bb.logits_above(batch, start=3); logits = run()         # == bb.logits(batch)  # doctest: +SKIP
        """
        layers = self.decoder_layers
        start = start % len(layers)
        below = [self.language_model.get_input_embeddings(), *layers[:start]]
        if any(m._forward_hooks or m._forward_pre_hooks for part in below for m in part.modules()):
            return lambda: self.logits(batch)
        captured = {}

        class _Entered(Exception):
            pass

        def enter(module, args, kwargs):
            captured["args"], captured["kwargs"] = args, kwargs
            raise _Entered

        handle = layers[start].register_forward_pre_hook(enter, with_kwargs=True)
        try:
            with torch.no_grad():
                self.logits(batch)
        except _Entered:
            pass
        finally:
            handle.remove()
        args, kwargs = captured["args"], captured["kwargs"]
        tail, head = self.arch.decoder_tail(self.model), self.model.get_submodule(self.arch.lm_head)

        def run() -> torch.Tensor:
            hidden, rest = args[0], args[1:]
            with self.forwarding(batch):
                for layer in layers[start:]:
                    hidden = layer(hidden, *rest, **kwargs)
                    hidden = hidden[0] if isinstance(hidden, tuple) else hidden
                for module in tail:
                    hidden = module(hidden)
                return head(hidden)
        return run

    def target_logits(self, queries: list[Query]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per query, (logits predicting each target token (T, V), target ids (T,)), teacher-forced."""
        return [(q.target, q.target_ids) for q in self.query_logits(queries)]

    def query_logits(self, queries: list[Query]) -> list["QueryLogits"]:
        """Per query, the logits at every real (unpadded) position and at the target positions, in one pass.

        A query's context positions are skipped: of `<s>` and the context, only the last position (the one that
        predicts the prompt's first token, as `<s>` does without a context) is kept. Queries go through the
        installed router, if any (`Router`: IKE's context, SERAC's scope routing).
        """
        return self._routed(queries, Backbone._query_logits)

    def _query_logits(self, queries: list[Query]) -> list["QueryLogits"]:
        batch = self.encode(queries)
        return self._query_logits_of(batch, self.logits(batch))

    @staticmethod
    def _query_logits_of(batch: Batch, logits: torch.Tensor) -> list["QueryLogits"]:
        out = []
        for row, (sl, tgt, ctx) in enumerate(zip(batch.target_slices, batch.target_ids, batch.context_slices)):
            start = int((batch.attention_mask[row] == 0).sum())
            shifted = slice(sl.start - 1, sl.stop - 1)  # the logit at t predicts the token at t + 1
            sequence = logits[row, start:]
            if ctx.stop > ctx.start:
                skip = slice(ctx.start - 1 - start, ctx.stop - 1 - start)
                sequence = torch.cat([sequence[:skip.start], sequence[skip.stop:]])
            out.append(QueryLogits(sequence, logits[row, shifted], tgt.to(logits.device)))
        return out

    @property
    def router(self):
        """The router an edit attached (`editors.routing.RouterEdit`), or None."""
        return self.attached.get("router")

    def _routed(self, queries: list[Query], method):
        """`method(backbone, queries)` per answering backbone, results back in the order of `queries`."""
        if self.router is None:
            return method(self, queries)
        routes = self.router.route(queries)
        if len(routes) != len(queries):
            raise RuntimeError(f"{type(self.router).__name__} routed {len(routes)} of {len(queries)} queries")
        groups: dict[int, tuple[Backbone, list[int]]] = {}
        for i, (bb, _) in enumerate(routes):
            groups.setdefault(id(bb), (bb, []))[1].append(i)
        out = [None] * len(queries)
        for bb, rows in groups.values():
            results = method(bb, [routes[i][1] for i in rows])
            for i, result in zip(rows, results):
                out[i] = result
        return out

    def loss(self, queries: list[Query]) -> torch.Tensor:
        """Mean negative log-likelihood of the target tokens (each query weighted by its token count)."""
        return _nll([(q.target, q.target_ids) for q in self.query_logits(queries)])

    def loss_above(self, queries: list[Query], start: int):
        """A function returning `self.loss(queries)` computed from decoder layer `start` on (`logits_above`): the
        same number, bit for bit, while nothing below `start` changes; for editors that train something at or above
        `start` for many steps (FT's layer, GRACE's value, BalancEdit's layer copy). Through an installed router
        the function is `self.loss` itself.

            >>> loss = bb.loss_above([query], start=-1); loss()             # == bb.loss([query])  # doctest: +SKIP
        """
        if self.router is not None:
            return lambda: self.loss(queries)
        batch = self.encode(queries)
        run = self.logits_above(batch, start)
        return lambda: _nll([(q.target, q.target_ids) for q in self._query_logits_of(batch, run())])

    @torch.no_grad()
    def greedy(self, queries: list[Query], max_new_tokens: int = 12) -> list[str]:
        """Greedy answers (decoded, stripped), stopping at any of `stop_ids` (</s> and the config's eos ids) and at
        the prompt format's stop text (cut there); uses the KV cache; through the router, if any."""
        return self._routed(queries, lambda bb, qs: bb._greedy(qs, max_new_tokens))

    def _greedy(self, queries: list[Query], max_new_tokens: int) -> list[str]:
        batch = self.encode([dataclasses.replace(q, target=None) for q in queries])
        device = self.device
        embeds = self.input_embeddings(batch)
        mask = batch.attention_mask.to(device)
        positions = batch.position_ids.to(device)
        def lm(**kwargs):
            return self.arch.logits(self.model, **kwargs)
        with self.forwarding(batch):
            out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        eos = self.tokenizer.eos_token_id
        stops = torch.tensor(sorted(self.stop_ids), device=device)
        stop_text = self.prompt_format.stop
        done = torch.zeros(len(queries), dtype=torch.bool, device=device)
        generated = []
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1)
            token = torch.where(done, torch.full_like(token, eos), token)
            generated.append(token)
            done |= torch.isin(token, stops)
            if stop_text:  # the format's stop text, whichever tokens spell it
                so_far = torch.stack(generated, 1).tolist()
                done |= torch.tensor([stop_text in self.tokenizer.decode(row) for row in so_far], device=device)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = lm(inputs_embeds=self.model.get_input_embeddings()(token[:, None]), attention_mask=mask,
                     position_ids=positions, past_key_values=out.past_key_values, use_cache=True)
        ids = torch.stack(generated, 1).tolist()
        texts = []
        for row in ids:
            row = row[:next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))]
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            texts.append((text.split(stop_text)[0] if stop_text else text).strip())
        return texts


def _nll(pairs) -> torch.Tensor:
    """Mean negative log-likelihood (float32) of [(logits (T, V), target ids (T,)), ...], every token weighing one."""
    logits = torch.cat([lg for lg, _ in pairs])
    targets = torch.cat([t for _, t in pairs])
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def stop_token_ids(config, tokenizer) -> frozenset[int]:
    """The ids greedy decoding stops at: the tokenizer's eos and the text config's `eos_token_id` (an int or a
    list). BLIP-2 OPT-2.7b's published config has 50118 there, "\n": the answer terminator LAVIS's `blip2_opt`
    decodes to (`opt_tokenizer("\n").input_ids[0]`); its tokenizer's eos is </s> (2).

        >>> sorted(stop_token_ids(model.config, tokenizer))          # blip2-opt-2.7b   # doctest: +SKIP
        [2, 50118]
    """
    value = getattr(config.text_config, "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(value if isinstance(value, (list, tuple)) else [value])}
    return frozenset(i for i in ids if i is not None)


def state_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes, bytes): equal hash = bit-identical state."""
    import hashlib
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict(keep_vars=False).items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
