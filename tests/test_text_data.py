"""Text data for seq2seq: readers on files in the real formats, vocabulary, batches, metrics."""

from __future__ import annotations

import json

import pytest
import torch

from labelemb.data.iwslt import load_iwslt15
from labelemb.data.lcsts import load_lcsts, read_lcsts
from labelemb.data.parallel_text import (
    batch_indices, collate, encode_corpus, read_lines, read_parallel, tokenize,
)
from labelemb.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab
from labelemb.text_metrics import bleu, rouge

# ----------------------------------------------------------------------------- plain parallel


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_read_parallel_words(tmp_path):
    s = write(tmp_path / "a.en", "Hello , world .\nit &apos;s fine\n")
    t = write(tmp_path / "a.vi", "Xin chào , thế giới .\nổn cả\n")
    c = read_parallel(s, t)
    assert len(c) == 2
    assert c.src_tokens(0) == ["Hello", ",", "world", "."]
    assert c.src_tokens(1) == ["it", "&apos;s", "fine"]  # pre-tokenised: kept as is
    assert c.tgt_tokens(0) == ["Xin", "chào", ",", "thế", "giới", "."]


def test_read_lines_keeps_empty_lines_and_strips_cr_bom(tmp_path):
    p = write(tmp_path / "x.txt", b"\xef\xbb\xbfa b\r\n\nc\n")
    assert read_lines(p) == ["a b", "", "c"]


def test_different_line_counts_name_both_files(tmp_path):
    s = write(tmp_path / "train.en", "a\nb\nc\n")
    t = write(tmp_path / "train.vi", "x\ny\n")
    with pytest.raises(ValueError, match=r"train\.en has 3 lines.*train\.vi has 2.*line 3"):
        read_parallel(s, t)


