"The model traces as fastai's and timm's do: torch.fx, torchvision's feature extractor, TorchScript (script and trace), at every depth."
import warnings
import pytest, torch
from torchvision.models.feature_extraction import create_feature_extractor
from xresnet_fa import xresnet

DEPTHS = [18, 34, 50, 101, 152]


@pytest.fixture(scope='module', params=DEPTHS)
def model_and_input(request):
    torch.manual_seed(0)
    m = xresnet(request.param, n_out=10).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad(): return m, x, m(x)


def test_fx_symbolic_trace(model_and_input):
    m, x, y = model_and_input
    g = torch.fx.symbolic_trace(m)
    with torch.no_grad(): torch.testing.assert_close(g(x), y, rtol=0, atol=0)


def test_feature_extractor_takes_stage_outputs(model_and_input):
    m, x, y = model_and_input
    fe = create_feature_extractor(m, return_nodes={'stage_2': 'c3', 'stage_4': 'c5', 'fc': 'logits'})
    with torch.no_grad(): feats = fe(x)
    c = m.stage_4[0].residual[-1].conv.out_channels  # 512 for basic blocks, 2048 for bottlenecks
    assert feats['c3'].shape == (2, c//4, 8, 6) and feats['c5'].shape == (2, c, 2, 2)
    torch.testing.assert_close(feats['logits'], y, rtol=0, atol=0)


def test_torchscript_script(model_and_input):
    m, x, y = model_and_input
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit is deprecated in favour of torch.export, still used
        s = torch.jit.script(m)
    with torch.no_grad(): torch.testing.assert_close(s(x), y, rtol=1e-5, atol=1e-5)


def test_torchscript_trace(model_and_input):
    m, x, y = model_and_input
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = torch.jit.trace(m, x)
    with torch.no_grad(): torch.testing.assert_close(t(x), y, rtol=1e-5, atol=1e-5)
    with torch.no_grad(): assert t(torch.randn(3, 3, 64, 48)).shape == (3, 10)  # another batch size runs through the trace
