"""Language-model commands: `textrnn train`, `sample`, `eval` (also as `textrnn lm ...`)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli import training
from textrnn.cli.display import log, stderr_console, ticker
from textrnn.cli.io import stdin_lines
from textrnn.cli.options import (
    Dev,
    Device,
    JsonOut,
    MaxSteps,
    Optimizer,
    Out,
    ProgressMode,
    Quiet,
    Resume,
    Seed,
    Shown,
    Threads,
    TimeBudget,
    old_form,
)
from textrnn.engine import distributed
from textrnn.engine.checkpoint import read_meta
from textrnn.engine.decoding.beam import BeamConfig
from textrnn.engine.decoding.sampling import SamplingConfig
from textrnn.engine.devices import default_device, set_threads
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.formats.plain import check_text_file, iter_text_chunks
from textrnn.tasks import lm
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
    train: Annotated[Path | None, typer.Argument(help="UTF-8 text file to train on (optional with --resume).")] = None,
    dev: Dev = None,
    out: Out = None,
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
    hidden: Annotated[int | None, typer.Option(help="Units per layer.", show_default="sized for --time-budget; else 640 char, 400 word, 512 subword")] = None,
    embed: Annotated[int | None, typer.Option(help="Embedding size.", show_default="128 char; else the hidden size")] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout.", show_default="0.3; 0.2 word")] = None,
    tie_weights: Annotated[bool | None, typer.Option("--tie-weights/--no-tie-weights", help="Share input and output embeddings.", show_default="on for subword")] = None,
    variational_dropout: Annotated[bool | None, typer.Option("--variational-dropout/--no-variational-dropout", help="One dropout mask per sequence, shared over its time steps.", show_default="off")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step, all processes together.", show_default="32; 20 word")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Back-propagation length.", show_default="128 char, 35 word, 64 subword")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.", show_default="3e-3; 20 with sgd")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay of matrices (AdamW's decoupled decay; an L2 penalty with sgd).", show_default="0.8 char, 0 word, 0.01 subword")] = None,
    clip: Annotated[float | None, typer.Option(help="Gradient-norm clipping, 0 = off.", show_default="1.0; 0.25 with sgd")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.", show_default="20; no limit with --time-budget")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    optimizer: Optimizer = None,
    val_fraction: Annotated[float | None, typer.Option(help="Without --dev: fraction of TRAIN held out for validation, in blocks spread over it.", show_default="0.05")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps.", show_default="each epoch, at most 1000")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping: validations without improvement.", show_default="5; 0 = off; off with --time-budget")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | fp16 (CUDA, with a gradient scaler).", show_default="auto: bf16 where supported, else fp16 on CUDA, else fp32")] = None,
    seed: Seed = None,
    device: Device = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the model and batch shape the run would use (sized for --time-budget when no --hidden/--embed is given) on stdout and exit; trains nothing.")] = False,
) -> None:
    """Train a char/word/subword LSTM (GRU, RNN) language model on a text file.

    Several processes (GPUs, machines): torchrun --nproc-per-node 2 -m textrnn train TRAIN;
    --batch-size is then the batch of all processes together.

    Example: textrnn train corpora/english.txt --time-budget 60
    """
    session = training.start(device, quiet=quiet, progress=progress, threads=threads)
    options = training.given(
        batch_size=batch_size, seq_len=seq_len, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs,
        max_steps=max_steps, time_budget=time_budget, optimizer=optimizer, val_fraction=val_fraction,
        eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_changes = training.given(cell=cell, layers=layers, hidden=hidden, embed=embed, dropout=dropout,
                                   tie_weights=tie_weights, variational=variational_dropout)  # fmt: skip
    resumed = None
    if resume is not None:
        resumed = training.resume_from(resume, "lm", session)
        tok = _saved_tokenizer(resumed.path, resumed.ckpt.meta)
        tokenizer_given = _tokenizer_given(tok, kind=tokenizer.value, unit=unit, normalize=normalize,
                                           file=tokenizer_file, sentencepiece=tokenizer_model)  # fmt: skip
        training.check_unchanged(resumed, model=model_changes, train=options, dev=dev, task=tokenizer_given,
                                 params={"variational": "variational_dropout"})  # fmt: skip
    train, dev, out = training.files_to_train(train, dev, out, resumed)
    for path in (train, dev):
        if path is not None:
            check_text_file(path)
    if resumed is None:
        tok = _new_tokenizer(train, session.group, kind=tokenizer.value, vocab_size=vocab_size, min_count=min_count,
                             unit=unit, normalize=normalize, file=tokenizer_file, sentencepiece=tokenizer_model)  # fmt: skip
    cfg = training.train_config(lm.default_train_config(tok.kind, budget_alone=time_budget is not None and epochs is None),
                                resumed, **options)  # fmt: skip
    if dry_run:
        plan = lm.plan(train, dev, tokenizer=tok, model_overrides=model_changes, train_cfg=cfg, device=session.device,
                       on_log=session.log, resume=resumed.ckpt if resumed else None,
                       fit_small_corpus=batch_size is None and seq_len is None)  # fmt: skip
        _print_plan(plan.describe(), json_out)
        return
    training.make_folder(out)
    display = training.display(session, task="lm", train=train, dev=dev, out=out, resumed=resumed,
                               extras={"tokenizer": tok.kind, "vocab": tok.vocab_size})  # fmt: skip
    with display:
        result = lm.train(
            train, dev, out=out, tokenizer=tok, model_overrides=model_changes, train_cfg=cfg, device=session.device,
            on_progress=display, on_log=session.log, resume=resumed.ckpt if resumed else None,
            fit_small_corpus=batch_size is None and seq_len is None,  # an explicit shape is kept
        )  # fmt: skip
    st = result.state
    training.report(session, st, out, command="textrnn train", best=f"best val loss {st.best_val_loss:.4f}",
                    metrics=("val_loss", "val_bpc"), json_out=json_out)  # fmt: skip


def _print_plan(plan: dict, json_out: bool) -> None:
    """`--dry-run`'s product on stdout: the plan as JSON, or as lines of words."""
    if json_out:
        print(json.dumps(plan))
        return
    shape = " ".join(f"{k}={v}" for k, v in plan["model"].items()) or "the checkpoint's"
    budget = f", time budget {plan['time_budget']:g} s" if plan["time_budget"] else ""
    print(f"model: {shape}")
    print(f"batch: {plan['batch_size']} x {plan['seq_len']} tokens{budget}; corpus {plan['corpus_tokens']:,} tokens")
    print(f"optimizer: {plan['optimizer']}, peak lr {plan['lr']:g}")
    print(f"why: {plan['why'] or 'no budget rule (a shape option, no --time-budget, or a resumed run)'}")


