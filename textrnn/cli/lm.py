"""Language-model commands: `textrnn train`, `sample`, `eval` (also as `textrnn lm ...`)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli.display import TrainDisplay, log, stderr_console
from textrnn.cli.options import Device, JsonOut, MaxSteps, Quiet, Resume, TimeBudget
from textrnn.cli.outcome import exit_if_interrupted, summary
from textrnn.engine import distributed
from textrnn.engine.checkpoint import load_checkpoint, trained_on
from textrnn.engine.config import TrainConfig, config_with_overrides, saved_train_config
from textrnn.engine.decoding.beam import BeamConfig
from textrnn.engine.decoding.sampling import SamplingConfig
from textrnn.engine.devices import default_device
from textrnn.engine.outputs import last_path, out_path_for
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.formats.plain import check_text_file, iter_text_chunks
from textrnn.tasks.lm import (
    GenerateConfig,
    beam_generate,
    default_train_config,
    encode_prompt,
    evaluate_file,
    evaluate_text,
    generate,
    lm_config,
    load_lm,
    train_lm,
)
from textrnn.tokenizers import (
    Tokenizer,
    load_sentencepiece_model,
    load_tokenizer,
    tokenizer_from_dict,
    train_tokenizer,
)

app = typer.Typer(help="Language models: train, sample, eval.", no_args_is_help=True)


class Kind(str, Enum):
    char = "char"
    word = "word"
    bpe = "bpe"
    unigram = "unigram"


# ---- train -----------------------------------------------------------------------------------


@app.command()
def train(
    corpus: Annotated[Path | None, typer.Argument(help="UTF-8 text file to train on (optional with --resume).")] = None,
    out: Annotated[Path | None, typer.Option(help="Best checkpoint path; the last one goes beside it as <name>.last.ckpt.", show_default="checkpoints/<corpus>.ckpt")] = None,
    resume: Resume = None,
    tokenizer: Annotated[Kind, typer.Option(help="Token unit.")] = Kind.char,
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size (subwords: required size; char/word: a cap).")] = None,
    min_count: Annotated[int, typer.Option(help="Word/char tokenizers: drop units seen fewer times.")] = 1,
    unit: Annotated[str, typer.Option(help="Char tokenizer unit: grapheme | codepoint.")] = "grapheme",
    normalize: Annotated[str, typer.Option(help="Unicode normalisation: nfc | nfkc | none.")] = "nfc",
    tokenizer_file: Annotated[Path | None, typer.Option(help="Reuse a tokenizer built by `textrnn tokenize train`.")] = None,
    tokenizer_model: Annotated[Path | None, typer.Option(help="Import an existing sentencepiece .model file.")] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | rnn.", show_default="gru char, lstm otherwise")] = None,
    layers: Annotated[int | None, typer.Option(help="Recurrent layers.", show_default="2")] = None,
    hidden: Annotated[int | None, typer.Option(help="Units per layer.", show_default="640 char, 512 otherwise")] = None,
    embed: Annotated[int | None, typer.Option(help="Embedding size.", show_default="128 char, 512 otherwise")] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout.", show_default="0.3, 0.4 word")] = None,
    tie_weights: Annotated[bool | None, typer.Option("--tie-weights/--no-tie-weights", help="Share input and output embeddings.", show_default="on for word/subword")] = None,
    variational_dropout: Annotated[bool | None, typer.Option("--variational-dropout/--no-variational-dropout", help="One dropout mask per sequence, shared over its time steps.", show_default="off")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step, all processes together.", show_default="32")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Back-propagation length.", show_default="128 char, 64 otherwise")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.", show_default="3e-3")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.", show_default="0.8 char, 0.01 otherwise")] = None,
    clip: Annotated[float | None, typer.Option(help="Gradient-norm clipping, 0 = off.", show_default="1.0")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.", show_default="20")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    val_fraction: Annotated[float | None, typer.Option(help="Fraction of the corpus held out for validation, in blocks spread over it.", show_default="0.05")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps.", show_default="each epoch, at most 1000")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping: validations without improvement.", show_default="5; 0 = off; off with --time-budget")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | fp16 (CUDA, with a gradient scaler).", show_default="auto: bf16 where supported, else fp16 on CUDA, else fp32")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.", show_default="1234")] = None,
    device: Device = "auto",
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Train a char/word/subword LSTM (GRU, RNN) language model on a text file.

    Several processes (GPUs, machines): torchrun --nproc-per-node 2 -m textrnn train CORPUS;
    --batch-size is then the batch of all processes together.

    Example: textrnn train corpora/english.txt --time-budget 60
    """
    group, dev = distributed.join(default_device(device))
    console = stderr_console(quiet or not group.main)
    overrides = dict(
        batch_size=batch_size, seq_len=seq_len, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs,
        max_steps=max_steps, time_budget=time_budget, val_fraction=val_fraction, eval_every=eval_every,
        patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_overrides = {
        k: v
        for k, v in dict(cell=cell, layers=layers, hidden=hidden, embed=embed, dropout=dropout, tie_weights=tie_weights, variational=variational_dropout).items()
        if v is not None
    }
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, task="lm")
        if model_overrides:
            raise UsageError("model options (--layers, --hidden, ...) cannot change when resuming")
        tok, saved_cfg, saved_corpus, saved_out = _resume_settings(resume, ckpt.meta)
        for name in ("batch_size", "seq_len"):  # the saved batch position and carried state depend on them
            if overrides[name] is not None and overrides[name] != getattr(saved_cfg, name):
                raise UsageError(
                    f"--{name.replace('_', '-')} cannot change when resuming "
                    f"(the checkpoint was trained with {getattr(saved_cfg, name)})"
                )
        cfg = config_with_overrides(saved_cfg, **overrides)
        if corpus is None and saved_corpus is None:
            raise UsageError("the checkpoint does not say which corpus it was trained on; give CORPUS")
        corpus = corpus or Path(saved_corpus)
        out = out or (Path(saved_out) if saved_out else out_path_for(corpus))
        check_text_file(corpus)
    else:
        if corpus is None:
            raise UsageError("missing CORPUS: the text file to train on (or --resume CHECKPOINT)")
        check_text_file(corpus)
        tok = _build_tokenizer(corpus, tokenizer.value, vocab_size, min_count, unit, normalize, tokenizer_file, tokenizer_model) if group.main else None
        if group.active:  # rank 0 built the tokenizer and sends it: every rank must number tokens alike
            tok = tokenizer_from_dict(distributed.broadcast_object(tok.to_dict() if group.main else None))
        defaults = default_train_config(tok.kind)
        cfg = config_with_overrides(defaults, **overrides)
        out = out or out_path_for(corpus)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the folder for --out {out}: {err.strerror or err}") from None
    processes = f", {group.world} processes" if group.active else ""
    log(console, f"training on {corpus} ({tok.kind} tokenizer, {tok.vocab_size} ids{processes}) -> {out}")
    with TrainDisplay(console) as display:
        result = train_lm(
            corpus, tok, out=out, model_overrides=model_overrides, train_cfg=cfg, device=dev,
            on_progress=display, on_log=lambda m: log(console, m), resume=ckpt,
            fit_small_corpus=batch_size is None and seq_len is None,  # an explicit shape is kept
        )  # fmt: skip
    st = result.state
    best_file, last_file = out, last_path(out)  # as the user named them (train_lm's are absolute)
    exit_if_interrupted(st, last_file, group, "textrnn train")
    log(console, f"done ({st.stopped}) after {st.step} steps; best val loss {st.best_val_loss:.4f} at step {st.best_step}: {best_file}")
    if json_out and group.main:
        print(json.dumps(summary(st, best_file, last_file, ("val_loss", "val_bpc"))))


