"""How a query becomes tokens around its image: the prompt formats of the backbones, by name.

    >>> FORMATS["blip2"].before_image, FORMATS["blip2"].bos_after_image
    ('', True)
    >>> FORMATS["minigpt4-chat"].before_image, FORMATS["minigpt4-chat"].after_image
    ('###Human: <Img>', '</Img> ')

- `blip2`: `[<image>] * n_image_tokens + <s> + context + prompt + target`, the sequence transformers'
  `Blip2ForConditionalGeneration` builds (the image tokens before `<s>`), for every backbone here by default;
- `minigpt4-chat`: MiniGPT-4's chat wrapping as EasyEdit's MiniGPT-4 runs it (`###Human: <Img>` + the image's
  query tokens + `</Img> ` + the prompt, with no `<s>`; the default of `minigpt4-7b`); a greedy answer ends where
  it writes "###", as MiniGPT-4's chat stops at its next turn.
- `llava-1.5`: LLaVA-1.5's conversation, `<s>USER: ` + the image's patch tokens + `\n` + the prompt (the default
  of `llava-1.5-7b`, whose prompt ends with ` ASSISTANT:`).
A query without an image (T-Locality) is `<s> + context + prompt + target` in both: the papers' text-only probes go
through the language model alone.

The texts inside those tokens are defined here too, once, for everything that writes or reads them (the world's
training corpus, the backbones' VQA prompts, IKE, SERAC and UniKE's in-context edits, the backbone reports):

    >>> TINY_VQA_TEMPLATE.format("what color is the cube ?")
    'question : what color is the cube ? short answer :'
    >>> fact_prompt("what color is the cube ?", "red", "what color is the ball ?")
    'new fact : what color is the cube ? red prompt : what color is the ball ?'
"""
from __future__ import annotations

import dataclasses


TINY_VQA_TEMPLATE = "question : {} short answer :"  # the tiny backbones' VQA prompt (the world's corpus writes it)
REAL_VQA_TEMPLATE = "Question: {} Short answer:"  # LAVIS BLIP-2's VQA prompt, as EasyEdit gives the real backbones
# LLaVA-1.5's short-answer VQA instruction (its VQAv2 / GQA evaluation prompt), then the assistant's turn
LLAVA_VQA_TEMPLATE = "{}\nAnswer the question using a single word or phrase. ASSISTANT:"
FACT_FORMAT = "new fact : {question} {answer} prompt :"  # IKE's / MMEdit's in-context format


def fact_prompt(question: str, answer: str, query: str) -> str:
    """The new fact, then the query: `new fact : <question> <answer> prompt : <query>`."""
    return f"{FACT_FORMAT.format(question=question, answer=answer)} {query}"


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    name: str
    before_image: str = ""  # text before the image's query tokens
    after_image: str = ""  # text between them and the context / prompt
    bos_after_image: bool = True  # <s> after the image tokens (BLIP-2); False: no <s> in an image query (MiniGPT-4)
    bos_before_image: bool = False  # <s> first, then the text before the image (LLaVA's conversation)
    stop: str = ""  # text that ends a greedy answer besides the stop ids (MiniGPT-4's chat: "###", the next turn)


FORMATS = {f.name: f for f in [
    PromptFormat("blip2"),
    # MiniGPT-4's chat stops generating at "###" (its StoppingCriteriaSub on the ids of "###" / "##" "#")
    PromptFormat("minigpt4-chat", before_image="###Human: <Img>", after_image="</Img> ", bos_after_image=False,
                 stop="###"),
    # LLaVA-1.5's conversation ("llava_v1"): `<s>USER: <image>\n<question> ASSISTANT:`, as its HF processor's chat
    # template writes it; the question's own text (`LLAVA_VQA_TEMPLATE`) asks for a short answer
    PromptFormat("llava-1.5", before_image="USER: ", after_image="\n", bos_after_image=False, bos_before_image=True),
]}


def get_format(name: str) -> PromptFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown prompt format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]
