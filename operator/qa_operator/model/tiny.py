"""A tiny BERT question-answering model with random weights, built locally (no download).

Used by the tests, the demo and the benchmark. Its answers are arbitrary (random weights) but it
exercises exactly the code paths a real model does: fast tokenizer with offsets, windows, spans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_WORD_TEXT = """
    my name is alex i am 32 and live in copenhagen what how old where do the a of to it
    was who when which city years lives works at for on with this that he she they you
    model answer question text long story about people there once upon time
"""
WORDS = tuple(_WORD_TEXT.split())
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PUNCTUATION = tuple(".,?!'\"-:;()")


def tiny_vocab() -> dict[str, int]:
    tokens = [*SPECIAL, *PUNCTUATION, *dict.fromkeys(WORDS)]
    # A few word pieces so that unseen words split instead of all becoming [UNK].
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tokens += list("abcdefghijklmnopqrstuvwxyz0123456789")
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_qa_model(
    seed: int = 0,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    hidden_act: str = "gelu",
    max_position_embeddings: int = 512,
) -> tuple[Any, Any]:
    """(fast tokenizer, BertForQuestionAnswering in eval mode) with random weights from `seed`.
    Larger sizes give a model of real-world shape (768/12/12/3072 is bert-base) for benchmarks;
    `hidden_act` is the feed-forward activation (a transformers ACT2FN name). A small
    `max_position_embeddings` gives a model that loads and fails on any longer input."""
    import torch
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertForQuestionAnswering,
        BertTokenizerFast,
    )

    vocab = tiny_vocab()
    # transformers 5.x: BertTokenizerFast(vocab_file=...) ignores the file; vocab= is honoured.
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_act=hidden_act,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=vocab["[PAD]"],
    )
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(config)
    model.eval()
    return tokenizer, model


def make_tiny_qa_model_dir(path: Path, seed: int = 0, **sizes: Any) -> Path:
    """Write a tiny BertForQuestionAnswering (random weights from `seed`; same seed, same bytes)
    and its fast tokenizer into `path`, one directory as a HuggingFace snapshot has; return it.
    `sizes` are build_tiny_qa_model's keyword arguments."""
    tokenizer, model = build_tiny_qa_model(seed, **sizes)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    model.save_pretrained(str(path))
    return path
