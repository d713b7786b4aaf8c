"""Embeddings: initialisation, the compressed form's memory, safetensors round trips."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import damaged_files
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from labelemb import (
    CompressedLabelEmbedding,
    FixedLabelEmbedding,
    LabelEmbedding,
    LabelEmbeddingLoss,
    load_embedding,
    save_embedding,
)

MiB = 2**20


def _env_with_src() -> dict[str, str]:
    """The environment for a child Python that imports this checkout's labelemb."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def test_full_embedding_starts_at_identity():
    emb = LabelEmbedding(4)
    torch.testing.assert_close(emb(torch.tensor([2, 0])), torch.eye(4)[[2, 0]])
    assert emb.to_dense() is emb.weight


def test_compressed_is_relu_of_a_times_b():
    torch.manual_seed(0)
    emb = CompressedLabelEmbedding(30, dim=7)
    y = torch.tensor([3, 3, 29])
    expected = torch.relu(emb.A.weight[y] @ emb.B.weight.T + emb.B.bias)
    torch.testing.assert_close(emb(y), expected)
    assert (emb(y) >= 0).all()
    dense = emb.to_dense()
    assert dense.shape == (30, 30)
    torch.testing.assert_close(dense[y], expected)


class _LargestOutput(TorchDispatchMode):
    """Records the shape of every tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_compressed_at_50k_labels_fits_the_papers_memory_and_never_builds_c_by_c():
    C, dim, n = 50_000, 100, 4096
    emb = CompressedLabelEmbedding(C, dim)
    bytes_without_bias = sum(
        p.numel() * p.element_size() for name, p in emb.named_parameters() if name != "B.bias"
    )
    assert bytes_without_bias / MiB <= 38.5  # the paper: 38.15 MB
    y = torch.randint(0, C, (n,))
    with _LargestOutput() as mode:
        out = emb(y)
        out.float().sum().backward()
    assert out.shape == (n, C)
    # No op, forward or backward, produced anything with C rows and C columns.
    assert not any(len(s) >= 2 and s[-1] >= C and s[-2] >= C for s in mode.shapes)
    assert max(torch.Size(s).numel() for s in mode.shapes) <= n * C


@pytest.mark.parametrize(
    "make",
    [
        lambda: LabelEmbedding(6),
        lambda: CompressedLabelEmbedding(6, 3),
        lambda: CompressedLabelEmbedding(6, 3, bias=False),
    ],
    ids=["full", "compressed", "compressed-nobias"],
)
def test_save_load_round_trip_is_bit_exact(tmp_path, make):
    torch.manual_seed(0)
    emb = make()
    with torch.no_grad():
        for p in emb.parameters():
            p.add_(torch.randn_like(p))
    names = [f"class-{i}" for i in range(6)]
    path = save_embedding(emb, tmp_path / "e.safetensors", class_names=names)
    back = load_embedding(path)
    assert type(back) is type(emb)
    assert back.class_names == names
    for (k, a), (k2, b) in zip(emb.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    y = torch.arange(6)
    assert torch.equal(emb(y), back(y))
    frozen = load_embedding(path, frozen=True)
    assert isinstance(frozen, FixedLabelEmbedding) and torch.equal(frozen(y), emb(y))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_save_leaves_no_temp_file_and_keeps_what_was_there(tmp_path):
    """A folder where the file should go: the rename fails after the temp file is written
    (before, the temp file stayed)."""
    target = tmp_path / "e.safetensors"
    target.mkdir()
    (target / "mine").write_text("keep")
    with pytest.raises(OSError):
        save_embedding(LabelEmbedding(3), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors"]
    assert (target / "mine").read_text() == "keep"


def test_class_names_with_unicode_and_from_module(tmp_path):
    emb = LabelEmbedding(3, class_names=["chó", "mèo", "đỏ"])
    save_embedding(emb, tmp_path / "e.safetensors")
    assert load_embedding(tmp_path / "e.safetensors").class_names == ["chó", "mèo", "đỏ"]
    with pytest.raises(ValueError, match="class_names has 2 names"):
        LabelEmbedding(3, class_names=["a", "b"])


def test_fixed_embedding_is_frozen_and_round_trips(tmp_path):
    torch.manual_seed(0)
    trained = CompressedLabelEmbedding(5, 2)
    fixed = FixedLabelEmbedding(trained)
    assert not any(p.requires_grad for p in fixed.parameters())
    assert fixed.trainable is False and trained.trainable is True
    with torch.no_grad():
        trained.A.weight.add_(1.0)  # a copy: later training of the source does not leak in
    assert not torch.equal(fixed(torch.arange(5)), trained(torch.arange(5)))
    save_embedding(fixed, tmp_path / "f.safetensors")
    again = FixedLabelEmbedding.from_file(tmp_path / "f.safetensors")
    assert torch.equal(again(torch.arange(5)), fixed(torch.arange(5)))
    from_tensor = FixedLabelEmbedding(torch.eye(3) * 2)
    torch.testing.assert_close(from_tensor(torch.tensor([1])), torch.tensor([[0.0, 2.0, 0.0]]))
    # A fixed embedding inside the loss stays frozen through train().
    crit = LabelEmbeddingLoss(from_tensor).train()
    assert not any(p.requires_grad for p in crit.parameters())


def test_fixed_embedding_rejects_bad_sources():
    with pytest.raises(ValueError, match="square"):
        FixedLabelEmbedding(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        FixedLabelEmbedding(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="source"):
        FixedLabelEmbedding([[1.0]])


def test_pickle_files_are_refused(tmp_path):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    with pytest.raises(ValueError, match="never unpickles"):
        load_embedding(evil)
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"weight": torch.eye(3)}, torch_file)
    with pytest.raises(ValueError, match="pickle"):
        load_embedding(torch_file)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors"):
        load_embedding(junk)
    with pytest.raises(FileNotFoundError):
        load_embedding(tmp_path / "missing.safetensors")


def test_foreign_safetensors_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.eye(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by labelemb"):
        load_embedding(tmp_path / "other.safetensors")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_named(bad):
    with pytest.raises(ValueError, match="num_classes"):
        LabelEmbedding(bad)
    with pytest.raises(ValueError, match="dim"):
        CompressedLabelEmbedding(4, dim=bad)


# --------------------------------------------------------------------------- damaged files
# Each damaged file is refused with a ValueError that names the file and the field at fault.


def _refused(path, *fields: str) -> str:
    with pytest.raises(ValueError) as info:
        load_embedding(path)
    message = str(info.value)
    assert str(path) in message
    for field in fields:
        assert field in message
    return message


def test_hostile_num_classes_is_refused_before_any_allocation(tmp_path):
    """A 4x4 weight whose metadata claims 100,000 classes (a 40 GB matrix) is refused from the
    header; under a 4 GiB address-space limit an allocation would fail as a MemoryError or
    RuntimeError instead of this ValueError."""
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "e.safetensors"),
                                      num_classes="100000", class_names=None)
    script = (
        "import resource, sys\n"
        "from labelemb import load_embedding\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "try:\n"
        "    load_embedding(sys.argv[1])\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, env=_env_with_src())
    assert done.returncode == 0, done.stderr
    assert "num_classes=100000" in done.stdout and "[4, 4]" in done.stdout
    assert str(path) in done.stdout


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "2.5", " 4", ""])
def test_bad_num_classes_is_named(tmp_path, bad):
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "e.safetensors"),
                                      num_classes=bad)
    _refused(path, "num_classes", "positive int")


@pytest.mark.parametrize("bad, why", [
    ("not json [", "JSON list of strings"),
    ('{"a": 1}', "JSON list of strings"),
    ("[1, 2, 3, 4]", "JSON list of strings"),
    ('["a", "b"]', "has 2 names but num_classes is 4"),
    ("[" * 100_000 + "]" * 100_000, "JSON list of strings"),
])
def test_bad_class_names_are_named(tmp_path, bad, why):
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "e.safetensors"),
                                      class_names=bad)
    _refused(path, "class_names", why)


def test_compressed_shapes_must_match_dim(tmp_path):
    path = damaged_files.set_metadata(damaged_files.saved_compressed(tmp_path / "c.safetensors"),
                                      dim="3")
    _refused(path, "'A'", "dim=3", "[4, 3]")
    path = damaged_files.set_metadata(path, dim="zero")
    _refused(path, "dim", "positive int")


def test_tensor_names_dtype_and_kind_are_checked(tmp_path):
    path = damaged_files.saved_full(tmp_path / "e.safetensors")
    damaged_files.edit_header(path, lambda h: h.__setitem__("extra", h.pop("weight")))
    _refused(path, "['extra']", "['weight']")
    path = damaged_files.saved_full(tmp_path / "i.safetensors")
    damaged_files.edit_header(path, lambda h: h["weight"].__setitem__("dtype", "I32"))
    _refused(path, "'weight'", "dtype 'I32'")
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "k.safetensors"),
                                      kind="sparse")
    _refused(path, "kind 'sparse'")


@pytest.mark.parametrize("drop", [1, 40, 200])
def test_truncated_file_is_a_value_error_naming_the_file(tmp_path, drop):
    """Cut in the data (1, 40 bytes of 64) or in the header: never safetensors' own error."""
    path = damaged_files.truncate(damaged_files.saved_full(tmp_path / "e.safetensors"), drop)
    _refused(path, "truncated")


