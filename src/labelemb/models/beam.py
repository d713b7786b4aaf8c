"""Greedy decoding and batched beam search for :class:`~labelemb.models.seq2seq.Seq2Seq`.

Scores are sums of the main head's log-probabilities (EOS included when a hypothesis finished).
With ``length_norm = a > 0`` finished hypotheses are compared by ``score / length**a``
(``length`` counts EOS); alive ones are always ranked by the raw score.

Beam search keeps, per sentence, ``beam`` alive hypotheses. At each step it takes the best
``2 * beam`` extensions; those among the best ``beam`` that end in EOS become finished, and the
best ``beam`` that do not stay alive (the fairseq rule, so ``beam=1`` is exactly greedy). A
sentence stops when no alive hypothesis can still beat its best finished one (log-probabilities
only fall as a hypothesis grows) or, with length normalisation, when ``beam`` hypotheses have
finished.

**Never empty by default.** EOS may not come before ``min_len`` tokens (fairseq's ``--min-len``,
1 by default there too). Without it an under-trained model, for which EOS is the likeliest
first token (EOS ends every target sentence, so it is the most frequent token early in
training), decodes every sentence as nothing; and a wide beam can do so where greedy does not,
because every token a longer hypothesis adds costs log-probability, so a one-step ``EOS`` of
moderate probability outscores them on raw scores. Finished hypotheses are therefore ranked by
``score / length`` by default (fairseq's ``--lenpen 1`` on normalised scores; Marian's
``--normalize`` is 0 unless given, 1 when given bare), which removes most of that bias to short
outputs but alone does not forbid an empty one. :func:`empty_outputs_warning` is the line to
show when many outputs are empty all the same (``min_len=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Sized

import torch
from torch import Tensor

from ..data.vocab import BOS, EOS, PAD
from .seq2seq import Seq2Seq

__all__ = [
    "Decoded", "greedy_decode", "beam_search", "empty_outputs_warning", "DEFAULT_LENGTH_NORM",
    "DEFAULT_MIN_LEN", "EMPTY_WARN_SHARE",
]

#: ``a`` in ``score / length**a``, the rank of finished hypotheses (fairseq's default).
DEFAULT_LENGTH_NORM = 1.0
#: Tokens every output has before EOS may end it: 1, so that no output is empty.
DEFAULT_MIN_LEN = 1
#: :func:`empty_outputs_warning` speaks from this share of empty outputs on.
EMPTY_WARN_SHARE = 0.05


@dataclass
class Decoded:
    """Per sentence: ``tokens`` (ids, no BOS/EOS), ``scores`` (sum of log-probabilities, EOS
    included; after ``max_len`` tokens EOS is forced), ``finished`` (False when the output
    reached ``max_len`` tokens, so it may have been cut) and
    ``attention`` (for each output token, the source position with the highest weight)."""

    tokens: list[list[int]]
    scores: list[float]
    finished: list[bool]
    attention: list[list[int]]


#: A finished hypothesis: (normalised score, raw score, tokens, attention positions).
Finished = tuple[float, float, list[int], list[int]]


def _no_specials(logp: Tensor, last_step: bool, too_short: bool) -> Tensor:
    # PAD and BOS are never generated; UNK may be (and can be replaced from the source).
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    if too_short:  # fewer than min_len tokens written: EOS may not follow yet
        logp[:, EOS] = float("-inf")
    if last_step:  # max_len tokens written: only EOS may follow
        eos = logp[:, EOS].clone()
        logp.fill_(float("-inf"))
        logp[:, EOS] = eos
    return logp


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, max_len: int = 100,
                  min_len: int = DEFAULT_MIN_LEN) -> Decoded:
    """Pick the most probable token at each step; ``min_len`` to ``max_len`` tokens before EOS.

    Shape: ``src (B, S)``, ``src_lengths (B,)``.
    """
    _check_lengths(max_len, min_len)
    enc = model.encode(src, src_lengths)
    n = src.shape[0]
    tokens = torch.full((n,), BOS, dtype=torch.long, device=src.device)
    state = enc.state
    alive = torch.ones(n, dtype=torch.bool, device=src.device)
    scores = torch.zeros(n, dtype=torch.float32, device=src.device)
    out, pos = [], []
    for t in range(max_len + 1):
        logp, state, weights = model.step(tokens, enc, state)
        logp = _no_specials(logp, t == max_len, t < min_len)
        best_logp, tokens = logp.max(dim=-1)
        scores += torch.where(alive, best_logp, 0.0)
        out.append(torch.where(alive, tokens, PAD))
        pos.append(weights.argmax(-1))
        alive &= tokens != EOS
        if not bool(alive.any()):
            break
    out_t = torch.stack(out, 1).tolist()
    pos_t = torch.stack(pos, 1).tolist()
    result = Decoded([], scores.tolist(), [], [])
    for row, p in zip(out_t, pos_t):
        length = row.index(EOS)  # always there: EOS is forced after max_len tokens
        result.tokens.append(row[:length])
        result.attention.append(p[:length])
        result.finished.append(length < max_len)
    return result


@torch.no_grad()
def beam_search(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam: int = 10, max_len: int = 100,
    length_norm: float = DEFAULT_LENGTH_NORM, min_len: int = DEFAULT_MIN_LEN,
) -> Decoded:
    """Batched beam search; returns the best hypothesis of each sentence.

    Args:
        beam: hypotheses kept per sentence (1 is greedy).
        max_len: at most this many tokens before EOS.
        length_norm: ``a`` in ``score / length**a`` for ranking finished hypotheses (0: raw).
        min_len: at least this many tokens before EOS (0 allows an empty output).

    Shape: ``src (B, S)``, ``src_lengths (B,)``.
    """
    _check_lengths(max_len, min_len)
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an int >= 1, got {beam!r}")
    if not length_norm >= 0 or length_norm == float("inf"):  # NaN fails the first test
        raise ValueError(f"length_norm must be >= 0 and finite, got {length_norm!r}")
    dev = src.device
    n, k = src.shape[0], beam
    enc = model.encode(src, src_lengths).index_select(
        torch.arange(n, device=dev).repeat_interleave(k)
    )
    state = enc.state
    last = torch.full((n * k,), BOS, dtype=torch.long, device=dev)
    scores = torch.full((n, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live hypothesis at first, so the first step picks distinct tokens
    hist = torch.zeros((n * k, 0), dtype=torch.long, device=dev)
    apos = torch.zeros((n * k, 0), dtype=torch.long, device=dev)
    pool: list[list[Finished]] = [[] for _ in range(n)]  # finished hypotheses per sentence
    done = [False] * n
    base = torch.arange(n, device=dev)[:, None] * k
    for t in range(max_len + 1):
        logp, state, weights = model.step(last, enc, state)
        logp = _no_specials(logp, t == max_len, t < min_len)
        vocab = logp.shape[1]
        cand = (scores.reshape(-1, 1) + logp).reshape(n, k * vocab)
        top_s, top_i = cand.topk(min(2 * k, k * vocab), dim=1)
        top_beam, top_tok = top_i // vocab, top_i % vocab
        is_eos = top_tok == EOS

        # EOS among the best k extensions: finished hypotheses.
        fin = is_eos[:, :k] & torch.isfinite(top_s[:, :k])
        if bool(fin.any()):
            _finish(pool, done, fin, top_s, base + top_beam, hist, apos, t + 1, length_norm)

        # The best k extensions that do not end here stay alive.
        sel_s, sel_j = top_s.masked_fill(is_eos, float("-inf")).topk(k, dim=1)
        rows = (base + top_beam.gather(1, sel_j)).reshape(-1)
        new_tok = top_tok.gather(1, sel_j).reshape(-1)
        hist = torch.cat([hist.index_select(0, rows), new_tok[:, None]], 1)
        apos = torch.cat([apos.index_select(0, rows),
                          weights.index_select(0, rows).argmax(-1, keepdim=True)], 1)
        state = (state[0].index_select(1, rows), state[1].index_select(1, rows))
        scores, last = sel_s, new_tok

        _update_done(pool, done, scores[:, 0].tolist(), k, length_norm, max_len)
        if all(done):
            break
    return _best_of_pools(pool, scores, hist, apos, k, max_len)


def _finish(pool: list[list[Finished]], done: list[bool], fin: Tensor, top_s: Tensor,
            top_rows: Tensor, hist: Tensor, apos: Tensor, length: int,
            length_norm: float) -> None:
    """Add the hypotheses that end with EOS here (``fin``; ``length`` counts the EOS)."""
    for b, j in fin.nonzero().tolist():
        if done[b]:
            continue
        row, raw = int(top_rows[b, j]), float(top_s[b, j])
        pool[b].append((raw / length**length_norm, raw, hist[row].tolist(), apos[row].tolist()))


def _update_done(pool: list[list[Finished]], done: list[bool], best_alive: list[float], k: int,
                 length_norm: float, max_len: int) -> None:
    """A sentence is done when no live hypothesis can beat its best finished one."""
    for b in range(len(done)):
        if done[b] or not pool[b]:
            if not done[b] and best_alive[b] == float("-inf"):
                done[b] = True  # nothing left to extend
            continue
        best_fin = max(p[0] for p in pool[b])
        if length_norm == 0.0:
            done[b] = best_fin >= best_alive[b]
        else:
            # Raw scores only fall; the normalised score of any continuation is at most
            # best_alive / max_length**a.
            bound = best_alive[b] / float(max_len + 1) ** length_norm
            done[b] = len(pool[b]) >= k or best_fin >= bound


def _best_of_pools(pool: list[list[Finished]], scores: Tensor, hist: Tensor, apos: Tensor,
                   k: int, max_len: int) -> Decoded:
    result = Decoded([], [], [], [])
    for b in range(len(pool)):
        # Not empty in practice: EOS is forced after max_len tokens.
        best = max(pool[b], key=lambda p: p[0]) if pool[b] else (
            0.0, float(scores[b, 0]), hist[b * k].tolist(), apos[b * k].tolist())
        _, raw, toks, att = best
        result.tokens.append(toks)
        result.scores.append(raw)
        result.finished.append(len(toks) < max_len)
        result.attention.append(att)
    return result


def _check_lengths(max_len: int, min_len: int) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    if isinstance(min_len, bool) or not isinstance(min_len, int) or min_len < 0:
        raise ValueError(f"min_len must be an int >= 0, got {min_len!r}")
    if min_len > max_len:
        raise ValueError(f"min_len ({min_len}) must be <= max_len ({max_len})")


def empty_outputs_warning(outputs: Sequence[Sized], what: str = "outputs") -> str | None:
    """The one line to show when at least :data:`EMPTY_WARN_SHARE` of ``outputs`` (token
    lists or strings) are empty, else None. A trained model leaves almost none empty; many
    mean an under-trained model decoded with ``min_len=0``, and a score near 0."""
    empty = sum(1 for out in outputs if len(out) == 0)
    if not outputs or empty == 0 or empty < EMPTY_WARN_SHARE * len(outputs):
        return None
    return (f"warning: {empty} of {len(outputs)} {what} are empty: the model ends most "
            "sentences at once (under-trained?); decode with a minimum length of 1 or more "
            "(the default) or train longer")