def _saved_tokenizer(path: Path, meta: dict) -> Tokenizer:
    """The tokenizer a checkpoint trained with; CheckpointError when it is missing or malformed."""
    lm.lm_config(meta, source=str(path))  # a bad model config is named with the file here
    try:
        return tokenizer_from_dict(meta["tokenizers"]["text"])
    except KeyError as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete (no {err})") from None
    except (TypeError, AttributeError, TextrnnError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is invalid ({err})") from None


def _tokenizer_given(tok: Tokenizer, *, kind, unit, normalize, file, sentencepiece) -> dict:
    """The tokenizer options on the command line beside what the checkpoint's tokenizer
    (`tok`) is: {parameter: (given, saved)}. --vocab-size and --min-count are not compared:
    they shaped a vocabulary that the checkpoint holds (a cap, or a size sentencepiece may
    lower), and a resumed run reads with the checkpoint's."""
    saved = tok.to_dict()
    pairs = {name: (value, then) for name, value, then in (
        ("tokenizer", kind, tok.kind), ("unit", unit, saved.get("unit")), ("normalize", normalize, saved.get("normalize")),
    ) if training.passed(name)}  # fmt: skip
    described = f"{tok.kind} tokenizer of {tok.vocab_size} ids"
    for name, path, load in (("tokenizer_file", file, load_tokenizer), ("tokenizer_model", sentencepiece, load_sentencepiece_model)):
        if path is not None and load(path).to_dict() != saved:
            pairs[name] = (path, described)
    return pairs


def _new_tokenizer(corpus: Path, group, *, kind, vocab_size, min_count, unit, normalize, file, sentencepiece) -> Tokenizer:
    """The tokenizer the options describe; rank 0 builds it and sends it to the others, so
    that every process numbers tokens alike."""
    tok = None
    if group.main:
        if file is not None:
            tok = load_tokenizer(file)
        elif sentencepiece is not None:
            tok = load_sentencepiece_model(sentencepiece, normalize=normalize)
        else:
            if kind in ("bpe", "unigram") and vocab_size is None:
                vocab_size = 4000
            tok = train_tokenizer(kind, iter_text_chunks(corpus), vocab_size=vocab_size, min_count=min_count,
                                  unit=unit, normalize=normalize)  # fmt: skip
    if group.active:
        tok = tokenizer_from_dict(distributed.broadcast_object(tok.to_dict() if group.main else None))
    return tok


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
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="The trained model's checkpoint.", show_default="newest in ./checkpoints/")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text to continue.", show_default="stdin when it is not a terminal")] = None,
    next_k: Annotated[int | None, typer.Option("--next", help="Print the K most probable next words (char models: grapheme clusters; subword models: whole words) with their probabilities, token<TAB>probability; stdin prompts: one block per line.")] = None,
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
    seed: Seed = None,
    continuation_only: Annotated[bool, typer.Option("--continuation-only", help="Do not echo the prompt.")] = False,
    precision: Annotated[str, typer.Option(help="auto | fp32 | bf16 | int8: the generation step's weights (auto: int8 on x86 CPUs, else bf16 where native, else fp32).")] = "auto",
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Generate text from a language model, streaming it to stdout; or, with --next K, list
    the K most probable next words.

    Example: textrnn sample --prompt "ROMEO:" --temperature 0.7 --length 300
    Example: textrnn sample --prompt "the old man" --next 5
    """
    console = stderr_console(quiet)
    sampling = SamplingConfig(
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, greedy=greedy
    )
    gen = lm.GenerateConfig(length=length, num_samples=num_samples, stop=stop, seed=seed)
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    sampled = top_k or top_p != 1.0 or temperature != 1.0 or greedy or repetition_penalty != 1.0 or num_samples != 1
    if beam > 1 and sampled:
        raise UsageError(
            "--beam searches for the most probable text; it cannot be combined with "
            "--temperature, --top-k, --top-p, --greedy, --repetition-penalty or --num-samples"
        )
    if next_k is not None and (sampled or beam > 1 or stop or continuation_only):
        raise UsageError("--next lists next words; it cannot be combined with sampling, --beam, --stop or --continuation-only")
    beam_cfg = BeamConfig(beam=beam, nbest=nbest, length_penalty=length_penalty, min_length=min_length, max_length=length) if beam > 1 else None
    if beam_cfg is None and (nbest != 1 or scores):
        raise UsageError("--nbest and --scores need beam search (--beam N with N > 1)")
    set_threads(threads)
    if checkpoint is None:
        checkpoint = newest_checkpoint()
        log(console, f"using checkpoint {checkpoint}")
    model = lm.load(checkpoint, device=default_device(device), precision=precision)
    if next_k is not None:
        _print_next(model, prompt, next_k, json_out=json_out)
        return
    if prompt is None:
        prompt = _read_stdin_prompt()
    lm.encode_prompt(model.tokenizer, prompt)  # unknown characters fail here, before anything is printed
    echo = "" if continuation_only else prompt
    if beam_cfg is not None:
        _print_beams(lm.beam_generate(model, prompt=prompt, beam=beam_cfg, stop=stop), echo, separator, scores, json_out)
    elif json_out:
        results = lm.generate(model, prompt=prompt, config=gen, sampling=sampling)
        print(json.dumps([{"text": r.text, "logprob": r.logprob, "tokens": r.tokens} for r in results], ensure_ascii=False))
    else:
        _stream_samples(model, prompt, echo, separator, gen, sampling)


def _print_beams(results, echo: str, separator: str, scores: bool, json_out: bool) -> None:
    if json_out:
        print(json.dumps([{"text": t, "score": h.score, "logprob": h.logprob, "tokens": len(h.tokens)} for t, h in results], ensure_ascii=False))
        return
    out = sys.stdout
    for i, (text, h) in enumerate(results):
        if i:
            out.write(separator)
        if scores:
            out.write(f"[score {h.score:.4f} logprob {h.logprob:.4f}] ")
        _write_sample(out, echo + text)
    out.flush()


def _stream_samples(model: lm.LoadedLM, prompt: str, echo: str, separator: str, gen, sampling) -> None:
    """Row 0 streams as it is produced; the other rows of the batch follow when done."""
    out = sys.stdout

    def on_text(row: int, text: str) -> None:
        if row == 0:
            out.write(text)
            out.flush()

    if echo:
        out.write(echo)
        out.flush()
    results = lm.generate(model, prompt=prompt, config=gen, sampling=sampling, on_text=on_text)
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


def _print_next(model: lm.LoadedLM, prompt: str | None, k: int, *, json_out: bool) -> None:
    """--next: a block of `token<TAB>probability` lines (or a JSON object) per prompt; the
    prompts are --prompt, else the lines of stdin, each answered as soon as it is read."""
    prompts = [prompt] if prompt is not None else (line.rstrip("\r") for line in stdin_lines())
    out = sys.stdout
    for i, text in enumerate(prompts):
        found = next(model.predict([text], k=k))
        if json_out:
            candidates = [{"token": c.token, "text": c.text, "probability": c.probability} for c in found]
            out.write(json.dumps({"prompt": text, "next": candidates}, ensure_ascii=False) + "\n")
        else:
            out.write(("\n" if i else "") + "".join(f"{_escape(c.token)}\t{c.probability:.6g}\n" for c in found))
        out.flush()


def _escape(token: str) -> str:
    """A token on one line of a TSV: backslash, tab, line feed and carriage return escaped."""
    return token.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# ---- eval ---------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    file: Annotated[Path | None, typer.Argument(help="Text to score.", show_default="stdin")] = None,
    old_file: Annotated[Path | None, typer.Argument(hidden=True, help="The old form's FILE (textrnn eval CKPT FILE).")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="The trained model's checkpoint.")] = None,
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
) -> None:
    """Score a text: cross-entropy per token (nats), perplexity and bits per character.

    Example: textrnn eval heldout.txt -c checkpoints/input.ckpt --json
    """
    file, checkpoint = _eval_inputs(file, old_file, checkpoint)
    set_threads(threads)
    model = lm.load(checkpoint, device=default_device(device))
    with ticker(progress, quiet=quiet, unit="tokens") as tick:
        if file is None:
            metrics = model.evaluate_text(_read_stdin_text(), name="<stdin>", on_progress=tick)
        else:
            metrics = model.evaluate(file, on_progress=tick)
    if json_out:
        print(json.dumps(metrics))
        return
    for key in ("loss_nats", "perplexity", "bits_per_char", "nats_per_char", "tokens", "chars", "unknown"):
        value = metrics[key]
        print(f"{key:14} {value:.4f}" if isinstance(value, float) else f"{key:14} {value}")


def _eval_inputs(file: Path | None, second: Path | None, checkpoint: Path | None) -> tuple[Path | None, Path]:
    """(FILE, CHECKPOINT) of `eval FILE -c CKPT`, or of the old form `eval CKPT [FILE]`
    (told apart by its first argument being a checkpoint), which prints a notice."""
    if checkpoint is not None:
        if second is not None:
            raise UsageError(f"got an extra argument {second}: textrnn eval FILE -c CHECKPOINT")
        return file, checkpoint
    if file is not None and (second is not None or _is_checkpoint(file)):
        old_form("`textrnn eval CHECKPOINT FILE`", "`textrnn eval FILE -c CHECKPOINT`")
        return second, file
    raise UsageError("missing the checkpoint: textrnn eval FILE -c CHECKPOINT")


def _is_checkpoint(path: Path) -> bool:
    """Named like one (.ckpt) or starting like one."""
    if path.suffix == ".ckpt":
        return True
    try:
        read_meta(path)
    except CheckpointError:
        return False
    return True


def _read_stdin_text() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no FILE given and nothing on stdin")
    text = _read_stdin_prompt()
    if not text:
        raise DataError("stdin is empty")
    return text