def test_non_utf8_names_file_and_line(tmp_path):
    s = write(tmp_path / "s.txt", "ok\nfine\n")
    t = write(tmp_path / "t.txt", b"ok\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"t\.txt:2: not valid UTF-8"):
        read_parallel(s, t)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_refused(tmp_path, content):
    s = write(tmp_path / "s.txt", content)
    t = write(tmp_path / "t.txt", "a\n")
    with pytest.raises(ValueError, match=r"s\.txt is empty"):
        read_parallel(s, t)


def test_chars_tokenizer():
    assert tokenize("修改 后的ab 1", "chars") == ["修", "改", "后", "的", "a", "b", "1"]
    with pytest.raises(ValueError, match="tokenize"):
        tokenize("x", "bytes")  # type: ignore[arg-type]


def test_filter_drops_empty_and_long_pairs(tmp_path):
    s = write(tmp_path / "s", "a b\n\na b c d\nz\n")
    t = write(tmp_path / "t", "x\ny\nx y\n\n")
    c = read_parallel(s, t).filter(max_len=3)
    assert [c.src[i] for i in range(len(c))] == ["a b"]
    assert c.lines == [1]


# ----------------------------------------------------------------------------- IWSLT15


def _iwslt_dir(tmp_path):
    d = tmp_path / "iwslt15"
    d.mkdir(parents=True)
    files = {
        "train": ("Rachel Pike : The science behind a climate headline\nIt &apos;s big .\n",
                  "Khoa học đằng sau một tiêu đề về khí hậu\nNó lớn .\n"),
        "tst2012": ("How can I speak in 10 minutes ?\n", "Làm sao tôi có thể nói trong 10 phút ?\n"),
        "tst2013": ("When I was little\nI thought\nmy country was the best\n",
                    "Khi tôi còn nhỏ\nTôi nghĩ\nđất nước tôi là tốt nhất\n"),
    }
    for prefix, (en, vi) in files.items():
        write(d / f"{prefix}.en", en)
        write(d / f"{prefix}.vi", vi)
    return d


def test_iwslt15_layout(tmp_path):
    splits = load_iwslt15(_iwslt_dir(tmp_path))
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [2, 1, 3]
    assert splits["train"].tgt_tokens(1) == ["Nó", "lớn", "."]
    assert splits["dev"].src_tokens(0)[-1] == "?"
    back = load_iwslt15(_iwslt_dir(tmp_path / "b"), src_lang="vi", tgt_lang="en")
    assert back["test"].src_tokens(0) == ["Khi", "tôi", "còn", "nhỏ"]


def test_iwslt15_missing_file(tmp_path):
    d = _iwslt_dir(tmp_path)
    (d / "tst2013.vi").unlink()
    with pytest.raises(FileNotFoundError, match=r"tst2013\.vi"):
        load_iwslt15(d)


# ----------------------------------------------------------------------------- LCSTS

PART_I = """<doc id=0>
    <summary>
        修改后的立法法全文公布
    </summary>
    <short_text>
        新华社受权于18日全文播发修改后的《中华人民共和国立法法》。
    </short_text>
</doc>
<doc id=1>
    <summary>
        深圳机场9死24伤续
    </summary>
    <short_text>
        2015年3月，深圳机场发生事故。
    </short_text>
</doc>
"""

PART_II = """<doc id=0>
    <human_label>5</human_label>
    <summary>
        可穿戴技术十大设计原则
    </summary>
    <short_text>
        本文总结了十个可穿戴产品的设计原则。
    </short_text>
</doc>
<doc id=1>
    <human_label>2</human_label>
    <summary>
        经济学人：智能手机将成为惊人的变革
    </summary>
    <short_text>
        智能手机的普及程度正在改变世界。
    </short_text>
</doc>
<doc id=2>
    <human_label>3</human_label>
    <summary>成本上升</summary>
    <short_text>原材料 价格上涨</short_text>
</doc>
"""


def _lcsts_dir(tmp_path, nested=False):
    d = tmp_path / "lcsts"
    target = d / "DATA" if nested else d
    target.mkdir(parents=True)
    write(target / "PART_I.txt", PART_I)
    write(target / "PART_II.txt", PART_II)
    write(target / "PART_III.txt", PART_II)
    return d


def test_lcsts_real_format(tmp_path):
    splits = load_lcsts(_lcsts_dir(tmp_path))
    train, dev = splits["train"], splits["dev"]
    assert len(train) == 2 and len(dev) == 3
    assert train.tgt[0] == "修改后的立法法全文公布"
    assert train.src_tokens(1)[:6] == ["2", "0", "1", "5", "年", "3"]  # character level
    assert dev.tgt_tokens(2) == ["成", "本", "上", "升"]  # same-line tags
    assert dev.src_tokens(2) == list("原材料价格上涨")  # spaces are not tokens
    assert dev.lines == [1, 10, 19]


def test_lcsts_min_score_and_data_subdir(tmp_path):
    splits = load_lcsts(_lcsts_dir(tmp_path, nested=True), min_score=3)
    assert len(splits["train"]) == 2  # PART_I has no labels: never filtered
    assert [s[:4] for s in splits["test"].tgt] == ["可穿戴技", "成本上升"]


def test_lcsts_malformed(tmp_path):
    bad = PART_I.replace("    </summary>\n", "", 1)
    p = write(tmp_path / "PART_I.txt", bad)
    with pytest.raises(ValueError, match=r"PART_I\.txt:4: expected </summary>"):
        read_lcsts(p)
    p = write(tmp_path / "PART_II.txt", PART_II.replace("<human_label>2<", "<human_label>x<"))
    with pytest.raises(ValueError, match=r"PART_II\.txt:10: <human_label> is 'x'"):
        read_lcsts(p)
    p = write(tmp_path / "cut.txt", PART_I.rsplit("</doc>", 1)[0])
    with pytest.raises(ValueError, match=r"cut\.txt:9: <doc> is never closed"):
        read_lcsts(p)
    p = write(tmp_path / "bytes.txt", PART_I.encode("utf-8").replace("深圳".encode(), b"\xa4\xa4", 1))
    with pytest.raises(ValueError, match=r"bytes\.txt:11: not valid UTF-8"):
        read_lcsts(p)
    with pytest.raises(ValueError, match="empty"):
        read_lcsts(write(tmp_path / "empty.txt", ""))
    p = write(tmp_path / "stray.txt", PART_I.replace("    <summary>\n", "", 1))
    with pytest.raises(ValueError, match=r"stray\.txt:2: text '修改后的立法法全文公布' outside any field"):
        read_lcsts(p)


# ----------------------------------------------------------------------------- vocabulary


def test_vocab_build_cap_min_count_order():
    sents = [["b", "a", "c", "a"], ["c", "a", "d"], ["b", "e"]]
    v = Vocab.build(sents, max_size=None, min_count=2)
    assert v.itos[: len(SPECIALS)] == list(SPECIALS)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "b", "c"]  # by count, ties by text
    capped = Vocab.build(sents, max_size=6)
    assert len(capped) == 6 and capped.itos[4:] == ["a", "b"]
    assert capped.encode(["a", "zzz"], bos=True, eos=True) == [BOS, 4, UNK, EOS]
    assert capped.decode([BOS, 4, 5, EOS, 4]) == ["a", "b"]
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(sents, max_size=4)


