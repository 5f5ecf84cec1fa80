"""Renders the chat-template fixtures with transformers' own chat-template code.

Writes tests/fixtures/chat-templates/expected.json: for each template in that folder, the text
transformers renders for the test conversation (whole, and every prefix with and without the
generation prompt), with the special tokens that model's tokenizer_config.json declares.
Run from the project root, with the reference stack:
    eval "$(PYREF_TRANSFORMERS=4.44.0 bash ../shared/pyref/setup.sh)"
    python3 scripts/make-chat-template-expectations.py
"""
import json
import pathlib

import transformers
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIR = ROOT / "tests" / "fixtures" / "chat-templates"

# The special tokens each model's tokenizer_config.json sets (what apply_chat_template passes).
MODELS = {
    "qwen2.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "phi3": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"},
}

# Two turns with a system message; contents with edges a template might trim or escape.
CONVERSATION = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And \"3 * 3\" <in> words?"},
    {"role": "assistant", "content": "Nine, since 3 * 3 = 9."},
]


class _Host:
    """What _compile_jinja_template needs of the tokenizer: nothing but the method."""


def compile_template(source):
    # transformers 4.44: ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks), raise_exception, tojson.
    return PreTrainedTokenizerBase._compile_jinja_template(_Host(), source)


def render(compiled, tokens, messages, add_generation_prompt):
    return compiled.render(messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **tokens)


def main():
    out = {"transformers": transformers.__version__, "conversation": CONVERSATION, "templates": {}}
    for name, tokens in MODELS.items():
        compiled = compile_template((DIR / f"{name}.jinja").read_text())
        prefixes = []
        for n in range(len(CONVERSATION) + 1):
            if n == 0:
                continue
            prefixes.append({
                "messages": n,
                "text": render(compiled, tokens, CONVERSATION[:n], False),
                "withGenerationPrompt": render(compiled, tokens, CONVERSATION[:n], True),
            })
        out["templates"][name] = {"specialTokens": tokens, "full": prefixes[-1]["text"], "prefixes": prefixes}
    (DIR / "expected.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
