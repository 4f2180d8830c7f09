"Shared helpers: reference models with random weights, positional weight copies, the digits folder."
import pytest, torch
from torch import nn
from xresnet_fa.data import digits_folder


def randomize(model: nn.Module, seed: int = 0, size: int = 64) -> nn.Module:
    "Give every BatchNorm random affine parameters and realistic running statistics, so no layer is a no-op."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g)*0.5 + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g)*0.1)
                m.momentum = 1.0  # the calibration batch below sets running stats to its own statistics
        model.train()(torch.randn(8, 3, size, size, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d): m.momentum = 0.1
    return model.eval()


def copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    "Copy `src`'s state dict into `dst` position by position; fail on the first count or shape mismatch."
    s, d = list(src.state_dict().items()), list(dst.state_dict().items())
    assert len(s) == len(d), f"{len(s)} tensors in the reference, {len(d)} in ours"
    for (ks, vs), (kd, vd) in zip(s, d):
        assert vs.shape == vd.shape, f"shape mismatch: reference {ks} {tuple(vs.shape)} vs ours {kd} {tuple(vd.shape)}"
    dst.load_state_dict({kd: vs for (_, vs), (kd, _) in zip(s, d)})
    return dst.eval()


def max_diff(a: nn.Module, b: nn.Module, size: int, seed: int = 1) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad(): return (a.eval()(x) - b.eval()(x)).abs().max().item()


@pytest.fixture(scope='session')
def digits(tmp_path_factory):
    "The digits as an ImageFolder in a folder of this test session"
    return digits_folder(tmp_path_factory.mktemp('data')/'digits')