@pytest.mark.parametrize("header", [b'{"a": 1', b'{"\xff": 1}', b'{"a": ' + b"[" * 100_000
                                    + b"]" * 100_000 + b"}"], ids=["cut", "not-utf8", "deep"])
def test_a_header_that_is_not_json_is_refused(tmp_path, header):
    path = tmp_path / "e.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    _refused(path, "header is not valid JSON")


def test_offsets_that_do_not_span_the_shape_are_refused(tmp_path):
    path = damaged_files.saved_full(tmp_path / "e.safetensors")
    damaged_files.edit_header(path, lambda h: h["weight"].__setitem__("data_offsets", [0, 8]))
    _refused(path, "'weight'", "data offsets [0, 8]")


@pytest.mark.parametrize("offsets", [[0, 0], [0, 64]])
def test_a_huge_num_classes_with_matching_shapes_is_refused_by_its_true_size(tmp_path, offsets):
    """num_classes = 2**62: torch.Size's element count wrapped to 0, so [0, 0] offsets passed
    the check (and [0, 64] was said not to span "0 bytes")."""
    path = damaged_files.set_metadata(damaged_files.saved_full(tmp_path / "e.safetensors"),
                                      num_classes=str(2**62), class_names=None)

    def edit(header):
        header["weight"].update(shape=[2**62, 2**62], data_offsets=offsets)
    damaged_files.edit_header(path, edit)
    message = _refused(path, "'weight'", f"data offsets {offsets}")
    assert f"its {4 * 2**124} bytes" in message and "\n" not in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embedding_is_refused(tmp_path, value):
    weight = torch.eye(4)
    weight[1, 2] = value
    path = damaged_files.saved_full(tmp_path / "e.safetensors", weight)
    _refused(path, "'weight'", "1 non-finite")


