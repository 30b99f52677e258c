"""A tiny BERT question-answering model that really answers, trained here in about a minute.

It learns from generated sentences about people (a name, an age, a city) and questions about
each slot, so "My name is Alex, I am 32 and live in Copenhagen." gets "Alex", "32" and
"Copenhagen". That sentence is the original blog post's example and is HELD OUT: no training
example has it as its context (the generator redraws it, and training refuses a set that holds it).

The result is cached under a content key (`cache_key`): the same code, data, settings, seed and
library versions give the same directory, trained once per machine. Training is deterministic for a
given seed (fixed steps, seeded generators), stops on a step count, never on the clock, and the
model is checked on the held-out questions before it is cached.

torch and transformers are imported inside the functions, as in `qa_operator.model.tiny`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from qa_operator.model.tiny import tiny_vocab

log = logging.getLogger(__name__)

# Bump when the meaning of the cached directory changes in a way the key below does not see.
FORMAT_VERSION = 1

POST_TEXT = "My name is Alex, I am 32 and live in Copenhagen."
HELD_OUT: tuple[tuple[str, str], ...] = (
    ("What is my name?", "Alex"),
    ("How old am I?", "32"),
    ("Where do I live?", "Copenhagen"),
)

# Slots: {name}, {age}, {city}. "first" templates speak as "I", "third" ones about someone.
FIRST_PERSON_TEMPLATES = (
    "My name is {name}, I am {age} and live in {city}.",
    "I am {name}. I live in {city} and I am {age}.",
    "Hi, I am {name}. I am {age} years old and I live in {city}.",
    "My name is {name}. I live in {city}. I am {age} years old.",
    "I live in {city}, my name is {name} and I am {age}.",
    "I am {age} years old. My name is {name} and I live in {city}.",
)
THIRD_PERSON_TEMPLATES = (
    "{name} is {age} years old and lives in {city}.",
    "{name} lives in {city} and is {age}.",
    "This is {name}, who is {age} and lives in {city}.",
    "{name}, {age}, lives in {city}.",
    "In {city} lives {name}, who is {age} years old.",
)
FIRST_PERSON_QUESTIONS = {
    "name": ("What is my name?", "Who am I?", "What am I called?", "Tell me my name."),
    "age": ("How old am I?", "What is my age?", "What age am I?"),
    "city": (
        "Where do I live?",
        "Which city do I live in?",
        "In which city do I live?",
        "What city do I live in?",
    ),
}
THIRD_PERSON_QUESTIONS = {
    "name": ("Who is {age} years old?", "Who lives in {city}?", "What is the name of the person?"),
    "age": ("How old is {name}?", "What is the age of {name}?", "How old is the person?"),
    "city": (
        "Where does {name} live?",
        "Which city does {name} live in?",
        "Where does the person live?",
    ),
}
NAMES = (
    "Alex", "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ida", "Jonas",
    "Karen", "Liam", "Maria", "Noah", "Olga", "Peter", "Rosa", "Sam", "Tara", "Victor", "Wendy",
    "Yusuf", "Zoe", "Omar", "Lucas", "Mia", "Nina", "Paul", "Sofia", "Tom", "Lena", "Oscar",
    "Julia", "Erik", "Hannah", "Mateo", "Aisha", "Kenji", "Priya",
)  # fmt: skip
CITIES = (
    "Copenhagen", "Oslo", "Berlin", "Paris", "London", "Madrid", "Rome", "Vienna", "Prague",
    "Lisbon", "Dublin", "Athens", "Tokyo", "Cairo", "Lima", "Boston", "Chicago", "Toronto",
    "Sydney", "Stockholm", "Helsinki", "Warsaw", "Amsterdam", "Munich", "Hamburg", "Zurich",
    "Geneva", "Milan", "Seoul", "Delhi",
)  # fmt: skip
# Made-up names and cities: not in the vocabulary, they split into single-letter word pieces, so
# the model learns to answer with words it has never seen whole. Syllables are drawn from the whole
# alphabet, with and without consonants around the vowel, so every letter piece is trained as the
# first and as the last piece of an answer.
CONSONANTS = "bcdfghjklmnpqrstvwxz"
VOWELS = "aeiouy"
CITY_SUFFIXES = ("burg", "ville", "ton", "holm", "stad", "by", "field", "port", "haven", "")
MIN_AGE, MAX_AGE = 1, 99
# Whole words of the trained model's vocabulary beyond tiny_vocab()'s (appended: the tiny
# vocabulary's ids stay as they are).
EXTRA_WORDS = (
    "hi", "called", "tell", "me", "age", "person", "does", "in", "years", "old", "name", "city",
    "lives", "live", "i", "am", "my", "is",
)  # fmt: skip


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes the trained model; every field is part of the cache key."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.0
    max_seq_length: int = 96


@dataclass(frozen=True)
class Example:
    """One training example: the answer is `context[answer_start : answer_start + len(answer)]`."""

    question: str
    context: str
    answer: str
    answer_start: int

    @property
    def answer_end(self) -> int:
        return self.answer_start + len(self.answer)


class TrainingFailedError(RuntimeError):
    """The trained model got a held-out question wrong; nothing was cached."""


def trained_vocab() -> dict[str, int]:
    """tiny_vocab() with the templates' words and the known names and cities appended."""
    tokens = list(tiny_vocab())
    tokens += [w.lower() for w in (*EXTRA_WORDS, *NAMES, *CITIES)]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _made_up_word(rng: random.Random, suffixes: Sequence[str] = ("",)) -> str:
    def syllable() -> str:
        onset = "".join(rng.choice(CONSONANTS) for _ in range(rng.choice((0, 1, 1, 1, 2))))
        coda = rng.choice(CONSONANTS) if rng.random() < 0.4 else ""
        return onset + rng.choice(VOWELS) + coda

    word = "".join(syllable() for _ in range(rng.randint(1, 3)))
    while len(word) < 3:
        word += syllable()
    return (word + rng.choice(suffixes)).capitalize()


