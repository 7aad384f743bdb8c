"""Accuracy primitives shared by the training report, edit-case construction and (later) every metric.

    >>> import torch
    >>> token_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    0.5
    >>> normalize_answer("  Top  Left ")
    'top left'
"""
from __future__ import annotations

import re

import torch


def token_accuracy(logits: torch.Tensor, target_ids: torch.Tensor) -> float:
    """Teacher-forced argmax over the target tokens == target tokens, averaged (MMEdit's token accuracy)."""
    if len(target_ids) == 0:
        raise ValueError("empty target: token accuracy is undefined")
    return (logits.argmax(-1) == target_ids).float().mean().item()


def normalize_answer(text: str) -> str:
    """Lower-case, single spaces, no surrounding punctuation: the comparison used for exact match."""
    text = re.sub(r"\s+", " ", text.lower()).strip()
    return text.strip(" .")