def _resume_settings(path: Path, meta: dict) -> tuple[Tokenizer, TrainConfig, str | None, str | None]:
    """The tokenizer, training config, corpus path and best-checkpoint path that a last
    checkpoint saved; CheckpointError when they are missing or malformed."""
    lm_config(meta, source=str(path))  # a bad model config is named with the file here
    try:
        tok = tokenizer_from_dict(meta["tokenizers"]["text"])
        cfg = saved_train_config(meta, source=str(path))
        corpus, _ = trained_on(meta, source=str(path))
        out = meta.get("training", {}).get("best_checkpoint")
    except KeyError as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete (no {err})") from None
    except (TypeError, AttributeError, TextrnnError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is invalid ({err})") from None
    if not (out is None or (isinstance(out, str) and out)):
        raise CheckpointError(f"{path}: checkpoint metadata is invalid (best checkpoint path {out!r})")
    return tok, cfg, corpus, out


def _build_tokenizer(corpus, kind, vocab_size, min_count, unit, normalize, tokenizer_file, tokenizer_model):
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file)
    if tokenizer_model is not None:
        return load_sentencepiece_model(tokenizer_model, normalize=normalize)
    if kind in ("bpe", "unigram") and vocab_size is None:
        vocab_size = 4000
    return train_tokenizer(
        kind, iter_text_chunks(corpus), vocab_size=vocab_size, min_count=min_count, unit=unit, normalize=normalize
    )


