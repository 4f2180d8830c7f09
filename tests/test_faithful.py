"The default xResNet is fastai's xresnet and timm's resnet*d; tweak B alone is torchvision's resnet; B+C is timm's resnet*c."
import pytest, torch, timm, torchvision
from fastai.vision.models import xresnet as fastai_xresnet
from xresnet_fa import xresnet, count_params
from conftest import copy_weights, max_diff, randomize

DEPTHS = [18, 34, 50, 101, 152]
PARAMS = {18: 11_708_744, 34: 21_816_904, 50: 25_576_264, 101: 44_568_392, 152: 60_212_040}


def fastai_model(depth): return getattr(fastai_xresnet, f'xresnet{depth}')()


@pytest.mark.parametrize('depth', DEPTHS)
def test_parameter_counts(depth):
    ours = count_params(xresnet(depth))
    assert ours == PARAMS[depth]
    assert ours == count_params(fastai_model(depth))
    assert ours == count_params(timm.create_model(f'resnet{depth}d', pretrained=False))


@pytest.mark.parametrize('depth', DEPTHS)
@pytest.mark.parametrize('reference', ['fastai', 'timm'])
def test_same_outputs_as_reference(depth, reference):
    torch.manual_seed(depth)
    ref = fastai_model(depth) if reference == 'fastai' else timm.create_model(f'resnet{depth}d', pretrained=False)
    ref = randomize(ref)
    ours = copy_weights(ref, xresnet(depth))
    for size in (224, 161):
        assert max_diff(ref, ours, size) <= 1e-5, (reference, depth, size)


@pytest.mark.parametrize('depth', DEPTHS)
def test_tweak_b_alone_is_torchvision_resnet(depth):
    torch.manual_seed(depth)
    ref = randomize(getattr(torchvision.models, f'resnet{depth}')(weights=None))
    ours = copy_weights(ref, xresnet(depth, deep_stem=False, avg_down=False))
    assert count_params(ours) == count_params(ref)
    for size in (224, 161): assert max_diff(ref, ours, size) <= 1e-5, (depth, size)


@pytest.mark.parametrize('depth', [50, 101, 152])
def test_tweaks_b_and_c_are_timm_resnet_c(depth):
    ref = randomize(timm.create_model(f'resnet{depth}c', pretrained=False))
    ours = copy_weights(ref, xresnet(depth, avg_down=False))
    assert max_diff(ref, ours, 161) <= 1e-5


@pytest.mark.parametrize('depth', [18, 50])
def test_all_tweaks_off_is_the_original_resnet(depth):
    "No tweak: 7x7 stem, stride on the first 1x1, strided 1x1 shortcut -- ResNet v1 (Table 5: 3.8 GFLOPs at 50)"
    m = xresnet(depth, stride_3x3=False, deep_stem=False, avg_down=False, zero_bn=False)
    assert m.stem_1.conv.kernel_size == (7, 7)
    first = m.stage_2[0]
    assert first.residual[0].conv.stride == (2, 2)
    assert first.shortcut.conv.stride == (2, 2) and not hasattr(first.shortcut, 'pool')
    assert count_params(m) == count_params(getattr(torchvision.models, f'resnet{depth}')(weights=None))


def test_copy_refuses_another_depth():
    with pytest.raises(AssertionError, match='tensors in the reference'):
        copy_weights(fastai_model(18), xresnet(34))
