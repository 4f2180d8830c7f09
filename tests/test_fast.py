"The fast path computes the same function; the speed benchmark runs (a smoke run: tiny sizes, one repeat)."
import json, re, subprocess, sys
from pathlib import Path
import pytest, torch
from torch import nn
from xresnet_fa import XResNet, xresnet
from xresnet_fa.fast import export_onnx, fast_inference, fold_bn, fuse
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


def test_fast_inference_compiled_equals_eager():
    "fast_inference's default path (fused, torch.compile with frozen weights) on a small XResNet: eager's outputs, on two batch sizes"
    m = randomize(XResNet(1, (1, 1), n_out=3, widths=(8, 16)), seed=0)
    f = fast_inference(m, precision='32')
    with torch.inference_mode():
        for n in (2, 3):
            x = torch.randn(n, 3, 32, 32)
            ref = m(x)
            assert ((f(x.contiguous(memory_format=torch.channels_last)) - ref).abs().max()/ref.abs().max()).item() < 1e-4


def test_speed_benchmark_smoke(tmp_path):
    "The benchmark runs and reports every ratio (--no-compile: test_fast_inference_compiled_equals_eager compiles, on a smaller net)"
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root/'benchmarks'/'speed.py'), '--depths', '18', '--repeats', '1', '--steps', '1', '--no-compile',
                        '--train-bs', '2', '--train-size', '32', '--infer-bs', '2', '--infer-size', '32', '--memory-repeats', '1', '--json', str(tmp_path/'s.json')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'s.json').read_text())['results']['xresnet18']
    assert set(res['ratios']) == {f'{k} ours/{o}{e}' for o in ('fastai', 'timm') for k, e in (('train', ''), ('infer eager', ''), ('infer fused', ' eager'))}
    assert all(res[k]['median'] > 0 for k in ('train xresnet_fa', 'train fastai', 'train timm', 'infer xresnet_fa fused'))
    assert set(res['peak train memory MiB']) == {'xresnet_fa', 'fastai', 'timm'}


def test_export_onnx_from_the_package(tmp_path):
    "export_onnx needs nothing the notebook imported (it once used Path without importing it); onnxruntime agrees, any batch"
    ort = pytest.importorskip('onnxruntime')
    m = randomize(xresnet(18, n_out=3), seed=1)
    path = export_onnx(fuse(m, channels_last=False), str(tmp_path/'m.onnx'), size=32)
    assert path == tmp_path/'m.onnx' and path.is_file()
    x = torch.randn(3, 3, 32, 32)
    (out,) = ort.InferenceSession(str(path), providers=['CPUExecutionProvider']).run(None, {'image': x.numpy()})
    with torch.inference_mode(): ref = m(x)
    assert (torch.from_numpy(out) - ref).abs().max()/ref.abs().max() < 1e-4


def test_fold_bn_without_affine():
    conv, bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False).eval()
    bn.running_mean.normal_(); bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad(): assert torch.allclose(fold_bn(conv, bn)(x), bn(conv(x)), atol=1e-5)


small = lambda: XResNet(1, (2, 2, 2, 2), widths=(4, 4, 4, 4))
conv8 = lambda: nn.Conv2d(3, 8, 3)

@pytest.mark.parametrize('call, error, message', [
    (lambda: fold_bn(conv8(), nn.BatchNorm2d(4)), ValueError, 'conv has 8 output channels but bn normalises 4'),
    (lambda: fold_bn(nn.BatchNorm2d(8), conv8()), TypeError, 'needs an nn.Conv2d and the nn.BatchNorm2d after it; got a module (BatchNorm2d)'),
    (lambda: fold_bn(nn.Conv1d(3, 8, 3), nn.BatchNorm2d(8)), TypeError, 'got a module (Conv1d), a module (BatchNorm2d) (1-D and 3-D pairs fold too)'),  # a 1-D conv with a 2-D BatchNorm
    (lambda: fold_bn(conv8(), None), TypeError, 'None (NoneType)'),
    (lambda: fold_bn(conv8(), nn.BatchNorm2d(8, track_running_stats=False)), ValueError, 'track_running_stats=False'),
    (lambda: fuse(None), TypeError, 'model must be an nn.Module instance (a layer or a network); got None (NoneType)'),
    (lambda: fuse(small().state_dict()), TypeError, 'model must be an nn.Module instance (a layer or a network); got a dict of'),
    (lambda: fast_inference(XResNet), TypeError, 'got the class XResNet; build one'),
    (lambda: fuse(nn.Sequential(conv8(), nn.BatchNorm2d(8))), ValueError, 'found no conv+BatchNorm blocks to fold'),
    (lambda: fuse(fuse(small())), ValueError, 'is it fused already?'),
    (lambda: fuse(small(), channels_last=1), TypeError, 'channels_last must be True or False; got 1 (int)'),
    (lambda: fast_inference(small(), compile='no'), TypeError, "compile must be True or False; got 'no' (str)"),
    (lambda: export_onnx(nn.Linear(2, 3), 'm.onnx'), TypeError, 'needs an XResNet (or fuse(XResNet)); got a module (Linear)'),
    (lambda: export_onnx(small().stage_1, 'm.onnx'), TypeError, 'needs an XResNet (or fuse(XResNet))'),
    (lambda: export_onnx(small(), 'm.onnx', size='8'), TypeError, "size must be a whole number >= 1; got '8' (str)"),
    (lambda: export_onnx(small(), 'm.onnx', size=0), ValueError, 'size must be a whole number >= 1; got 0'),
    (lambda: export_onnx(small(), None), TypeError, 'path must be an .onnx file path; got None'),
])
def test_bad_arguments_are_refused_saying_what_is_right(call, error, message):
    with pytest.raises(error, match=re.escape(message)): call()
