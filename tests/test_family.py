"""The xResNet family (notebook 02b): every fastai name equal to fastai's by parameters and outputs, the timm twins equal to timm's,
the switches in 1-D and 3-D inside a fastai Learner, clear errors naming the argument, and fuse on the new presets."""
import math, os, subprocess, sys
import pytest, torch, timm
from torch import nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
import fastai.callback.schedule  # noqa: F401 (Learner.fit_one_cycle)
from fastai.callback.training import ShortEpochCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.vision.models import xresnet as fastai_xresnet
from hypothesis import given, settings, strategies as st
from xresnet_fa import XResNet
from functools import partial
from xresnet_fa.family import FAMILY, FamilyBlock, add_self_attention, to_ndim, xresnext50, xse_resnext26, xse_resnext50
from xresnet_fa.xresnet import xresnet18
from xresnet_fa.fast import fuse
from xresnet_fa.learner import variant
from xresnet_fa.weights import TIMM_WEIGHTS, load_pretrained
from conftest import copy_weights, max_diff, randomize

FASTAI_NAMES = [n for n in fastai_xresnet.__all__ if n.startswith('x')]


def fastai_model(name: str) -> nn.Module:
    "fastai's model of that name; xsenet154, a TypeError in fastai, as fastai evidently means it"
    if name == 'xsenet154': return fastai_xresnet.XResNet(fastai_xresnet.SEBlock, 4, fastai_xresnet.g3, groups=64, reduction=16, p=0.2)
    return getattr(fastai_xresnet, name)()


def test_every_fastai_name_has_a_preset():
    assert [n for n in FAMILY if n != 'xse_resnext26'] == FASTAI_NAMES and len(FASTAI_NAMES) == 31
    with pytest.raises(TypeError): fastai_xresnet.xsenet154()  # broken in fastai 2.8: no expansion given


@pytest.mark.parametrize('name', [n for n in FASTAI_NAMES if n not in {f'xresnet{d}' for d in (18, 34, 50, 101, 152)}])  # those: test_faithful
def test_same_parameters_and_outputs_as_fastai(name):
    torch.manual_seed(0)
    ref = randomize(fastai_model(name), size=32)  # random BatchNorm affine and statistics: zero-gamma would hide SE and whole blocks
    with torch.device('meta'): ours = FAMILY[name]()  # no init: every tensor is copied over
    ours = copy_weights(ref, ours.to_empty(device='cpu'))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert max_diff(ref, ours, 48) <= 1e-5, name
    ours, x = ours.double(), torch.randn(2, 3, 32, 32, dtype=torch.float64)  # fuse works on every preset. In float64: random 100-layer
    with torch.no_grad(): a, b = fuse(ours)(x), ours(x)  # nets amplify rounding (float32, channels-last alone: 4e-4; float64 fused: <1e-6)
    assert (a - b).abs().max() <= 1e-5*b.abs().max(), name  # a wrong fold is off by O(1)


def test_self_attention_equals_fastai_sa():
    "sa=True in fastai: the last block of stage len(layers)-3; our add_self_attention, with a non-zero gamma, gives the same outputs"
    torch.manual_seed(0)
    ref = randomize(fastai_xresnet.XResNet(fastai_xresnet.ResBlock, 1, [2, 2, 2, 2], sa=True))
    with torch.no_grad():
        for m in ref.modules():
            if hasattr(m, 'gamma'): m.gamma.fill_(0.5)
    ours = copy_weights(ref, add_self_attention(XResNet(1, (2, 2, 2, 2))))
    assert [n for n, m in ours.named_modules() if type(m).__name__ == 'SimpleSelfAttention'] == ['stage_1.1.residual.2']
    assert max_diff(ref, ours, 32) <= 1e-5
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)  # both run channels-last (fastai's .view works there too)
    with torch.no_grad(): a, b = ours(x), ref(x)
    assert (a - b).abs().max() <= 1e-5*b.abs().max()  # another summation order in channels-last: relative


@pytest.mark.parametrize('ours, theirs', [(xresnext50, 'resnext50d_32x4d'), (xse_resnext26, 'seresnext26d_32x4d')])
def test_timm_twins_equal_and_load_their_weights(ours, theirs, tmp_path):
    "The same network as timm's (outputs within 1e-5); pretrained= loads timm's checkpoint (a file the test writes; True names the ImageNet one)"
    torch.manual_seed(1)
    ref = randomize(timm.create_model(theirs, pretrained=False))
    assert max_diff(ref, copy_weights(ref, ours()), 96) <= 1e-5
    torch.save(ref.state_dict(), tmp_path/'timm.pth')  # timm's names
    loaded = ours(pretrained=tmp_path/'timm.pth')
    assert max_diff(ref, loaded, 96) <= 1e-5
    assert TIMM_WEIGHTS[ours.__name__].startswith(theirs + '.')


