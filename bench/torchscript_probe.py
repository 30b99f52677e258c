"""Probe, not a product path: would a frozen TorchScript graph speed up fp32 BERT on this CPU?

Runs the bert-base-shaped random model over the paragraph workload of qa_throughput.py one row at
a time, eager under inference_mode versus traced + frozen + optimize_for_inference, and prints the
ratio. TorchScript is deprecated upstream; this measures whether graph-level fusion is worth
pursuing (e.g. with torch.compile) for the fp32 target that batching alone does not reach.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertForQuestionAnswering

sys.path.insert(0, str(Path(__file__).parent))
from qa_operator.model.tiny import build_tiny_qa_model
from qa_throughput import SIZES, make_inputs


def best_of(run: Callable[[], None], repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    tokenizer, model = build_tiny_qa_model(0, **SIZES["bert-base"])
    model.eval()
    questions, texts = make_inputs(16)
    rows = [
        tokenizer(q, t, return_tensors="pt", truncation=True, max_length=512)
        for q, t in zip(questions, texts, strict=True)
    ]
    args = [(r["input_ids"], r["attention_mask"], r["token_type_ids"]) for r in rows]

    def eager() -> None:
        with torch.inference_mode():
            for ids, mask, types in args:
                model(input_ids=ids, attention_mask=mask, token_type_ids=types)

    model.config.torchscript = True
    scriptable = BertForQuestionAnswering(model.config)
    scriptable.load_state_dict(model.state_dict())
    scriptable.eval()
    with torch.no_grad():
        traced: Any = torch.jit.trace(scriptable, args[0], strict=False)
        frozen: Any = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def scripted() -> None:
        with torch.no_grad():
            for row in args:
                frozen(*row)

    eager()
    scripted()
    seconds = {"eager": best_of(eager), "frozen_torchscript": best_of(scripted)}
    ratio = round(seconds["eager"] / seconds["frozen_torchscript"], 3)
    print(json.dumps({"seconds_16_rows": seconds, "speedup": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
