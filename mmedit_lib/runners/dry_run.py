"""A full-size dry run: the published architecture with random weights, every editor prepared in a few steps and
one edit made, measured (seconds, peak memory) and checked (finite weights, bit-exact restore, the edit's own target).

    $ python -m mmedit_lib dry-run --backbone blip2-opt-2.7b --random-weights --dtype bfloat16
    >>> bb = random_backbone("blip2-opt-2.7b", published_config("blip2-opt-2.7b"), torch.bfloat16)   # doctest: +SKIP
    >>> rows = dry_run(bb, ["ft-last", "grace"], workdir=Path("/tmp/dry"))                           # doctest: +SKIP
    >>> rows[0]["restore_exact"], rows[0]["finite"]                                                    # doctest: +SKIP
    (True, True)

What runs: the architecture is `backbones/published/<backbone>.json` (values of the published configs), built in the
target dtype with seeded random weights (nothing is downloaded or loaded); the tokenizer is a word-level one of
the config's vocabulary size with the config's special-token ids (`build_tokenizer`); the cases are MMEdit-schema
records (`dry_run_records`) with generated PNG images, made into cases by `runners.cases.record_case`. Each editor
gets `--prepare-cases` train cases (default 3) and its spec's `quick` step counts for `prepare` (as the contract test:
the dry run checks the path, not how well an editor learns), then edits one more case.

Per editor (one row): `prepare_s`, `edit_s`; `prepare_peak_gib` / `edit_peak_gib`, the resident high-water mark
while it ran above the resident size when it began (`runners.memory.edit_memory`), and `process_peak_gib`, the
process's own peak so far; `nonfinite` (floating state entries that are not finite after the edit; 0 expected);
`restore_exact` (`state_hash` of every parameter and buffer after restore() equals the one taken once after the
build); `acc_before` / `acc_after`, the teacher-forced token accuracy of the edit's own target (`tf-token`) before
and while the edit is applied, and `took_effect` (acc_after == 1). An editor that raises is a row with status
"error: ..." and its traceback; SERAC, whose `prepare` fine-tunes a counterfactual model, is checked against
/proc/meminfo's MemAvailable first and is a "does not fit" row when it cannot fit (its spec's `prepare_gib`:
SERAC's `counterfactual_gib`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
import traceback
from pathlib import Path

import torch

from ..backbones.backbone import Backbone, state_hash
from ..backbones.registry import DTYPES
from .memory import edit_memory, process_peak_mb

GIB = 2 ** 30
PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "backbones" / "published"
# every editor, in the order a partial run should reach them (most used first; SERAC's copy last of the LM ones)
ORDER = ("ft-last", "ft-vision", "grace", "balancedit", "t-patcher", "mend", "ke", "unike", "ike", "serac",
         "mend-vision")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # BLIP-2's image processor (OpenAI CLIP's normalisation)
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def quick(name: str, n_cases: int) -> dict:
    """`prepare` in a few steps on `n_cases` train cases: the editor's spec's `quick` hparams (those of the editor
    contract test), without its count of edit steps (that is `--steps`' job; unset, the hparams' own).

        >>> quick("mend", 3)
        {'steps': 5, 'norm_cases': 3}
    """
    from ..editors.registry import get_spec
    spec = get_spec(name)
    return {k: v for k, v in spec.quick_hparams(n_cases).items() if k != spec.edit_steps}


# ---- the architecture, with random weights -----------------------------------------------------------------------
def published_config(name: str):
    """The config of `backbones/published/<name>.json`, a Blip2Config or (model_type "llava") a LlavaConfig
    (ValueError naming the shipped ones otherwise).

        >>> published_config("blip2-opt-2.7b").text_config.eos_token_id
        50118
    """
    from transformers import Blip2Config, LlavaConfig
    path = PUBLISHED_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PUBLISHED_DIR.glob("*.json"))
        raise ValueError(f"no published config for {name!r}; shipped: {', '.join(known)}")
    values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    for part in ("vision_config", "qformer_config", "text_config"):
        if {"torch_dtype", "dtype"} & set(values.get(part, {})):
            # a sub-config's dtype wins over the dtype the model is built in (the published text_config says
            # float16: the language model came out float16 under a bfloat16 build)
            raise ValueError(f"{path}: {part} names a dtype; the dry run's --dtype decides it")
    return (LlavaConfig if values.get("model_type") == "llava" else Blip2Config)(**values)


_WORDS = re.compile(r"\w+|[^\w\s]+")  # what tokenizers' Whitespace pre-tokenizer splits into


def build_tokenizer(config, words=()):
    """A word-level tokenizer with `config.text_config.vocab_size` ids: the config's pad / bos / eos ids and
    `<image>` at `image_token_index`, `words` (lower-cased, split as the pre-tokenizer splits) at the first free
    ids, `w<i>` fillers for the rest; `<unk>` at the first free id.

        >>> tok = build_tokenizer(published_config("blip2-opt-2.7b"), ["How many?"])
        >>> len(tok), tok.eos_token_id, tok.convert_tokens_to_ids("<image>")
        (50304, 50118, 50265)
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast
    text = config.text_config
    roles = {"<s>": text.bos_token_id, "</s>": text.eos_token_id, "<image>": config.image_token_id}
    if text.pad_token_id != text.eos_token_id:  # LLaMA / MiniGPT-4 pad with eos
        roles["<pad>"] = text.pad_token_id
    if len(set(roles.values())) != len(roles) or not all(0 <= i < text.vocab_size for i in roles.values()):
        raise ValueError(f"special-token ids collide or lie outside the vocabulary ({text.vocab_size}): {roles}")
    special = {i: token for token, i in roles.items()}
    free = (i for i in range(text.vocab_size) if i not in special)
    vocab = {token: i for i, token in special.items()}
    vocab["<unk>"] = next(free)
    for word in dict.fromkeys(w.lower() for text_ in words for w in _WORDS.findall(text_)):
        if word not in vocab:
            vocab[word] = next(free)
    for i in free:
        vocab[f"w{i}"] = i
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    pad = "</s>" if text.pad_token_id == text.eos_token_id else "<pad>"
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, eos_token="</s>", bos_token="<s>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_backbone(name: str, config, dtype: torch.dtype, seed: int = 0, words=(), image_size: int | None = None,
                    prompt_format: str | None = None) -> Backbone:
    """`config`'s model (its architecture's class: `backbones.architectures`) built directly in `dtype` (peak ~1x the weights), weights drawn by
    transformers' initialisers under `seed`; `name` picks the editors' hparams file (`editors/hparams/<name>.yaml`)
    and, for a registered backbone, the input defaults a loaded one gets (`registry.set_inputs`: 364 px for the
    224-px published configs; the spec's prompt format, MiniGPT-4's chat for minigpt4-7b); `image_size` and
    `prompt_format` override them.

        >>> from mmedit_lib.backbones.configs import tiny_blip2_config
        >>> bb = random_backbone("tiny-blip2-opt", tiny_blip2_config("opt", 300), torch.bfloat16)
        >>> bb.model.dtype, len(bb.tokenizer)
        (torch.bfloat16, 300)
    """
    import transformers
    from transformers import BlipImageProcessorPil
    from ..backbones.architectures import architecture_of
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype}")
    torch.manual_seed(seed)
    with _default_dtype(dtype):
        model = getattr(transformers, architecture_of(config).model_class)(config)
    model.requires_grad_(False)  # a backbone is frozen; editors switch on what they train
    other = sorted({str(t.dtype) for t in model.state_dict().values() if t.is_floating_point() and t.dtype != dtype})
    if other:
        raise ValueError(f"{name} built with tensors in {', '.join(other)} besides {dtype}: a sub-config names a dtype")
    size = config.vision_config.image_size
    processor = BlipImageProcessorPil(size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                                      do_convert_rgb=True)
    from ..backbones.prompt_format import REAL_VQA_TEMPLATE, get_format
    from ..backbones.registry import BACKBONES, set_inputs
    spec = BACKBONES.get(name)
    set_inputs(model, processor, spec, image_size)
    template = spec.vqa_template if spec is not None else REAL_VQA_TEMPLATE
    fmt = get_format(prompt_format or (spec.prompt_format if spec is not None else "blip2"))
    return Backbone(name, model, build_tokenizer(config, words), processor, config.text_config.model_type,
                    vqa_template=template, prompt_format=fmt)


