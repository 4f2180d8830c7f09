"The fast path computes the same function; the speed benchmark runs (a smoke run: tiny sizes, one repeat)."
import json, subprocess, sys
from pathlib import Path
import pytest, torch
from torch import nn
from xresnet_fa import xresnet
from xresnet_fa.fast import fuse
from conftest import randomize


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('tweaks', [{}, dict(stride_3x3=False, deep_stem=False, avg_down=False)], ids=['xresnet', 'resnet'])
def test_fused_equals_eval_model(depth, tweaks):
    m = randomize(xresnet(depth, **tweaks), seed=depth)
    f = fuse(m)
    assert not any(isinstance(l, nn.BatchNorm2d) for l in f.modules()) and not any(p.requires_grad for p in f.parameters())
    x = torch.randn(2, 3, 97, 97)
    with torch.inference_mode():
        ref = m(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            assert ((f(inp) - ref).abs().max()/ref.abs().max()).item() < 1e-4


def test_speed_benchmark_smoke(tmp_path):
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root/'benchmarks'/'speed.py'), '--depths', '18', '--repeats', '1', '--steps', '1',
                        '--train-bs', '2', '--train-size', '32', '--infer-bs', '2', '--infer-size', '32', '--json', str(tmp_path/'s.json')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'s.json').read_text())['results']['xresnet18']
    assert set(res['ratios']) >= {'train ours/fastai', 'train ours/timm', 'infer fused ours/fastai eager', 'infer compiled ours/fastai eager'}
    assert all(res[k]['median'] > 0 for k in ('train xresnet_fa', 'train fastai', 'train timm', 'infer xresnet_fa fused', 'infer xresnet_fa compiled'))
    assert set(res['peak train memory MiB']) == {'xresnet_fa', 'fastai', 'timm'}
