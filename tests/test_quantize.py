"""The model is plain torch, so PyTorch's quantization tools see every layer: PT2E with X86InductorQuantizer (torchao) annotates
every conv of every depth, a quantized xresnet18 runs close to float32, and eager fusion takes a conv block by its names."""
import warnings
import pytest, torch
from torch import nn
from xresnet_fa import xresnet
from xresnet_fa.conv import conv_block

xiq = pytest.importorskip('torchao.quantization.pt2e.quantizer.x86_inductor_quantizer', reason='torchao (the dev extra) is not installed')
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: E402


def prepared(model: nn.Module, x: torch.Tensor):
    "The model exported and prepared for int8 by X86InductorQuantizer's default configuration"
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return prepare_pt2e(torch.export.export(model.eval(), (x,)).module(), quantizer)


def conv_nodes(graph) -> list:
    return [n for n in graph.nodes if n.op == 'call_function' and n.target == torch.ops.aten.conv2d.default]


@pytest.mark.parametrize('depth', [18, 34, 50, 101, 152])
def test_pt2e_annotates_every_conv(depth):
    torch.manual_seed(0)
    m = xresnet(depth)
    n_convs = sum(type(c) is nn.Conv2d for c in m.modules())
    p = prepared(m, torch.randn(1, 3, 32, 32))
    annotated = [n for n in conv_nodes(p.graph) if getattr(n.meta.get('quantization_annotation'), '_annotated', False)]
    print(f"\nxresnet{depth}: {len(annotated)} of {n_convs} convs annotated for int8")
    assert n_convs == {18: 22, 34: 38, 50: 55, 101: 106, 152: 157}[depth] and len(annotated) == n_convs


def test_int8_xresnet18_runs_close_to_float32():
    "Calibrated on a few batches, every conv takes a dequantized int8 input, and the logits stay close"
    torch.manual_seed(0)
    m, xs = xresnet(18, n_out=10).eval(), [torch.randn(4, 3, 32, 32) for _ in range(4)]
    p = prepared(m, xs[0])
    for x in xs: p(x)  # calibration
    q = convert_pt2e(p)
    quantized = [n for n in conv_nodes(q.graph) if 'dequantize' in str(n.args[0].target)]
    assert len(quantized) == 22
    with torch.no_grad(): a, b = q(xs[0]), m(xs[0])
    assert (a - b).abs().max() <= 0.1*b.abs().max(), (a - b).abs().max()


def test_eager_fusion_finds_conv_bn_relu_by_name():
    block = conv_block(3, 8).eval()
    fused = torch.ao.quantization.fuse_modules(block, [['conv', 'bn', 'act']])
    assert type(fused.conv).__name__ == 'ConvReLU2d' and isinstance(fused.bn, nn.Identity)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad(): assert torch.allclose(fused(x), block(x), atol=1e-5)


def test_fast_inference_int8_is_asked_for_and_close():
    "precision='int8' needs calibration; uncompiled (reference int8 arithmetic), any batch size, logits close to float32"
    from xresnet_fa.fast import fast_inference
    torch.manual_seed(0)
    m, cal = xresnet(18, n_out=10).eval(), [torch.randn(4, 3, 32, 32) for _ in range(3)]
    with pytest.raises(ValueError, match="precision 'int8' needs calibration="): fast_inference(m, precision='int8')
    q = fast_inference(m, compile=False, precision='int8', calibration=cal)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad(): a, b = q(x), m(x)
    assert a.shape == (5, 10) and (a - b).abs().max() <= 0.1*b.abs().max(), (a - b).abs().max()


def test_fixed_batch_splits_and_fills_any_batch_exactly():
    "int8 runs at one batch size: FixedBatch splits larger batches and fills the last with copies, whose outputs it drops"
    from xresnet_fa.fast import FixedBatch
    torch.manual_seed(0)
    m = xresnet(18, n_out=3).eval()
    seen = []
    def at_four(x): seen.append(len(x)); return m(x)
    f, x = FixedBatch(at_four, 4), torch.randn(11, 3, 16, 16)
    with torch.no_grad(): out, ref, one = f(x), m(x), f(x[:1])
    assert out.shape == (11, 3) and (out - ref).abs().max() <= 1e-5 and one.shape == (1, 3), (out - ref).abs().max()
    assert set(seen) == {4}, seen


def test_int8_takes_fastai_batches():
    "predict and fastai's loaders give TensorImage batches: int8 calibrates and runs on them as on plain tensors (they once reached the graph)"
    from fastai.torch_core import TensorImage
    from xresnet_fa.fast import fast_inference
    torch.manual_seed(0)
    m, cal, x = xresnet(18, n_out=4).eval(), torch.randn(4, 3, 32, 32), torch.randn(3, 3, 32, 32)
    q = fast_inference(m, compile=False, precision='int8', calibration=[TensorImage(cal)])
    with torch.no_grad(): a, b = q(TensorImage(x)), q(x)
    assert type(a) is torch.Tensor and torch.equal(a, b)