def test_vocab_roundtrip_and_fingerprint(tmp_path):
    v = Vocab.build([["chó", "mèo", "chó"]])
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json", v.fingerprint) == v
    other = Vocab.build([["dog", "cat"]])
    other.save(tmp_path / "other.json")
    with pytest.raises(ValueError, match=r"other\.json is a vocabulary from another run"):
        Vocab.load(tmp_path / "other.json", v.fingerprint)
    obj = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))
    obj["tokens"][4], obj["tokens"][5] = obj["tokens"][5], obj["tokens"][4]
    (tmp_path / "edited.json").write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(ValueError, match="fingerprint does not match"):
        Vocab.load(tmp_path / "edited.json")


# ----------------------------------------------------------------------------- batches


def test_collate_bos_eos_pad():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11]])
    assert b.src.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert b.src_lengths.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD], [10, 11, EOS]]
    assert b.num_tokens == 5
    assert collate([[]], [[4]]).src.tolist() == [[EOS]]  # empty source: one step


def test_batch_indices_cover_everything_and_repeat_by_seed(tmp_path):
    lengths = [i % 7 for i in range(103)]
    a = batch_indices(lengths, 8, torch.Generator().manual_seed(3))
    b = batch_indices(lengths, 8, torch.Generator().manual_seed(3))
    c = batch_indices(lengths, 8, torch.Generator().manual_seed(4))
    assert a == b and a != c
    assert sorted(i for batch in a for i in batch) == list(range(103))
    assert batch_indices(lengths, 50) == [list(range(50)), list(range(50, 100)), [100, 101, 102]]


def test_encode_corpus(tmp_path):
    c = read_parallel(write(tmp_path / "s", "a b\nc\n"), write(tmp_path / "t", "x\ny z q\n"))
    sv, tv = Vocab(["a", "b"]), Vocab(["x", "y", "z"])
    src, tgt = encode_corpus(c, sv, tv)
    assert src[0].tolist() == [4, 5] and src[1].tolist() == [UNK]
    assert tgt[1].tolist() == [5, 6, UNK]
    assert tgt.lengths().tolist() == [1, 3]


# ----------------------------------------------------------------------------- metrics


def test_rouge_on_chinese_characters():
    # ref 我爱北京, hyp 我爱上海: 2 of 4 unigrams, 1 of 3 bigrams, LCS 2 (hand-counted).
    r = rouge([list("我爱上海")], [list("我爱北京")])
    assert r["rouge1"] == pytest.approx(50.0)
    assert r["rouge2"] == pytest.approx(100 / 3)
    assert r["rougeL"] == pytest.approx(50.0)
    # rouge-score's own tokenizer keeps only [a-z0-9]: it would score Chinese as 0.
    from rouge_score import rouge_scorer

    assert rouge_scorer.RougeScorer(["rouge1"]).score("我爱北京", "我爱北京")["rouge1"].fmeasure == 0
    assert rouge([list("深圳机场")], [list("深圳机场")])["rougeL"] == pytest.approx(100.0)


def test_bleu_does_not_retokenize():
    ref = [["it", "&apos;s", "a", "small", "world", "after", "all"]]
    assert bleu(ref, ref) == pytest.approx(100.0)
    # "world." is one token here; sacrebleu's default 13a would split it and score 100.
    hyp = [["it", "&apos;s", "a", "small", "world.", "after", "all"]]
    ref2 = [["it", "&apos;s", "a", "small", "world.", "after", "all"]]
    assert bleu(hyp, ref2) == pytest.approx(100.0)
    split = [["it", "&apos;s", "a", "small", "world", ".", "after", "all"]]
    assert bleu(hyp, split) < 60
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(ref * 2, ref)