def _slot_offset(template: str, slot: str, values: dict[str, str]) -> int:
    """Character offset of `slot`'s value in the filled template."""
    prefix = template[: template.index("{" + slot + "}")]
    return len(prefix.format(**values))


def generate_examples(rng: random.Random, count: int) -> list[Example]:
    """`count` examples drawn from `rng`; never one whose context is POST_TEXT."""
    examples: list[Example] = []
    while len(examples) < count:
        values = {
            "name": rng.choice(NAMES) if rng.random() < 0.5 else _made_up_word(rng),
            "age": str(rng.randint(MIN_AGE, MAX_AGE)),
            "city": rng.choice(CITIES) if rng.random() < 0.5 else _made_up_word(rng, CITY_SUFFIXES),
        }
        first_person = rng.random() < 0.5
        template = rng.choice(FIRST_PERSON_TEMPLATES if first_person else THIRD_PERSON_TEMPLATES)
        context = template.format(**values)
        if context == POST_TEXT:
            continue
        slot = rng.choice(("name", "age", "city"))
        phrasings = (FIRST_PERSON_QUESTIONS if first_person else THIRD_PERSON_QUESTIONS)[slot]
        question = rng.choice(phrasings).format(**values)
        start = _slot_offset(template, slot, values)
        answer = values[slot]
        if context[start : start + len(answer)] != answer:  # a template bug
            raise AssertionError(f"answer {answer!r} is not at {start} in {context!r}")
        examples.append(Example(question, context, answer, start))
    return examples


def training_examples(config: TrainingConfig) -> list[Example]:
    """Every example training sees, in order: `steps` batches of `batch_size`."""
    return generate_examples(random.Random(config.seed), config.steps * config.batch_size)


def _library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("torch", "transformers", "tokenizers")}


