"""timm's backbone interface on every xResNet (notebook 14_backbone): feature_info for all the family's names, 1-D and 3-D; forward_features
and forward_head are the model's own layers, exactly; features_only returns the slices of the full model and traces as it does."""
import pickle, warnings
import pytest, torch
from torch import nn
from xresnet_fa import xresnet18, xresnet50
from xresnet_fa.backbone import FeatureList, features_only
from xresnet_fa.family import FAMILY, add_self_attention, to_ndim


@pytest.mark.parametrize('name', sorted(FAMILY))
def test_feature_info_every_name(name):
    with torch.device('meta'): m = FAMILY[name](n_out=7)
    info = m.feature_info
    stages = [n for n, _ in m.named_children() if n.startswith('stage_')]
    assert info.module_name() == [[n for n, _ in m.named_children() if n.startswith('stem_')][-2], *stages]
    assert info.reduction() == [2**(i+1) for i in range(len(stages) + 1)]
    last_conv = lambda mod: [c for c in mod.modules() if isinstance(c, nn.Conv2d)][-1].out_channels
    assert info.channels() == [last_conv(getattr(m, n)) for n in info.module_name()]
    assert (m.num_features, m.num_classes) == (m.fc.in_features, 7)


def slices(m: nn.Module, x: torch.Tensor) -> dict:
    "Every part's output, by name, from running the full model's parts one after another"
    out = {}
    for name, part in m.named_children(): x = out[name] = part(x)
    return out


@pytest.mark.parametrize('name,ndim,side', [('xresnet18', 2, 64), ('xse_resnext26', 2, 48), ('xresnet18_deep', 2, 128),
                                             ('xresnet18', 1, 96), ('xresnet18', 3, 32)])
def test_outputs_are_the_full_models_slices(name, ndim, side):
    torch.manual_seed(0)
    m = to_ndim(FAMILY[name](n_out=5, c_in=2), ndim).eval()
    x = torch.randn(2, 2, *[side]*ndim)
    with torch.no_grad():
        parts, y = slices(m, x), m(x)
        assert torch.equal(m.forward_head(m.forward_features(x)), y)
        assert torch.equal(m.forward_head(m.forward_features(x), pre_logits=True), parts['dropout'])
        fl = features_only(m, tuple(range(len(m.feature_info))))
        maps = fl(x)
    assert len(maps) == len(m.feature_info)
    for f, info in zip(maps, m.feature_info):
        assert torch.equal(f, parts[info['module']])
        assert f.shape[1] == info['num_chs'] and f.shape[2] == -(-side // info['reduction'])  # ceil: a stride-2 layer keeps an odd row


def test_feature_info_after_self_attention_and_other_inputs():
    with torch.device('meta'):
        plain, sa = xresnet50(c_in=1), add_self_attention(xresnet50(c_in=1))
    assert sa.feature_info == plain.feature_info
    assert [f['num_chs'] for f in plain.feature_info] == [64, 256, 512, 1024, 2048]


def test_out_indices_and_errors():
    torch.manual_seed(0)
    m = xresnet18().eval()
    assert features_only(m, (-1,)).out_indices == [4]
    assert features_only(m, 2).feature_info.channels() == [128]
    assert features_only(m, (3, 1)).out_indices == [1, 3]  # returned shallow to deep
    assert len(features_only(m, (1, 2)).body) == list(dict(m.named_children())).index('stage_2') + 1  # runs no further than needed
    for bad, msg in [((1, 5), 'out of range'), ((0, -5), 'twice'), ((), 'non-empty'), ((1.0,), 'whole numbers'), (('stage_1',), 'whole numbers'),
                     ((True,), 'whole numbers')]:
        with pytest.raises(ValueError, match=msg): features_only(m, bad)
    with pytest.raises(TypeError, match='must be an XResNet'): features_only(nn.Sequential(nn.Conv2d(3, 3, 3)))


def test_features_share_the_models_layers():
    m = xresnet18()
    fl = features_only(m)
    assert fl.body['stage_1'] is m.stage_1
    with torch.no_grad(): m.stem_1.conv.weight.zero_()
    assert fl.body['stem_1'].conv.weight.abs().sum() == 0


def test_reset_classifier():
    torch.manual_seed(0)
    m = xresnet18(n_out=1000)
    m.reset_classifier(3)
    assert m.num_classes == 3 and m(torch.randn(2, 3, 32, 32)).shape == (2, 3) and m.get_classifier() is m.fc
    m.reset_classifier(0, global_pool='max')
    assert isinstance(m.pool, nn.AdaptiveMaxPool2d) and m(torch.randn(2, 3, 32, 32)).shape == (2, 512) and m.num_classes == 0
    m.reset_classifier(4, global_pool='avg')
    assert isinstance(m.pool, nn.AdaptiveAvgPool2d) and m(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    seq = to_ndim(xresnet18(), 1)
    seq.reset_classifier(2, global_pool='max')
    assert isinstance(seq.pool, nn.AdaptiveMaxPool1d) and seq(torch.randn(2, 3, 64)).shape == (2, 2)
    for bad in (-1, 2.0, True, None):
        with pytest.raises(ValueError, match='num_classes must be'): m.reset_classifier(bad)
    with pytest.raises(ValueError, match='global_pool must be'): m.reset_classifier(2, global_pool='avgmax')


def test_forward_features_checks_its_input():
    m = xresnet18()
    with pytest.raises(Exception, match='dtype|float'): m.forward_features(torch.zeros(1, 3, 32, 32, dtype=torch.float64))


@pytest.fixture(scope='module')
def small():
    torch.manual_seed(0)
    m = xresnet18(n_out=4).eval()
    x = torch.randn(2, 3, 64, 48)
    fl = features_only(m, (0, 1, 2, 3, 4))
    with torch.no_grad(): return fl, x, fl(x)


def test_traces_fx_script_export(small):
    fl, x, maps = small
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = {'fx': torch.fx.symbolic_trace(fl), 'script': torch.jit.script(fl), 'export': torch.export.export(fl, (x,)).module()}
    for kind, t in traced.items():
        with torch.no_grad(): got = t(x)
        assert len(got) == len(maps), kind
        for a, b in zip(got, maps): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=kind)


def test_pickles(small):
    fl, x, maps = small
    back = pickle.loads(pickle.dumps(fl))
    assert isinstance(back, FeatureList) and back.feature_info == fl.feature_info
    with torch.no_grad(): assert all(torch.equal(a, b) for a, b in zip(back(x), maps))
