"""One scorer for every language model of the peers benchmark: held-out nats per character.

The rule, the same for every model. The held-out text (which starts at the beginning of a
line) is cut at line starts into `ROWS` pieces of about equal length. Each piece is scored
as one stream from a fresh model, given only the token that precedes it in the corpus, a
line break (textrnn's "\n" token, the word example's `<eos>`): every token of the piece is
predicted in order; a recurrent model carries its state across the whole piece, a
windowed model (nanoGPT) slides its window `block // 8` tokens at a time, so that every
token but a piece's first few sees at least 7/8 of its full context. (Pieces, not one
stream, because a batch of one steps a recurrent model too slowly: 16 rows is also what
`textrnn eval` scores at once.) The negative log-likelihoods (nats) of all the tokens are
summed and divided by the text's characters (Unicode code points of the file as stored,
newlines included): nats per character, for char and word models alike.

For a peer this file runs as a separate process inside the peer's scratch folder, where
the peer's own modules load its model the way its `sample.py` / `generate.py` do; nothing
of a peer is ever imported by textrnn or by the benchmark process. It prints one JSON
object on stdout:

    python peer_score.py nanogpt HELDOUT --out-dir out-shakespeare-char --meta data/shakespeare_char/meta.pkl
    python peer_score.py word_lm HELDOUT --data data --checkpoint model.pt

textrnn's checkpoints are scored by `score_textrnn` (the same functions), in the benchmark
process. This file imports nothing from textrnn or the benchmarks at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

CHUNK = 256  # tokens per forward call of a recurrent model (the state is carried across)
ROWS = 16  # pieces of the held-out text, scored side by side
WINDOW_BATCH = 64  # windows per forward call of a windowed model
IGNORE = -100  # target of the padding after a short row's end


def pieces(text: str, rows: int = ROWS) -> list[str]:
    """`text` cut at line starts into at most `rows` pieces of about equal length."""
    cuts = [0]
    for k in range(1, rows):
        at = text.find("\n", max(cuts[-1], len(text) * k // rows)) + 1
        if 0 < at < len(text) and at > cuts[-1]:
            cuts.append(at)
    return [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True)]


@torch.no_grad()
def rows_nll(forward: Callable, rows: list[torch.Tensor], chunk: int = CHUNK) -> float:
    """Summed nats of `row[1:]` for every row, each token given the ids before it in its
    row, through a recurrent model: the rows side by side, the state carried across chunks.

    `forward(x, state)` takes x of shape (B, T) and returns (scores (B, T, V), new state);
    scores are logits or log-probabilities (log_softmax leaves the latter unchanged).
    """
    steps = max(len(r) for r in rows) - 1
    x = torch.zeros(len(rows), steps, dtype=torch.long)  # (B, T): padding reads id 0...
    y = torch.full((len(rows), steps), IGNORE, dtype=torch.long)  # ...and scores nothing
    for i, r in enumerate(rows):
        x[i, : len(r) - 1] = r[:-1]
        y[i, : len(r) - 1] = r[1:]
    total, state = 0.0, None
    for start in range(0, steps, chunk):
        scores, state = forward(x[:, start : start + chunk], state)  # (B, t, V)
        target = y[:, start : start + chunk]  # (B, t)
        total += F.cross_entropy(
            scores.reshape(-1, scores.shape[-1]).float(), target.reshape(-1),
            ignore_index=IGNORE, reduction="sum",
        ).item()  # fmt: skip
    return total


@torch.no_grad()
def window_nll(logits_of: Callable, ids: torch.Tensor, block: int, stride: int) -> float:
    """Summed nats of `ids[1:]` under a model that sees at most `block` tokens.

    Windows of `block` inputs start every `stride` tokens (the last one ends at the end of
    the row); each scores only the targets the previous window did not, so every target
    is scored once, with at least `block - stride` tokens of context once the row has
    that many. `logits_of(x, y)` takes (B, T) inputs and targets, returns (B, T, V) logits.
    """
    n = len(ids) - 1  # targets ids[1..n]
    width = min(block, n)
    starts = list(range(0, n - width + 1, stride))
    if starts[-1] != n - width:
        starts.append(n - width)
    fresh = [width] + [b - a for a, b in zip(starts, starts[1:], strict=False)]  # new targets
    total = 0.0
    for i in range(0, len(starts), WINDOW_BATCH):
        group = starts[i : i + WINDOW_BATCH]
        x = torch.stack([ids[s : s + width] for s in group])  # (B, T)
        y = torch.stack([ids[s + 1 : s + 1 + width] for s in group])  # (B, T)
        logits = logits_of(x, y)  # (B, T, V)
        for row, k in enumerate(fresh[i : i + len(group)]):
            total += F.cross_entropy(
                logits[row, width - k :].float(), y[row, width - k :], reduction="sum"
            ).item()
    return total


def result(nats: float, tokens: int, text: str, **extra: object) -> dict:
    return {
        "nats": nats,
        "tokens": tokens,
        "chars": len(text),
        "nats_per_char": nats / len(text),
        "nats_per_token": nats / tokens,
        **extra,
    }


def read_heldout(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- the programs ----------------------------------------------------------------------------


def score_nanogpt(heldout: str, out_dir: str, meta_path: str, stride: int | None) -> dict:
    """nanoGPT's ckpt.pt, loaded as its sample.py loads it; characters by its meta.pkl."""
    import pickle
    from contextlib import redirect_stdout

    from model import GPT, GPTConfig  # nanoGPT's model.py, in the current folder

    checkpoint = torch.load(os.path.join(out_dir, "ckpt.pt"), map_location="cpu")
    with redirect_stdout(sys.stderr):  # it prints its parameter count; stdout is our JSON
        model = GPT(GPTConfig(**checkpoint["model_args"]))
    state_dict = checkpoint["model"]
    for k in list(state_dict):  # as sample.py: a compiled model's names carry a prefix
        if k.startswith("_orig_mod."):
            state_dict[k[len("_orig_mod.") :]] = state_dict.pop(k)
    model.load_state_dict(state_dict)
    model.eval()
    with open(meta_path, "rb") as f:
        stoi = pickle.load(f)["stoi"]
    text = read_heldout(heldout)
    unknown = sorted(set(text) - set(stoi))
    if unknown:
        raise SystemExit(
            f"peer_score: held-out characters outside nanoGPT's vocabulary: {unknown!r}"
        )
    rows = [
        torch.tensor([stoi[c] for c in "\n" + piece], dtype=torch.long) for piece in pieces(text)
    ]
    block = model.config.block_size
    stride = stride or max(1, block // 8)
    nats = sum(window_nll(lambda x, y: model(x, y)[0], ids, block, stride) for ids in rows)
    args = checkpoint["model_args"]
    shape = f"GPT {args['n_layer']}x{args['n_embd']}, {args['n_head']} heads, block {block}"
    return result(
        nats, len(text), text, unknown_tokens=0, params=params(model), model=shape, stride=stride,
        checkpoint_iter=checkpoint.get("iter_num"),
    )  # fmt: skip


def score_word_lm(heldout: str, data_dir: str, checkpoint: str) -> dict:
    """The word example's model.pt and vocabulary, rebuilt as its generate.py does (its
    Corpus reads train, valid and test, in that order); the held-out file is tokenized by
    the Corpus' own `tokenize` (whitespace words, one `<eos>` per line), then cut after the
    `<eos>` that ends each piece's last line."""
    import data  # the example's data.py, in the current folder

    corpus = data.Corpus(data_dir)
    with open(checkpoint, "rb") as f:
        model = torch.load(f, map_location="cpu", weights_only=False)  # our own file
    model.eval()
    eos = corpus.dictionary.word2idx["<eos>"]
    text = read_heldout(heldout)
    ids = corpus.tokenize(heldout)
    ends = (ids == eos).nonzero().flatten().tolist()  # one <eos> per line
    rows, start, line = [], 0, 0
    for piece in pieces(text):
        line += piece.count("\n")
        stop = ends[line - 1] + 1
        rows.append(torch.cat([torch.tensor([eos]), ids[start:stop]]))
        start = stop
    if start != len(ids):
        raise SystemExit(f"peer_score: {heldout}: its lines and its <eos> tokens do not match")
    seen = set(corpus.train.tolist())
    unknown = sum(1 for i in ids.tolist() if i not in seen)

    def forward(x: torch.Tensor, hidden):
        hidden = model.init_hidden(x.shape[0]) if hidden is None else hidden
        out, hidden = model(x.t(), hidden)  # (T, B) in; log-probabilities (T * B, V) out
        return out.view(x.shape[1], x.shape[0], -1).transpose(0, 1), hidden  # (B, T, V)

    nats = rows_nll(forward, rows)
    shape = f"{model.rnn_type} {model.nlayers}x{model.nhid}, vocabulary {model.ntoken}"
    return result(nats, len(ids), text, unknown_tokens=unknown, params=params(model), model=shape)


def score_textrnn(heldout: str, checkpoint: str) -> dict:
    """A textrnn checkpoint through textrnn's loader and tokenizer (fp32, eval mode)."""
    from textrnn.tasks.lm import load

    lm = load(checkpoint)
    tok = lm.tokenizer
    text = read_heldout(heldout)
    newline = tok.encode("\n")
    if len(newline) != 1:
        raise ValueError(f"{checkpoint}: its tokenizer does not make a line break one token")
    rows = [torch.tensor(newline + tok.encode(piece), dtype=torch.long) for piece in pieces(text)]
    unknown = sum(int((r[1:] == tok.unk_id).sum()) for r in rows)

    def forward(x: torch.Tensor, state):
        return lm.model(x, state)  # (B, T, V) logits, state

    nats = rows_nll(forward, rows)
    c = lm.model.config
    shape = f"{c.cell.upper()} {c.layers}x{c.hidden}, embed {c.embed}, vocabulary {c.vocab_size}"
    tokens = sum(len(r) - 1 for r in rows)
    return result(nats, tokens, text, unknown_tokens=unknown, params=params(lm.model), model=shape)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="peer_score.py", description=__doc__.split("\n\n")[0])
    p.add_argument("program", choices=["nanogpt", "word_lm"])
    p.add_argument("heldout", help="the held-out text file (UTF-8)")
    p.add_argument("--out-dir", default="out-shakespeare-char", help="nanogpt: its out_dir")
    p.add_argument("--meta", default="data/shakespeare_char/meta.pkl", help="nanogpt: meta.pkl")
    p.add_argument("--stride", type=int, help="nanogpt: window stride [block // 8]")
    p.add_argument("--data", default="data", help="word_lm: its --data folder")
    p.add_argument("--checkpoint", default="model.pt", help="word_lm: its --save file")
    args = p.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # the peer's own modules, from its folder
    if args.program == "nanogpt":
        out = score_nanogpt(args.heldout, args.out_dir, args.meta, args.stride)
    else:
        out = score_word_lm(args.heldout, args.data, args.checkpoint)
    out["torch_threads"] = torch.get_num_threads()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
