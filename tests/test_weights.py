"Weights: timm <-> ours at every depth, both directions; files; wrong checkpoints refused; missing timm; fastai's format."
import os, re, subprocess, sys
from pathlib import Path
import pytest, timm, torch
from torch import nn
from fastai.vision.models import xresnet as fastai_xresnet
from xresnet_fa import XResNet, xresnet
from xresnet_fa.weights import (CheckpointError, adapt, check_fits, fastai_name, imagenet_state_dict, load_pretrained, naming,
                                read_checkpoint, rename, timm_name, to_ours, to_timm)
from conftest import max_diff, randomize

DEPTHS = [18, 34, 50, 101, 152]


@pytest.mark.parametrize('depth', DEPTHS)
def test_timm_to_ours_and_back(depth):
    ref = randomize(timm.create_model(f'resnet{depth}d', pretrained=False), seed=depth)
    ours = xresnet(depth).eval()
    ours.load_state_dict(to_ours(ref.state_dict(), ours))
    assert max_diff(ref, ours, 64) <= 1e-5
    back = timm.create_model(f'resnet{depth}d', pretrained=False).eval()
    back.load_state_dict(to_timm(ours.state_dict()))  # strict: every name and shape must match
    assert max_diff(back, ours, 64) <= 1e-5


@pytest.mark.parametrize('depth', [18, 50])
def test_checkpoint_file_round_trip(depth, tmp_path):
    ref = randomize(timm.create_model(f'resnet{depth}d', pretrained=False), seed=depth)
    torch.save(ref.state_dict(), tmp_path/'timm.pth')
    ours = xresnet(depth, pretrained=tmp_path/'timm.pth').eval()
    torch.save(ours.state_dict(), tmp_path/'ours.pth')
    again = xresnet(depth, pretrained=tmp_path/'ours.pth').eval()
    assert max_diff(ref, again, 64) <= 1e-5


def test_fastai_checkpoint_format(tmp_path):
    "fastai's xrn50_940.pth layout: {'model': fastai XResNet state dict}"
    fa = randomize(fastai_xresnet.xresnet50(), seed=3)
    torch.save({'model': fa.state_dict()}, tmp_path/'xrn50.pth')
    assert max_diff(fa, xresnet(50, pretrained=tmp_path/'xrn50.pth').eval(), 64) <= 1e-5


@pytest.mark.parametrize('make, target, message', [
    (lambda: timm.create_model('resnet34d').state_dict(), 18, 'timm checkpoint has a tensor the model lacks: layer1.2.conv1.weight'),
    (lambda: {k: v for k, v in xresnet(18).state_dict().items() if 'stage_4.1' not in k}, 18, 'lacks a tensor the model has: stage_4.1'),
    (lambda: {**xresnet(18).state_dict(), 'extra.weight': torch.zeros(3)}, 18, 'has a tensor the model lacks: extra.weight'),
    (lambda: {**xresnet(18).state_dict(), 'stage_1.0.residual.0.conv.weight': torch.zeros(64, 64, 1, 1)}, 18,
     'stage_1.0.residual.0.conv.weight has shape (64, 64, 1, 1), the model expects (64, 64, 3, 3)'),
    (lambda: xresnet(50).state_dict(), 101, 'lacks a tensor the model has: stage_3.6'),
])
def test_wrong_checkpoint_is_refused_naming_first_mismatch(tmp_path, make, target, message):
    torch.save(make(), tmp_path/'ckpt.pth')
    with pytest.raises(CheckpointError, match=message.replace('(', r'\(').replace(')', r'\)')):
        xresnet(target, pretrained=tmp_path/'ckpt.pth')


def test_new_head_and_input_channels_keep_the_body(tmp_path):
    src = xresnet(50)
    torch.save(src.state_dict(), tmp_path/'w.pth')
    m = xresnet(50, pretrained=tmp_path/'w.pth', n_out=5, c_in=4)
    assert m.fc.out_features == 5 and m.stem_1.conv.in_channels == 4
    assert torch.equal(m.stage_3[2].residual[1].conv.weight, src.stage_3[2].residual[1].conv.weight)
    w = src.stem_1.conv.weight
    assert torch.allclose(m.stem_1.conv.weight, torch.cat([w, w[:, :1]], 1)*3/4)


