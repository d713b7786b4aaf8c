"""Seq2seq model, label-embedding loss on token sequences, greedy and beam decoding."""

from __future__ import annotations

import itertools

import pytest
import torch

from labelemb import CompressedLabelEmbedding, LabelSmoothingLoss
from labelemb.chunked import ChunkedLabelEmbeddingLoss
from labelemb.data.parallel_text import ParallelCorpus, collate
from labelemb.data.vocab import EOS, PAD, UNK, Vocab
from labelemb.commands.seq2seq import nearest_words
from labelemb.engine.decoding import seq2seq_criterion
from labelemb.engine.seq2seq import sequence_loss
from labelemb.models.beam import (DEFAULT_MIN_LEN, EMPTY_WARN_SHARE, beam_search,
                                  empty_outputs_warning, greedy_decode)
from labelemb.models.decoding import decode_corpus
from labelemb.models.seq2seq import Seq2Seq, Seq2SeqConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny ops: a second thread only adds contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_criterion(mode, vocab, chunked=False):
    """``mode``'s training loss over ``vocab``, as ``seq2seq train`` builds it, every term on
    from the first update (no warm-up)."""
    return seq2seq_criterion(mode, vocab, dict(label_dim=6, warmup_steps=0, chunked_loss=chunked,
                                               smoothing=0.1, ols_alpha=0.5))


def make_model(seed=0, src_v=20, tgt_v=12, layers=1, dropout=0.0, aux=True, share=False):
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(src_v, tgt_v, emb_dim=16, hidden=24, layers=layers, dropout=dropout,
                        share_embeddings=share)
    return Seq2Seq(cfg, aux_head=aux)


def random_batch(seed, n=5, src_v=20, tgt_v=12):
    g = torch.Generator().manual_seed(seed)

    def sent(v):
        length = int(torch.randint(1, 7, (1,), generator=g))
        return torch.randint(4, v, (length,), generator=g).tolist()

    return collate([sent(src_v) for _ in range(n)], [sent(tgt_v) for _ in range(n)])


def test_shapes_and_modes():
    b = random_batch(0)
    logits, aux = make_model()(b.src, b.src_lengths, b.tgt_in)
    assert logits.shape == aux.shape == (5, b.tgt_in.shape[1], 12)
    logits, aux = make_model(aux=False)(b.src, b.src_lengths, b.tgt_in)
    assert aux is None and logits.shape[-1] == 12
    shared = make_model(src_v=12, share=True)
    assert shared.src_embed is shared.tgt_embed
    with pytest.raises(ValueError, match="share_embeddings needs one vocabulary"):
        make_model(src_v=20, tgt_v=12, share=True)


def test_aux_head_gradient_never_reaches_the_encoder():
    b = random_batch(1)
    model = make_model()
    _, aux = model(b.src, b.src_lengths, b.tgt_in)
    aux.sum().backward()
    assert model.encoder.weight_ih_l0.grad is None
    assert model.head.aux_fc.weight.grad.abs().sum() > 0  # W2 learns, W1 does not
    assert model.head.fc.weight.grad is None


def _pad_columns(x, extra):
    return torch.cat([x, torch.full((x.shape[0], extra), PAD, dtype=x.dtype)], 1)