def model_gib(model: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / GIB


# ---- MMEdit-schema records with generated images -----------------------------------------------------------------
_OBJECTS = ("tennis balls", "frying pans", "zebras", "umbrellas", "clocks", "giraffes", "kites", "buses", "cups",
            "benches")
_LOC = (("nq question: who wrote the novel the old man and the sea", "Ernest Hemingway"),
        ("nq question: what is the largest moon of saturn", "Titan"),
        ("nq question: when did the first man land on the moon", "20 July 1969"),
        ("nq question: what is the capital city of australia", "Canberra"))
_M_LOC = (("What sport can you use this for?", "surfing"), ("What color is the bus?", "red"),
          ("What is the man holding?", "umbrella"), ("Which room is this?", "kitchen"))


def dry_run_records(n: int) -> list[dict]:
    """n E-VQA records in the MMEdit schema (every field of `data.records.MMEDIT_FIELDS`, and the official file's
    `rephrased_questions_train`), image paths in the COCO layout the official records use.

        >>> rec = dry_run_records(1)[0]
        >>> rec["src"], rec["alt"], rec["image"]
        ('How many tennis balls are in the picture?', '2', 'val2014/COCO_val2014_000000100000.png')
    """
    records = []
    for i in range(n):
        obj = _OBJECTS[i % len(_OBJECTS)]
        loc, loc_ans = _LOC[i % len(_LOC)]
        m_loc_q, m_loc_a = _M_LOC[i % len(_M_LOC)]
        image = f"val2014/COCO_val2014_{100000 + i:012d}.png"
        records.append({
            "src": f"How many {obj} are in the picture?", "pred": "one",
            "rephrase": f"What is the number of {obj} shown in the image?", "alt": str(2 + i % 7), "image": image,
            "image_rephrase": f"val2014_image_rephrase/{100000 + i}001_COCO_val2014_{100000 + i:012d}.png",
            "loc": loc, "loc_ans": loc_ans, "m_loc": f"val2014/COCO_val2014_{200000 + i:012d}.png",
            "m_loc_q": m_loc_q, "m_loc_a": m_loc_a,
            "rephrased_questions_train": [f"Can you count the {obj} in this image?"]})
    return records


def record_words(records: list[dict]) -> list[str]:
    """Every text of `records` (what the tokenizer should know as words)."""
    keys = ("src", "pred", "rephrase", "alt", "loc", "loc_ans", "m_loc_q", "m_loc_a")
    return [r[k] for r in records for k in keys] + [q for r in records for q in r["rephrased_questions_train"]] + \
        ["Question: Short answer: New fact: Answer:"]


def write_images(records: list[dict], root: Path, size: int, seed: int = 0) -> None:
    """A PNG of `size` px for every image path of `records` under `root`: a coloured background with discs."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    for rec in records:
        for field in ("image", "image_rephrase", "m_loc"):
            path = root / rec[field]
            path.parent.mkdir(parents=True, exist_ok=True)
            img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(img)
            for _ in range(int(rng.integers(1, 6))):
                x, y = (int(v) for v in rng.integers(0, size, 2))
                r = int(rng.integers(size // 16, size // 4))
                draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            img.save(path)


def dry_run_cases(bb: Backbone, records: list[dict], root: Path) -> list:
    """`records` as cases of `bb` (images under `root`), through `record_case` as a real run makes them."""
    from ..data.records import MMEditRecord
    from .cases import record_case
    return [record_case(bb, MMEditRecord.from_dict(rec, where=f"record {i}"), "vqa", i, root)
            for i, rec in enumerate(records)]


# ---- checks ------------------------------------------------------------------------------------------------------
def nonfinite(model: torch.nn.Module) -> int:
    """Floating entries of the state (parameters and buffers) that are not finite."""
    return sum(int((~torch.isfinite(t)).sum()) for t in model.state_dict().values() if t.is_floating_point())


def target_accuracy(bb: Backbone, query) -> float:
    """tf-token accuracy of `query`'s own target (through any installed router, as an evaluation reads it)."""
    from ..metrics.accuracy import token_accuracy
    with torch.no_grad():
        logits, target = bb.target_logits([query])[0]
    return token_accuracy(logits, target)


def mem_available_gib() -> float:
    """/proc/meminfo's MemAvailable (GiB)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2 ** 20
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _gib(mb: float | None) -> float | None:
    return None if mb is None else round(mb / 1024, 3)


def editor_overrides(name: str, n_cases: int, steps: int | None, hparams_backbone: str | None = None) -> dict:
    """The hparams a dry run sets on top of the backbone's file: `quick` prepare counts, `steps` per edit, and for
    a SERAC whose file says counterfactual "small", that small model's architecture with random weights (the
    backbone's are random too: nothing is loaded)."""
    from ..editors.registry import get_spec
    spec = get_spec(name)
    out = quick(name, n_cases)
    if steps is not None and spec.edit_steps:
        out[spec.edit_steps] = steps
    if spec.architecture_only is not None and hparams_backbone is not None:
        out.update(spec.architecture_only(hparams_backbone))
    return out


def dry_run_editor(bb: Backbone, name: str, train: list, case, reference: str, steps: int | None = None,
                   hparams_backbone: str | None = None) -> dict:
    """One editor on `bb`: prepare on `train`, edit `case`, check and restore; a row (errors are rows too).
    `reference`: `state_hash(bb.model)` of the unedited model."""
    from ..editors.registry import make_editor
    overrides = editor_overrides(name, len(train), steps, hparams_backbone or bb.name)
    row = {"editor": name, "status": "ok", "overrides": overrides, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    edit, stage = None, "hparams"
    try:
        editor = make_editor(name, backbone=hparams_backbone or bb.name, **overrides)
        if editor.spec.prepare_gib is not None:
            needs, available = editor.spec.prepare_gib(bb, editor.hparams), mem_available_gib()
            if needs > available:
                row["status"] = f"does not fit: needs {needs:.1f} GiB, {available:.1f} GiB available"
                return row
        stage = "prepare"
        started = time.perf_counter()
        with edit_memory(bb.device) as peak:
            editor.prepare(bb, train)
        row.update(prepare_s=round(time.perf_counter() - started, 2), prepare_peak_gib=_gib(peak.mb))
        stage = "before"
        row["acc_before"] = target_accuracy(bb, case.request.query)
        stage = "edit"
        torch.manual_seed(0)
        started = time.perf_counter()
        with edit_memory(bb.device) as peak:
            edit = editor.edit(bb, case.request)
        row.update(edit_s=round(time.perf_counter() - started, 2), edit_peak_gib=_gib(peak.mb))
        stage = "check"
        row["nonfinite"] = nonfinite(bb.model)
        row["acc_after"] = target_accuracy(bb, case.request.query)
        row["took_effect"] = row["acc_after"] == 1.0
        stage = "restore"
        edit.restore()
        edit = None
        row["restore_exact"] = state_hash(bb.model) == reference
    except Exception as error:  # noqa: BLE001 - every failure is a row of the table, with its traceback
        row.update(status=f"error in {stage}: {type(error).__name__}: {error}"[:500],
                   traceback=traceback.format_exc()[-4000:])
        if edit is not None:
            with contextlib.suppress(Exception):
                edit.restore()
        row["restore_exact"] = state_hash(bb.model) == reference
    row["finite"] = row.get("nonfinite") == 0 if "nonfinite" in row else None
    row["process_peak_gib"] = _gib(process_peak_mb())
    return row


def dry_run(bb: Backbone, editors=ORDER, workdir: Path | None = None, prepare_cases: int = 3,
            steps: int | None = None, hparams_backbone: str | None = None, on_row=None) -> list[dict]:
    """Every editor of `editors` on `bb` (rows in that order); images are written under `workdir` (default: a
    temporary folder); `on_row(rows)` is called after each editor (to save the table as it grows)."""
    import tempfile
    from tqdm import tqdm
    from ..editors.registry import get_spec
    for name in editors:
        get_spec(name)  # an unknown name fails before anything runs
    if prepare_cases < 1:
        raise ValueError(f"prepare_cases must be >= 1; got {prepare_cases}")
    with tempfile.TemporaryDirectory(prefix="dry-run-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        records = dry_run_records(prepare_cases + 1)
        write_images(records, root, bb.model.config.vision_config.image_size)
        cases = dry_run_cases(bb, records, root)
        train, case = cases[:prepare_cases], cases[prepare_cases]
        reference = state_hash(bb.model)
        rows = []
        for name in (bar := tqdm(list(editors), desc="dry run", unit="editor")):
            bar.set_postfix_str(name)
            rows.append(dry_run_editor(bb, name, train, case, reference, steps, hparams_backbone))
            if on_row is not None:
                on_row(rows)
    return rows


# ---- the command -------------------------------------------------------------------------------------------------
TABLE_COLUMNS = ("editor", "status", "prepare_s", "edit_s", "prepare_peak_gib", "edit_peak_gib", "process_peak_gib",
                 "finite", "restore_exact", "acc_before", "acc_after", "took_effect")


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table (TABLE_COLUMNS)."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in TABLE_COLUMNS] for r in rows]
    widths = [max([len(c)] + [min(len(row[i]), 60) for row in cells]) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths))]
    lines += ["  ".join(v[:60].ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_table(rows: list[dict], meta: dict, path: Path) -> None:
    """`path` (JSON: meta and rows) and the same rows as CSV beside it (TABLE_COLUMNS)."""
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**meta, "rows": rows}, indent=1, default=str) + "\n")
    tmp.replace(path)
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, TABLE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@dataclasses.dataclass
class DryRunSpec:
    """What `python -m mmedit_lib dry-run` was asked for."""
    backbone: str
    dtype: str = "bfloat16"
    editors: tuple[str, ...] = ORDER
    steps: int | None = None
    prepare_cases: int = 3
    seed: int = 0
    image_size: int | None = None  # None: the backbone's default (364 px for the 224-px published configs)
    prompt_format: str | None = None  # None: the backbone's default (minigpt4-chat for minigpt4-7b)

    def check(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.prompt_format is not None:
            from ..backbones.prompt_format import get_format
            get_format(self.prompt_format)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1; got {self.steps}")
        from ..editors.registry import get_spec
        for name in self.editors:
            get_spec(name)
        published_config(self.backbone)


def run_dry_run(spec: DryRunSpec, out: Path) -> list[dict]:
    """Build `spec.backbone` with random weights, run every editor, write the table to `out` as it grows."""
    import platform
    spec.check()
    config = published_config(spec.backbone)
    records = dry_run_records(spec.prepare_cases + 1)
    started = time.perf_counter()
    with edit_memory(torch.device("cpu")) as peak:
        bb = random_backbone(spec.backbone, config, DTYPES[spec.dtype], spec.seed, record_words(records),
                             spec.image_size, spec.prompt_format)
    meta = {"backbone": spec.backbone, "dtype": spec.dtype, "random_weights": True, "seed": spec.seed,
            "image_size": bb.image_size, "prompt_format": bb.prompt_format.name,
            "steps": spec.steps, "prepare_cases": spec.prepare_cases, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "parameters": sum(p.numel() for p in bb.model.parameters()), "weights_gib": round(model_gib(bb.model), 3),
            "build_s": round(time.perf_counter() - started, 1), "build_peak_gib": _gib(peak.mb),
            "mem_available_gib_after_build": round(mem_available_gib(), 2),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"{spec.backbone}: {meta['parameters']:,} parameters, {meta['weights_gib']} GiB in {spec.dtype}, built in "
          f"{meta['build_s']} s (peak +{meta['build_peak_gib']} GiB); {meta['image_size']} px, prompt format "
          f"{meta['prompt_format']}", flush=True)

    kept = kept_rows(out, meta, spec.editors)

    def save(rows):
        write_table(ordered(kept + rows), meta, out)
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    return dry_run(bb, spec.editors, prepare_cases=spec.prepare_cases, steps=spec.steps, on_row=save)


# what makes two dry runs' rows comparable, so that one table can hold the rows of several invocations
SAME_RUN = ("backbone", "dtype", "random_weights", "seed", "steps", "prepare_cases", "image_size", "prompt_format",
            "torch")


def kept_rows(out: Path, meta: dict, editors) -> list[dict]:
    """The rows of an earlier table at `out` for editors this run does not redo, when it ran the same way
    (`SAME_RUN`); a table of another setting is replaced whole. Each kept row says when it ran (`started`)."""
    if not out.is_file():
        return []
    old = json.loads(out.read_text())
    if any(old.get(k) != meta.get(k) for k in SAME_RUN):
        return []
    return [{**r, "started": r.get("started", old.get("started"))} for r in old["rows"] if r["editor"] not in editors]


def ordered(rows: list[dict]) -> list[dict]:
    """`rows` in ORDER (then any other editor, in the order given)."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(rows, key=lambda r: rank.get(r["editor"], len(ORDER)))
