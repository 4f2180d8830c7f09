"Every tweak combination at depths 18 and 50: right shapes, a finite gradient on every parameter, slicing, pickling."
import inspect, itertools, pickle, subprocess, sys
from functools import partial
import pytest, torch
from torch import nn
from xresnet_fa import xresnet, XResNet
from xresnet_fa.resblock import ResBlock
from xresnet_fa.xresnet import count_macs, count_params, summary
from fastai.vision.models import xresnet as fastai_xresnet

SWITCHES = ['stride_3x3', 'deep_stem', 'avg_down', 'zero_bn']
COMBOS = [dict(zip(SWITCHES, c)) for c in itertools.product([True, False], repeat=4)]


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('tweaks', COMBOS, ids=lambda t: '-'.join(k for k, v in t.items() if v) or 'none')
def test_forward_backward(depth, tweaks):
    torch.manual_seed(0)
    m = xresnet(depth, n_out=7, **tweaks)
    out = m(torch.randn(2, 3, 64, 61))
    assert out.shape == (2, 7)
    out.pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # with zero-gamma the residual convs start with zero gradient by design; otherwise every tensor learns
        if not tweaks['zero_bn']: assert p.grad.abs().sum() > 0, name


def test_zero_bn_block_outputs_shortcut_only():
    m = xresnet(50).eval()
    for block in m.stage_3:
        x = torch.randn(1, block.residual[0].conv.in_channels, 14, 14)
        with torch.no_grad(): assert torch.equal(block(x), block.act(block.shortcut(x).clone()))


def test_sliceable_where_fastai_is_not():
    m = xresnet(18, n_out=4)
    x = torch.randn(2, 3, 64, 64)
    assert m[:-1](x).shape == (2, 512)
    assert m[:4](x).shape == (2, 64, 16, 16)
    assert isinstance(m[-1], nn.Linear)
    with pytest.raises(TypeError): fastai_xresnet.xresnet18()[:4]


def test_pickle_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    m = xresnet(18, n_out=3, act_cls=nn.SiLU).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): expected = m(x)
    (tmp_path/'model.pkl').write_bytes(pickle.dumps(m))
    torch.save(x, tmp_path/'x.pt')
    code = ("import pickle, torch, sys; from pathlib import Path; d = Path(sys.argv[1]);"
            "m = pickle.loads((d/'model.pkl').read_bytes()); assert type(m).__name__ == 'XResNet';"
            "torch.save(m(torch.load(d/'x.pt')).detach(), d/'out.pt')")
    subprocess.run([sys.executable, '-c', code, str(tmp_path)], check=True)
    assert torch.equal(torch.load(tmp_path/'out.pt'), expected)