# ---- sample -----------------------------------------------------------------------------------


def newest_checkpoint(folder: Path = Path("checkpoints")) -> Path:
    """The most recently written best checkpoint in `folder` (a .last.ckpt only if there is no other)."""
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    best = [p for p in found if not p.name.endswith(".last.ckpt")]
    if not (best or found):
        raise UsageError(f"no checkpoint given and none found in ./{folder}/; pass --checkpoint PATH")
    return (best or found)[0]


def _read_stdin_prompt() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"stdin is not valid UTF-8 (byte {err.start}); textrnn reads UTF-8 text only") from None


@app.command()
def sample(
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Checkpoint.", show_default="newest in ./checkpoints/")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text to continue.", show_default="stdin when it is not a terminal")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate per sample.")] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample from the k most probable tokens (0 = off).")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass in (0, 1] (1 = off).")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(help="CTRL repetition penalty (1 = off).")] = 1.0,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most probable token.")] = False,
    beam: Annotated[int, typer.Option(help="Beam search width (1 = sampling/greedy).")] = 1,
    nbest: Annotated[int, typer.Option(help="Beam search: print the K best continuations.")] = 1,
    length_penalty: Annotated[float, typer.Option(help="Beam search: score = logprob / length**alpha.")] = 1.0,
    min_length: Annotated[int, typer.Option(help="Beam search: no stop before this many tokens.")] = 0,
    scores: Annotated[bool, typer.Option("--scores", help="Beam search: print each continuation's score.")] = False,
    num_samples: Annotated[int, typer.Option(help="Samples to draw (one batch).")] = 1,
    separator: Annotated[str, typer.Option(help="Printed between samples (default: a blank line).")] = "\n",
    stop: Annotated[str, typer.Option(help="End a sample where this string appears (it is not printed).")] = "",
    seed: Annotated[int | None, typer.Option(help="Random seed: same seed, same text.")] = None,
    continuation_only: Annotated[bool, typer.Option("--continuation-only", help="Do not echo the prompt.")] = False,
    precision: Annotated[str, typer.Option(help="auto | fp32 | bf16 | int8: the generation step's weights (auto: int8 on x86 CPUs, else bf16 where native, else fp32).")] = "auto",
    device: Device = "cpu",
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Generate text from a language model, streaming it to stdout.

    Example: textrnn sample --prompt "ROMEO:" --temperature 0.7 --length 300
    """
    console = stderr_console(quiet)
    sampling = SamplingConfig(
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, greedy=greedy
    )
    gen = GenerateConfig(length=length, num_samples=num_samples, stop=stop, seed=seed)
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    if beam > 1 and (top_k or top_p != 1.0 or temperature != 1.0 or greedy or repetition_penalty != 1.0 or num_samples != 1):
        raise UsageError(
            "--beam searches for the most probable text; it cannot be combined with "
            "--temperature, --top-k, --top-p, --greedy, --repetition-penalty or --num-samples"
        )
    beam_cfg = BeamConfig(beam=beam, nbest=nbest, length_penalty=length_penalty, min_length=min_length, max_length=length) if beam > 1 else None
    if beam_cfg is None and (nbest != 1 or scores):
        raise UsageError("--nbest and --scores need beam search (--beam N with N > 1)")
    if checkpoint is None:
        checkpoint = newest_checkpoint()
        log(console, f"using checkpoint {checkpoint}")
    lm = load_lm(checkpoint, device=default_device(device), precision=precision)
    if prompt is None:
        prompt = _read_stdin_prompt()
    encode_prompt(lm.tokenizer, prompt)  # unknown characters fail here, before anything is printed
    out = sys.stdout
    echo = "" if continuation_only else prompt

    if beam_cfg is not None:
        results = beam_generate(lm, prompt=prompt, beam=beam_cfg, stop=stop)
        if json_out:
            print(json.dumps([{"text": t, "score": h.score, "logprob": h.logprob, "tokens": len(h.tokens)} for t, h in results], ensure_ascii=False))
            return
        for i, (text, h) in enumerate(results):
            if i:
                out.write(separator)
            if scores:
                out.write(f"[score {h.score:.4f} logprob {h.logprob:.4f}] ")
            _write_sample(out, echo + text)
        out.flush()
        return

    if json_out:
        results = generate(lm, prompt=prompt, config=gen, sampling=sampling)
        print(json.dumps([{"text": r.text, "logprob": r.logprob, "tokens": r.tokens} for r in results], ensure_ascii=False))
        return

    # Row 0 streams as it is produced; the other rows of the batch follow when done.
    def on_text(row: int, text: str) -> None:
        if row == 0:
            out.write(text)
            out.flush()

    if echo:
        out.write(echo)
        out.flush()
    results = generate(lm, prompt=prompt, config=gen, sampling=sampling, on_text=on_text)
    _end_line(out, echo + results[0].text)
    for r in results[1:]:
        out.write(separator)
        _write_sample(out, echo + r.text)
    out.flush()


def _write_sample(out, text: str) -> None:
    out.write(text)
    _end_line(out, text)


def _end_line(out, text: str) -> None:
    if text and not text.endswith("\n"):
        out.write("\n")
    out.flush()


# ---- eval and info ------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="Language-model checkpoint.")],
    file: Annotated[Path | None, typer.Argument(help="Text to score.", show_default="stdin")] = None,
    device: Device = "cpu",
    json_out: JsonOut = False,
) -> None:
    """Score a text: cross-entropy per token (nats), perplexity and bits per character.

    Example: textrnn eval checkpoints/input.ckpt heldout.txt --json
    """
    lm = load_lm(checkpoint, device=default_device(device))
    if file is None:
        metrics = evaluate_text(lm, _read_stdin_text(), name="<stdin>")
    else:
        metrics = evaluate_file(lm, file)
    if json_out:
        print(json.dumps(metrics))
        return
    for key in ("loss_nats", "perplexity", "bits_per_char", "nats_per_char", "tokens", "chars", "unknown"):
        value = metrics[key]
        print(f"{key:14} {value:.4f}" if isinstance(value, float) else f"{key:14} {value}")


def _read_stdin_text() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no FILE given and nothing on stdin")
    text = _read_stdin_prompt()
    if not text:
        raise DataError("stdin is empty")
    return text