def cache_key(config: TrainingConfig | None = None) -> str:
    """Short sha256 over what determines the trained model: this module's source (templates,
    generator, training loop), the vocabulary, the settings and seed, and library versions."""
    config = config or TrainingConfig()
    content = {
        "format": FORMAT_VERSION,
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "vocab": list(trained_vocab()),
        "config": asdict(config),
        "versions": _library_versions(),
    }
    encoded = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$QA_OPERATOR_CACHE/models, else ${XDG_CACHE_HOME:-~/.cache}/qa-operator/models."""
    if root := os.environ.get("QA_OPERATOR_CACHE"):
        return Path(root) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "qa-operator" / "models"


def trained_qa_model_path(
    cache_dir: Path | None = None, config: TrainingConfig | None = None
) -> Path:
    """Where the trained model for `config` lives in the cache (it may not exist yet)."""
    return (cache_dir or default_cache_dir()) / f"trained-qa-{cache_key(config)}"


def trained_qa_model_dir(
    cache_dir: Path | None = None, config: TrainingConfig | None = None
) -> Path:
    """A HuggingFace model directory (config.json, model.safetensors, tokenizer files) of the
    trained model, from the cache, or trained, checked and cached first. Concurrent callers wait
    on a file lock; the directory appears by one atomic rename, so it is complete or absent."""
    config = config or TrainingConfig()
    target = trained_qa_model_path(cache_dir, config)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        # Under the lock nobody else writes: leftovers are from a killed process.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the cached model from other users
        try:
            started = time.monotonic()
            train_qa_model(tmp, config)
            log.info("trained the QA model in %.1f s", time.monotonic() - started)
            check_held_out(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def check_held_out(model_dir: Path) -> None:
    """Raise TrainingFailedError unless the model in `model_dir`, run by the serving engine,
    answers every HELD_OUT question about POST_TEXT with exactly the expected span."""
    from qa_operator.model.config import InferenceConfig
    from qa_operator.model.inference import load_engine

    engine = load_engine(model_dir, model_dir, InferenceConfig())
    questions = [q for q, _ in HELD_OUT]
    answers = engine.answer(questions, [POST_TEXT] * len(questions))
    wrong = [
        f"{q!r} -> {a.answer!r} (expected {expected!r})"
        for (q, expected), a in zip(HELD_OUT, answers, strict=True)
        if a.answer.lower() != expected.lower()
    ]
    if wrong:
        raise TrainingFailedError(
            f"the trained model answers held-out questions wrongly, so it was not cached: "
            f"{'; '.join(wrong)}"
        )


def train_qa_model(path: Path, config: TrainingConfig | None = None) -> Path:
    """Train the model on `training_examples(config)` and write it with its fast tokenizer into
    `path`, as `qa_operator.model.tiny.make_tiny_qa_model_dir` does; return `path`."""
    import torch
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    config = config or TrainingConfig()
    examples = training_examples(config)
    if any(e.context == POST_TEXT for e in examples):
        raise AssertionError("the held-out post text is among the training contexts")
    tokenizer = BertTokenizerFast(vocab=trained_vocab(), do_lower_case=True)
    # One thread: these matrices are too small to gain from more, and on busy cores torch's
    # thread pool measured 15x slower per step (2 threads on 2 shared cores: 2 s vs 0.13 s).
    # It also makes the weights independent of the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # fork_rng: seed our own run, leaving the caller's global torch random state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = _fit(tokenizer, examples, config)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    model.save_pretrained(str(path))
    return path


def _fit(tokenizer: Any, examples: list[Example], config: TrainingConfig) -> Any:
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    vocab = tokenizer.get_vocab()
    model = BertForQuestionAnswering(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=512,
            pad_token_id=vocab["[PAD]"],
        )
    )
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, config.warmup_steps, config.steps)
    )
    for step, batch in enumerate(_batches(examples, config.batch_size)):
        loss = model(**_encode(tokenizer, batch, config.max_seq_length)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == config.steps - 1:
            log.debug("step %d loss %.4f", step, loss.item())
    return model


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then linear decay to zero at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _batches(examples: list[Example], size: int) -> Iterator[list[Example]]:
    for i in range(0, len(examples), size):
        yield examples[i : i + size]


def _encode(tokenizer: Any, batch: list[Example], max_length: int) -> dict[str, Any]:
    """Tokenize (question, context) pairs and mark the answer's first and last token."""
    import torch

    encoded = tokenizer(
        [e.question for e in batch],
        [e.context for e in batch],
        truncation="only_second",
        max_length=max_length,
        padding="longest",
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    starts, ends = [], []
    for i, example in enumerate(batch):
        offsets = encoded["offset_mapping"][i].tolist()
        context_tokens = [
            t for t, seq in enumerate(encoded.sequence_ids(i)) if seq == 1 and offsets[t][1] > 0
        ]
        first = [t for t in context_tokens if offsets[t][0] <= example.answer_start]
        last = [t for t in context_tokens if offsets[t][1] >= example.answer_end]
        if not first or not last:
            raise ValueError(f"answer {example.answer!r} was truncated out of its context")
        starts.append(first[-1])
        ends.append(last[0])
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "token_type_ids": encoded["token_type_ids"],
        "start_positions": torch.tensor(starts),
        "end_positions": torch.tensor(ends),
    }