def test_pretrained_true_asks_timm_for_the_twin_offline():
    "Without the hub, pretrained=True fails with the name of the weights it needed, at once"
    code = "from xresnet_fa.family import xresnext50\ntry: xresnext50(pretrained=True)\nexcept RuntimeError as e: print(e)"
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_HOME': '/nonexistent-hf-home'}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert 'resnext50d_32x4d.bt_in1k' in out and 'not in the Hugging Face cache' in out, out


@pytest.mark.parametrize('make, message', [
    (lambda: XResNet(1, (1, 1, 1, 1), block=partial(FamilyBlock, cardinality=3)), 'cardinality=3 must divide the channels of the grouped 3x3 conv: 64 in, 12 out'),
    (lambda: XResNet(4, (1, 1, 1, 1), block=partial(FamilyBlock, se_reduction=512)), 'se_reduction=512 is larger than the 256 channels it squeezes'),
    (lambda: FAMILY['xse_resnext18'](ndim=0), 'ndim must be 1 (sequences), 2 (images) or 3 (volumes); got 0'),
    (lambda: to_ndim(xresnet18(), '3'), "ndim must be 1 (sequences), 2 (images) or 3 (volumes); got '3' (str)"),
    (lambda: add_self_attention(XResNet(1, (2, 2, 2), widths=(64, 128, 256))), 'self-attention needs at least 4 stages'),
    (lambda: XResNet(1, (1, 1, 1, 1), block=partial(FamilyBlock, inner_widths=(2,))), 'inner_widths must be two positive multiples of the stage width'),
    (lambda: XResNet(1, (1, 1, 1, 1), block=partial(FamilyBlock, cardinality=0)), 'cardinality must be a whole number >= 1; got 0'),
    (lambda: FAMILY['xresnext50'](cardinality=32), "unexpected keyword argument 'cardinality'"),
])
def test_bad_switches_refused_naming_the_argument(make, message):
    with pytest.raises((ValueError, TypeError)) as e: make()
    assert message in str(e.value), str(e.value)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(ndim=st.sampled_from([1, 2, 3]), expansion=st.sampled_from([1, 4]), cardinality=st.sampled_from([1, 2, 3, 8, 32]),
       se_reduction=st.sampled_from([0, 4, 16, 300]), self_attention=st.booleans(), stages=st.integers(3, 6))
def test_switches_build_and_run_or_are_refused(ndim, expansion, cardinality, se_reduction, self_attention, stages):
    "Any mix of the switches either builds a network whose forward and backward are finite, or is refused naming one of them"
    widths = (16, 16, 24, 32, 16, 16)[:stages]
    c, valid = widths[0], not (self_attention and stages < 4)
    for w in widths:  # the contract, stage by stage: grouped convs divide, a block is at least 1 wide, SE squeezes at most its channels
        inner = math.floor(w*4/64)*cardinality if cardinality > 1 else w
        grouped_in = (c, w) if expansion == 1 else (inner,)
        valid &= inner >= 1 and all(k % cardinality == 0 for k in (*grouped_in, inner)) and se_reduction <= w*expansion
        c = w*expansion
    try:
        m = XResNet(expansion, (1,)*stages, n_out=3, widths=widths, block=partial(FamilyBlock, cardinality=cardinality, se_reduction=se_reduction))
        m = to_ndim(add_self_attention(m) if self_attention else m, ndim)
    except (ValueError, TypeError) as e:
        assert not valid, f"refused a valid configuration: {e}"
        assert any(f'{k}=' in str(e) or f'{k} ' in str(e) for k in ('cardinality', 'se_reduction', 'self-attention', 'base_width')), str(e)
        return
    assert valid, "built a configuration the contract refuses"
    if ndim == 3 and stages > 4: return  # torch's avg_pool3d refuses a 1x1x1 input (2-D's ceil_mode gives 1); 6 stages need 128^3
    x = torch.randn(2, 3, *[40 if ndim < 3 else 32]*ndim)
    out = m(x)
    out.sum().backward()
    assert out.shape == (2, 3) and out.isfinite().all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in m.parameters())


