"""Builds the demo's small byte-level BPE tokenizer (run once; tokenizer.json is committed).

Trained with the `tokenizers` library on support.json plus a few paragraphs of plain English
below, so the demo model can spell words the dataset never uses. No chat template: the demo
exercises the Alpaca prompt path. Usage:
    python -m gpudoctor.demo.build_tokenizer
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = Path(__file__).resolve().parent
VOCAB_SIZE = 2048
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]

GENERIC_ENGLISH = """
Below is an instruction that describes a task. Write a response that appropriately completes the request.
### Instruction: ### Input: ### Response:
Hello, how are you today? I would like to ask a question about my account, my order and my delivery.
The weather was cold this morning, so we stayed inside, read a book and made a pot of tea.
Please write a short summary of the text, then list three ideas and explain each one in a sentence.
What is the capital of France? Paris is the capital of France, and it is known for its museums.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 24 48 100 2024. Dates: Monday, Tuesday, Wednesday, Thursday, Friday.
Computers run programs; a program reads input, does some work and writes output. Errors happen.
Can you help me? Yes, of course. Thank you very much. You're welcome. Goodbye, and have a nice day!
"""


def corpus() -> list[str]:
    records = json.loads((HERE / "support.json").read_text(encoding="utf-8"))
    texts = [GENERIC_ENGLISH]
    for record in records:
        texts.extend([record["instruction"], record["input"], record["output"]])
    return [t for t in texts if t]


def build() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return tokenizer


def main() -> None:
    build().save(str(HERE / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    (HERE / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