def test_valid_files_still_load_after_the_checks(tmp_path):
    """The checks refuse nothing save_embedding writes: full (with names), compressed."""
    full = load_embedding(damaged_files.saved_full(tmp_path / "f.safetensors"))
    assert full.class_names == damaged_files.NAMES and full.num_classes == 4
    comp = load_embedding(damaged_files.saved_compressed(tmp_path / "c.safetensors"))
    assert isinstance(comp, CompressedLabelEmbedding) and comp.dim == 2


@pytest.mark.parametrize("device, named", [
    ("foo", "device 'foo' is not a device name"),  # was PyTorch's RuntimeError
    ("cuda:99", "device 'cuda:99' is not available here"),
    ("meta", "device 'meta' would keep no values"),
] + ([] if torch.cuda.is_available() else [
    ("cuda", "device 'cuda' is not available here ("),
]))  # "cuda" on a CPU build was torch's AssertionError
def test_a_device_this_machine_lacks_is_a_value_error_naming_it(tmp_path, device, named):
    path = damaged_files.saved_full(tmp_path / "f.safetensors")
    with pytest.raises(ValueError) as err:
        load_embedding(path, device=device)
    assert str(err.value).startswith(named), str(err.value)
    with pytest.raises(TypeError, match="device must be a str or torch.device, got float"):
        load_embedding(path, device=1.5)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "cpu:0"]
                         + (["cuda", "cuda:0"] if torch.cuda.is_available() else []))
def test_an_available_device_loads_there(tmp_path, device):
    emb = load_embedding(damaged_files.saved_full(tmp_path / "f.safetensors"), device=device)
    assert emb.weight.device.type == torch.device(device).type