def test_a_1d_network_learns_a_known_signal_task_in_a_learner():
    "Which of three frequencies a noisy sine has: the 1-D xResNeXt-18 with SE learns it inside a fastai Learner"
    g = torch.Generator().manual_seed(0)
    def signals(n):
        y = torch.randint(0, 3, (n,), generator=g)
        t = torch.linspace(0, 1, 128)
        phase = torch.rand(n, 1, generator=g)*2*math.pi
        x = torch.sin(2*math.pi*(4 + 6*y[:, None])*t + phase) + 0.3*torch.randn(n, 128, generator=g)
        return list(zip(x[:, None], y))
    dls = DataLoaders(DataLoader(signals(384), bs=32, shuffle=True), DataLoader(signals(128), bs=64))
    learn = Learner(dls, FAMILY['xse_resnext18'](n_out=3, c_in=1, ndim=1), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.fit_one_cycle(3, 5e-3)
    assert learn.recorder.values[-1][-1] >= 0.9, learn.recorder.values


def test_a_3d_volume_runs_in_a_learner_and_fuses():
    "Volumes (N, 1, D, H, W) through a 3-D xResNet: one fastai training epoch, predictions, and fuse giving the same outputs"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 32, 32, 32, generator=g); y = torch.arange(24) % 2
    x[y == 1, :, 8:24, 8:24, 8:24] += 2  # a bright cube in class 1
    dls = DataLoaders(DataLoader(list(zip(x[:16], y[:16])), bs=8, shuffle=True), DataLoader(list(zip(x[16:], y[16:])), bs=8))
    learn = Learner(dls, to_ndim(xresnet18(n_out=2, c_in=1), 3), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.fit(1, 1e-3)
    preds, _ = learn.get_preds()
    assert preds.shape == (8, 2) and preds.isfinite().all()
    m = learn.model.eval()
    with torch.no_grad(): a, b = fuse(m)(x[:4]), m(x[:4])
    assert (a - b).abs().max() <= 1e-4*b.abs().max()  # folding changes the summation order


def test_vision_learner_and_variant_take_family_presets(digits):
    "vision_learner(dls, xse_resnext50) cuts, splits (3 groups) and trains; variant() works on the (n_out, pretrained) signature"
    from fastai.vision.all import ImageDataLoaders, Resize, vision_learner
    dls = ImageDataLoaders.from_folder(digits, valid='valid', item_tfms=Resize(32), bs=16, num_workers=0)
    learn = vision_learner(dls, xse_resnext50, pretrained=False, metrics=accuracy)
    learn.create_opt()
    assert len(learn.opt.param_groups) == 3
    learn.fit(1, 1e-3, cbs=ShortEpochCallback(pct=0.05))
    assert learn.recorder.losses and all(math.isfinite(l) for l in learn.recorder.losses)
    mish = variant(xse_resnext50, act_cls=nn.Mish)
    assert isinstance(mish(n_out=3).stage_1[0].act, nn.Mish) and mish(n_out=3).fc.out_features == 3


def test_fastai_checkpoints_of_se_and_attention_models_load(tmp_path):
    "A state dict saved from fastai's xse_resnext18, or from its XResNet with sa=True, loads by name into ours: the same outputs"
    torch.manual_seed(2)
    se = randomize(fastai_xresnet.xse_resnext18(), size=32)
    sa = randomize(fastai_xresnet.XResNet(fastai_xresnet.ResBlock, 1, [2, 2, 2, 2], sa=True), size=32)
    with torch.no_grad():
        for m in sa.modules():
            if hasattr(m, 'gamma'): m.gamma.fill_(0.5)
    for ref, build, name in ((se, FAMILY['xse_resnext18'], 'se'), (sa, lambda: add_self_attention(XResNet(1, (2, 2, 2, 2))), 'sa')):
        torch.save(ref.state_dict(), tmp_path/f'{name}.pth')
        ours = load_pretrained(build(), 18, tmp_path/f'{name}.pth')
        assert max_diff(ref, ours, 32) <= 1e-5, name


@pytest.mark.parametrize('ndim', [1, 3])
def test_to_ndim_equals_fastai_ndim_by_outputs(ndim):
    "fastai's xresnet18(ndim=1 or 3) and ours through to_ndim: the same tensors in the same order, and the same outputs"
    torch.manual_seed(0)
    ref = fastai_xresnet.xresnet18(ndim=ndim, n_out=4).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d)): m.weight.uniform_(0.5, 1.5); m.running_var.uniform_(0.5, 2)
    ours = copy_weights(ref, to_ndim(xresnet18(n_out=4), ndim))
    x = torch.randn(2, 3, *[32 if ndim == 3 else 96]*ndim)
    with torch.no_grad(): assert (ref(x) - ours(x)).abs().max() <= 1e-5