def test_wrong_channel_count_fails_in_torch_naming_expected_and_got():
    "forward has no Python-side checks (they would break tracing): torch's conv error names the channels"
    with pytest.raises(RuntimeError, match=r'expected input\[2, 1, 32, 32\] to have 3 channels, but got 1 channels instead'):
        xresnet(18)(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize('kwargs, match', [
    (dict(ks=4), 'ks must be odd'), (dict(ks=0), 'ks must be'), (dict(c_in=0), 'c_in'), (dict(n_out=0), 'n_out'),
    (dict(p=-0.1), r'p \(dropout'), (dict(p=1), r'p \(dropout'), (dict(stride_3x3='no'), 'stride_3x3 must be True or False'),
    (dict(act_cls=nn.ReLU()), 'act_cls'),
    (dict(n_out=2.0), 'n_out must be a whole number'),
])
def test_bad_configuration_fails_at_build(kwargs, match):
    "through the preset where it takes the keyword, else through XResNet (ks is XResNet's)"
    build = partial(xresnet, 18) if set(kwargs) <= set(inspect.signature(xresnet).parameters) else partial(XResNet, 1, (2, 2, 2, 2))
    with pytest.raises((ValueError, TypeError), match=match): build(**kwargs)


def test_unknown_depth():
    with pytest.raises(ValueError, match=r'depth must be one of \[18, 34, 50, 101, 152\]; got 20'): xresnet(20)


BAD_CALLS = [  # (public entry point, args, kwargs, what the message must say): the building blocks themselves check nothing
    (ResBlock, (8, 8), dict(expansion=0), 'expansion must be a whole number >= 1; got 0'),
    (ResBlock, (8, '8'), {}, "c_mid must be a whole number >= 1; got '8'"),
    (ResBlock, (-1, 8), {}, 'c_in must be a whole number >= 1; got -1'),
    (ResBlock, (8, 8), dict(stride=2.5), 'stride must be a whole number >= 1; got 2.5'),
    (ResBlock, (8, 8), dict(ks=4), 'ks must be odd'),
    (ResBlock, (8, 2**62), dict(expansion=4), 'c_mid \\* expansion must be a whole number <='),
    (ResBlock, (8, 8), dict(act_cls=None), 'act_cls must be an element-wise activation class such as nn.ReLU'),
    (ResBlock, (8, 8), dict(act_cls=nn.GLU), 'act_cls must be an element-wise activation class'),
    (ResBlock, (8, 8), dict(act_cls=nn.ReLU()), 'pass the class ReLU, not an instance'),
    (ResBlock, (8, 8), dict(act_cls='relu'), "got 'relu'"),
    (ResBlock, (8, 8), dict(stride_3x3='no'), "stride_3x3 must be True or False; got 'no'"),
    (ResBlock, (8, 8), dict(zero_bn=None), 'zero_bn must be True or False; got None'),
    (ResBlock, (8, 8), dict(avg_down='x'), "avg_down must be True or False; got 'x'"),
    (XResNet, (1, [1]), dict(widths=()), r'widths must be a non-empty list of whole numbers >= 1 such as \(64, 128, 256, 512\); got \(\)'),
    (XResNet, (1, [1]), dict(widths=(8, 8)), 'widths needs one width per stage'),
    (XResNet, (1, [1]), dict(widths=(1,)), r'widths\[0\] must be >= 2'),
    (XResNet, (1, [1]), dict(widths=(8,), block=nn.Identity()), 'block must be a class or function that builds a block'),
    (XResNet, (1, [1]), dict(widths=(8,), block=partial(ResBlock, avg_down='x')), "avg_down must be True or False; got 'x'"),
    (XResNet, (1, [1]), dict(widths=(8,), ks=2, deep_stem=False), 'ks must be odd'),
    (XResNet, (1, [1]), dict(widths=(8,), deep_stem='no'), "deep_stem must be True or False; got 'no'"),
    (XResNet, (1, [1, 0]), dict(widths=(8, 8)), r'layers\[1\] must be a whole number >= 1; got 0'),
    (count_params, (None,), {}, 'm must be an nn.Module instance'),
    (count_macs, (nn.Identity(),), dict(size=(8,)), r'size must be a whole number >= 1 or a pair \(H, W\) of them; got \(8,\)'),
    (count_macs, (nn.Identity(),), dict(c_in=0), 'c_in must be a whole number >= 1; got 0'),
    (summary, (None,), {}, r'model must be an nn.Module instance \(a layer or a network\); got None'),
]


@pytest.mark.parametrize('fn, args, kwargs, match', BAD_CALLS, ids=lambda v: getattr(v, '__name__', None))
def test_public_entry_points_refuse_bad_arguments(fn, args, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match): fn(*args, **kwargs)


@pytest.mark.parametrize('x, error', [(torch.randn(2, 3, 0, 8), RuntimeError), ([[0.0]], TypeError)])
def test_empty_or_non_tensor_input_fails_in_torch(x, error):
    "no logits come out of an empty image or a list: torch refuses them"
    with pytest.raises(error): XResNet(1, (2, 2, 2, 2), n_out=2, widths=(2, 2, 2, 2))(x)
