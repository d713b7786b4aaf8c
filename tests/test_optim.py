"""The engines' Adam: fused where PyTorch has the kernel, the same update as the default."""

import torch

from labelemb.engine.loop import adam


def _params(seed: int = 0, device: str = "cpu") -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g).to(device)) for s in ((7, 5), (5,))]


def _steps(opt: torch.optim.Optimizer, params: list, n: int = 3) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def test_fused_on_cpu_and_the_same_update_as_default_adam():
    fused, plain = _params(), _params()
    opt = adam(fused, 1e-2)
    assert opt.param_groups[0]["fused"] is True
    _steps(opt, fused)
    _steps(torch.optim.Adam(plain, lr=1e-2), plain)
    for a, b, start in zip(fused, plain, _params()):
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, start)  # the steps moved it


def test_no_fused_kernel_no_fused_flag():
    opt = adam(_params(device="meta"), 1e-3)
    assert not opt.param_groups[0]["fused"]


def test_a_checkpoint_of_default_adam_resumes_with_default_adam():
    old = torch.optim.Adam(_params(), lr=1e-3)
    new = adam(_params(), 1e-3)
    new.load_state_dict(old.state_dict())
    assert not new.param_groups[0]["fused"]