@pytest.mark.parametrize("mode", ["emb", "baseline"])
def test_appending_pad_changes_neither_loss_nor_any_gradient(mode):
    """Full model + loss: PAD columns on source and target leave loss and every gradient
    (model and label embedding) unchanged."""
    vocab = Vocab([f"w{i}" for i in range(8)])  # 12 target ids
    model = make_model(seed=3, layers=2, aux=(mode == "emb"))
    b = random_batch(2, n=6)
    if mode == "emb":
        # Make half the targets what the auxiliary head predicts, so the masked
        # embedding term (only where argmax aux == y) is active.
        with torch.no_grad():
            _, aux = model(b.src, b.src_lengths, b.tgt_in)
        pred = aux.argmax(-1)
        take = (torch.arange(b.tgt_out.numel()).reshape(b.tgt_out.shape) % 2 == 0) & (b.tgt_out != PAD)
        b.tgt_out = torch.where(take, pred, b.tgt_out)

    def loss_and_grads(batch):
        torch.manual_seed(0)
        crit = make_criterion(mode, vocab)
        model.zero_grad()
        loss, terms = sequence_loss(model, crit, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        grads.update({f"crit.{n}": p.grad.clone() for n, p in crit.named_parameters()
                      if p.grad is not None})
        return loss.detach(), terms, grads

    loss, terms, grads = loss_and_grads(b)
    if mode == "emb":
        assert set(terms) == {"ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"}
        assert float(terms["embedding_ce"]) > 0 and "crit.embedding.A.weight" in grads
    padded = type(b)(_pad_columns(b.src, 3), b.src_lengths, _pad_columns(b.tgt_in, 4),
                     _pad_columns(b.tgt_out, 4), b.index)
    loss2, terms2, grads2 = loss_and_grads(padded)
    torch.testing.assert_close(loss2, loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads2.keys()
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("min_len", [0, DEFAULT_MIN_LEN, 3])
def test_beam_one_equals_greedy(min_len):
    for seed in range(4):
        model = make_model(seed=seed, layers=2).eval()
        b = random_batch(10 + seed, n=7)
        g = greedy_decode(model, b.src, b.src_lengths, max_len=9, min_len=min_len)
        bs = beam_search(model, b.src, b.src_lengths, beam=1, max_len=9, min_len=min_len)
        assert min(len(t) for t in g.tokens) >= min_len
        assert bs.tokens == g.tokens
        assert bs.attention == g.attention
        assert bs.scores == pytest.approx(g.scores, abs=1e-5)


def _teacher_forced(model, b, tokens):
    """log p(tokens + EOS | src) under the model, per sentence."""
    t = collate([[0]] * len(tokens), tokens)
    return model.sequence_log_prob(b.src, b.src_lengths, t.tgt_in, t.tgt_out).tolist()


@pytest.fixture(scope="module")
def half_trained():
    """A model trained for 10 updates to map 1-3 source words onto 3 target words: unsure
    enough that greedy often misses the best sequence, with best lengths from 0 to 3."""
    torch.manual_seed(0)
    model = make_model(seed=0, src_v=10, tgt_v=7, aux=False)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    crit = LabelSmoothingLoss(0.0, ignore_index=PAD)
    for _ in range(10):
        srcs = [torch.randint(4, 10, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g)
                for _ in range(16)]
        b = collate([s.tolist() for s in srcs], [(4 + s % 3).tolist() for s in srcs])
        loss, _ = sequence_loss(model, crit, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(1)
    srcs = [torch.randint(4, 10, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()
            for _ in range(12)]
    return model.eval(), srcs


def _exact_best(model, srcs, max_len, length_norm, min_len=0):
    seqs = [list(s) for n in range(min_len, max_len + 1)
            for s in itertools.product([UNK, 4, 5, 6], repeat=n)]
    best = []
    for src in srcs:
        row = collate([src] * len(seqs), seqs)
        scores = model.sequence_log_prob(row.src, row.src_lengths, row.tgt_in, row.tgt_out)
        norm = scores / torch.tensor([len(s) + 1.0 for s in seqs]) ** length_norm
        best.append(seqs[int(norm.argmax())])
    return best, len(seqs)


@pytest.mark.parametrize("min_len", [0, 1])
@pytest.mark.parametrize("length_norm", [0.0, 1.0])
def test_wide_beam_is_exact_search(half_trained, length_norm, min_len):
    """With a beam wider than the number of prefixes, beam search must find the best of all
    sequences (enumerated here) of ``min_len`` to 3 tokens: proves scoring, pruning and
    stopping are right."""
    model, srcs = half_trained
    b = collate(srcs, [[]] * len(srcs))
    best, n_seqs = _exact_best(model, srcs, 3, length_norm, min_len)
    assert len({len(x) for x in best}) >= 2  # the check covers short and long answers
    got = beam_search(model, b.src, b.src_lengths, beam=n_seqs, max_len=3,
                      length_norm=length_norm, min_len=min_len)
    assert got.tokens == best
    assert got.scores == pytest.approx(_teacher_forced(model, b, got.tokens), abs=1e-4)


def test_beam_on_a_half_trained_model(half_trained):
    """Raw scores (``length_norm=0``): a wider beam never scores below greedy."""
    model, srcs = half_trained
    b = collate(srcs, [[]] * len(srcs))
    g = greedy_decode(model, b.src, b.src_lengths, max_len=3, min_len=0)
    best, _ = _exact_best(model, srcs, 3, 0.0)
    assert sum(x != y for x, y in zip(g.tokens, best)) >= 2  # greedy is not enough here
    one = beam_search(model, b.src, b.src_lengths, beam=1, max_len=3, length_norm=0.0,
                      min_len=0)
    assert one.tokens == g.tokens and one.scores == pytest.approx(g.scores, abs=1e-5)
    for k in (2, 3, 5):
        bs = beam_search(model, b.src, b.src_lengths, beam=k, max_len=3, length_norm=0.0,
                         min_len=0)
        assert bs.scores == pytest.approx(_teacher_forced(model, b, bs.tokens), abs=1e-4)
        assert all(sb >= sg - 1e-5 for sb, sg in zip(bs.scores, g.scores))


def test_decoding_rejects_bad_arguments():
    model = make_model().eval()
    b = random_batch(0)
    with pytest.raises(ValueError, match="beam"):
        beam_search(model, b.src, b.src_lengths, beam=0)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, b.src, b.src_lengths, max_len=0)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="min_len must be an int >= 0"):
            greedy_decode(model, b.src, b.src_lengths, min_len=bad)
    with pytest.raises(ValueError, match=r"min_len \(4\) must be <= max_len \(3\)"):
        beam_search(model, b.src, b.src_lengths, max_len=3, min_len=4)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="length_norm must be >= 0 and finite"):
            beam_search(model, b.src, b.src_lengths, length_norm=bad)


@pytest.fixture(scope="module")
def eos_first():
    """A model after 3 updates of learning to reverse 3-6 words: it has learnt little but
    how frequent each token is, and EOS (one in every 4-7 target tokens) is the likeliest
    first token for every sentence, as for the 400-update bible-en-es run of issue 27
    (1,000 of 1,000 beam outputs empty)."""
    torch.manual_seed(0)
    vocab = 24
    model = make_model(seed=0, src_v=vocab, tgt_v=vocab, aux=False)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        srcs = [torch.randint(4, vocab, (int(torch.randint(3, 7, (1,), generator=g)),),
                              generator=g).tolist() for _ in range(n)]
        return collate(srcs, [s[::-1] for s in srcs])

    opt = torch.optim.Adam(model.parameters(), 3e-2)
    crit = LabelSmoothingLoss(0.0, ignore_index=PAD)
    for _ in range(3):
        loss, _ = sequence_loss(model, crit, batch(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    b = batch(40)
    enc = model.encode(b.src, b.src_lengths)
    first, _, _ = model.step(torch.full((40,), 2), enc, enc.state)
    others = first.clone()
    others[:, EOS] = float("-inf")
    # EOS leads by at least 0.2 nats (measured: 0.24 to 0.9), far above float noise
    assert bool((first[:, EOS] > others.max(-1).values + 0.1).all())
    return model, b


def test_an_under_trained_model_whose_first_token_is_eos_still_says_something(eos_first):
    model, b = eos_first
    n = b.src.shape[0]
    # What decoding did before: every output empty, greedy and beam alike.
    assert greedy_decode(model, b.src, b.src_lengths, max_len=10, min_len=0).tokens == [[]] * n
    raw = beam_search(model, b.src, b.src_lengths, beam=10, max_len=10, length_norm=0.0,
                      min_len=0)
    assert raw.tokens == [[]] * n
    # The defaults: no output is empty, whatever the beam and its ranking.
    for dec in (greedy_decode(model, b.src, b.src_lengths, max_len=10),
                beam_search(model, b.src, b.src_lengths, beam=10, max_len=10),
                beam_search(model, b.src, b.src_lengths, beam=10, max_len=10, length_norm=0.0),
                beam_search(model, b.src, b.src_lengths, beam=3, max_len=10, min_len=2)):
        assert min(len(t) for t in dec.tokens) >= 1
        assert all(score > float("-inf") for score in dec.scores)
    two = beam_search(model, b.src, b.src_lengths, beam=3, max_len=10, min_len=2)
    assert min(len(t) for t in two.tokens) == 2
    assert two.scores == pytest.approx(_teacher_forced(model, b, two.tokens), abs=1e-4)


def test_decode_corpus_of_an_under_trained_model_has_no_empty_line(eos_first):
    model, b = eos_first
    vocab = Vocab([f"w{i}" for i in range(4, 24)])
    lines = [" ".join(vocab.itos[t] for t in row[:int(n)])
             for row, n in zip(b.src.tolist(), b.src_lengths.tolist())]
    corpus = ParallelCorpus(lines, lines)
    for beam in (1, 10):  # dev evaluations decode greedily, the test set with a beam
        out = decode_corpus(model, corpus, vocab, vocab, beam=beam, max_len=10)
        assert all(out) and empty_outputs_warning(out) is None


def test_many_empty_outputs_give_one_warning_line(eos_first):
    model, b = eos_first
    empty = greedy_decode(model, b.src, b.src_lengths, max_len=10, min_len=0).tokens
    line = empty_outputs_warning(empty, "translations")
    assert line is not None and "\n" not in line
    assert line.startswith("warning: 40 of 40 translations are empty")
    # From EMPTY_WARN_SHARE on: 1 empty of n warns at 1/n = the share, 1 of n + 1 does not.
    n = round(1 / EMPTY_WARN_SHARE)
    assert empty_outputs_warning([[]] + [["a"]] * (n - 1)) is not None
    assert empty_outputs_warning([[]] + [["a"]] * n) is None
    assert empty_outputs_warning(["", "a b"]) is not None  # strings too (translate's lines)
    assert empty_outputs_warning([]) is None and empty_outputs_warning([["a"]]) is None



def test_unk_replacement_copies_the_most_attended_source_word():
    src_vocab = Vocab(["a", "b"])
    tgt_vocab = Vocab(["x", "y"])
    model = make_model(src_v=len(src_vocab), tgt_v=len(tgt_vocab)).eval()
    with torch.no_grad():  # a model that always writes <unk>
        model.head.fc.weight.zero_()
        model.head.fc.bias.fill_(-10.0)
        model.head.fc.bias[UNK] = 10.0
    corpus = ParallelCorpus(["a Zürich b Hanoi", "Paris"], ["x", "y"])
    plain = decode_corpus(model, corpus, src_vocab, tgt_vocab, max_len=3)
    assert plain == [["<unk>"] * 3] * 2
    replaced = decode_corpus(model, corpus, src_vocab, tgt_vocab, max_len=3, unk_replace=True)
    b = collate([src_vocab.encode(corpus.src_tokens(i)) for i in range(2)], [[], []])
    positions = greedy_decode(model, b.src, b.src_lengths, max_len=3).attention
    for i in range(2):
        assert replaced[i] == [corpus.src_tokens(i)[p] for p in positions[i]]
    assert replaced[1] == ["Paris"] * 3  # an out-of-vocabulary word is copied as written


def test_nearest_words_reads_only_the_asked_rows():
    """V = 300,000: a V x V matrix would need 360 GB, so building one would fail here."""
    words = [f"w{i}" for i in range(300_000 - 4)]
    vocab = Vocab(words)
    emb = CompressedLabelEmbedding(len(vocab), dim=2)
    with torch.no_grad():
        emb.A.weight.zero_()
        emb.B.weight.zero_()
        emb.B.bias.zero_()
        emb.A.weight[vocab.stoi["w7"]] = torch.tensor([1.0, 0.0])
        for rank, (w, val) in enumerate([("w7", 9.0), ("w3", 5.0), ("w100", 4.0), ("w9", 3.0)]):
            emb.B.weight[vocab.stoi[w], 0] = val
        emb.B.bias[PAD] = 50.0  # specials never count as neighbours
        emb.B.bias[EOS] = 50.0
    near = nearest_words(emb, vocab, ["w7"], k=3)
    assert [w for w, _ in near["w7"]] == ["w3", "w100", "w9"]  # itself left out
    p = near["w7"]
    assert p[0][1] > p[1][1] > p[2][1]
    with pytest.raises(ValueError, match="not in the target vocabulary"):
        nearest_words(emb, vocab, ["nope"])


def test_chunked_loss_trains_the_same_as_the_plain_loss():
    """--chunked-loss: same loss, terms and gradients as head + LabelEmbeddingLoss, PAD included."""
    torch.manual_seed(0)
    vocab = Vocab([f"w{i}" for i in range(26)])
    V = len(vocab)
    model = Seq2Seq(Seq2SeqConfig(V, V, emb_dim=8, hidden=12, layers=1, dropout=0.0))
    g = torch.Generator().manual_seed(1)
    src = [torch.randint(4, V, (n,), generator=g).tolist() for n in (5, 3, 6)]
    tgt = [torch.randint(4, V, (n,), generator=g).tolist() for n in (4, 6, 2)]  # padded
    batch = collate(src, tgt)
    plain = make_criterion("emb", vocab)
    chunked = make_criterion("emb", vocab, chunked=True)
    assert isinstance(chunked, ChunkedLabelEmbeddingLoss)
    chunked.load_state_dict(plain.state_dict())  # same embedding, same keys
    params = [*model.parameters()]

    def run(criterion):
        for p in [*params, *criterion.parameters()]:
            p.grad = None
        loss, terms = sequence_loss(model, criterion, batch)
        loss.backward()
        return loss.detach(), terms, [p.grad.clone() for p in params if p.grad is not None], \
            [p.grad.clone() for p in criterion.parameters()]

    a, b = run(plain), run(chunked)
    torch.testing.assert_close(a[0], b[0])
    assert set(a[1]) == set(b[1])
    for k in a[1]:
        torch.testing.assert_close(a[1][k], b[1][k], msg=k)
    for x, y in zip(a[2] + a[3], b[2] + b[3]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