def test_without_timm_a_clear_error():
    code = ("import sys; sys.modules['timm'] = None\nfrom xresnet_fa import xresnet18\n"
            "try: xresnet18(pretrained=True)\nexcept ImportError as e: print(e)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert "pip install 'xresnet_fa[timm]'" in r.stdout and 'pretrained=False' in r.stdout, r.stdout + r.stderr


def test_offline_error_is_quick(tmp_path):
    code = "from xresnet_fa import xresnet18\ntry: xresnet18(pretrained=True)\nexcept RuntimeError as e: print(e)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, 'HF_HUB_CACHE': str(tmp_path), 'HF_HUB_OFFLINE': '1'})
    assert 'pretrained=False' in r.stdout, r.stdout + r.stderr


net = XResNet(1, (2, 2, 2, 2), widths=(4, 4, 4, 4))
sd = net.state_dict()

@pytest.mark.parametrize('call, error, message', [
    *[(lambda f=f: f(net), TypeError, 'sd must be a state dict (name -> tensor) such as model.state_dict(); got a module (XResNet)')
      for f in (naming, to_timm)],
    *[(lambda f=f: f(net, sd), TypeError, 'sd must be a state dict') for f in (to_ours, rename, adapt, check_fits)],  # swapped
    *[(lambda f=f: f(None, net), TypeError, 'got None (NoneType)') for f in (to_ours, rename, adapt, check_fits)],
    *[(lambda f=f: f({}, net), CheckpointError, 'sd is empty') for f in (to_ours, rename, adapt, check_fits)],
    (lambda: naming({}), CheckpointError, 'sd is empty'),
    *[(lambda f=f: f(sd, None), TypeError, 'model must be an nn.Module instance (a layer or a network); got None') for f in (to_ours, rename, adapt, check_fits)],
    (lambda: to_ours({'model': {}}, net), CheckpointError, 'sd is empty'),
    (lambda: check_fits({**sd, 'fc.bias': 3}, net), TypeError, "sd['fc.bias'] must be a tensor; got 3 (int)"),
    (lambda: naming({0: torch.zeros(1)}), TypeError, 'sd must map tensor names (str) to tensors; got the key 0 (int)'),
    (lambda: adapt(sd, nn.Linear(2, 3)), TypeError, 'model must be an XResNet, such as xresnet50(); got a module (Linear)'),
    (lambda: to_ours(sd, nn.Linear(2, 3)), TypeError, 'model must be an XResNet'),
    (lambda: timm_name(123), TypeError, "name must be a tensor name (str) such as 'stem_1.conv.weight'; got 123 (int)"),
    (lambda: fastai_name(None, ['stem_1']), TypeError, 'name must be a tensor name (str)'),
    (lambda: fastai_name('0.0.weight', None), TypeError, "children must be the model's top-level module names"),
    (lambda: imagenet_state_dict([18]), ValueError, 'ImageNet weights exist for depths [18, 34, 50, 101, 152] and for xresnext50, xse_resnext26; got [18]'),
    (lambda: read_checkpoint(Path(__file__).parent), IsADirectoryError, 'is a folder; give a weights file'),
    *[(lambda bad=bad: read_checkpoint(bad), TypeError, f'path must be a file path (str or Path); got {bad}') for bad in (None, 123)],
    *[(lambda bad=bad: load_pretrained(net, 18, bad), TypeError, f'pretrained must be True, a weights tag or a weights file path; got {bad} (nothing to load)')
      for bad in (False, None)],
    (lambda: xresnet(18, pretrained=1.5), TypeError, 'pretrained must be True (ImageNet weights), False, or a weights file path; got 1.5 (float)'),
    (lambda: load_pretrained(None, 18, 'w.pth'), TypeError, 'model must be an nn.Module instance'),
])
def test_bad_arguments_are_refused_saying_what_is_right(call, error, message):
    with pytest.raises(error, match=re.escape(message)): call()
