"fastai contract: registration, export/load_learner in a fresh process, predictions that survive the round trip."
import re, subprocess, sys
import pytest, torch
from torch import nn
from fastai.vision.all import ImageDataLoaders, Resize, Learner, accuracy, vision_learner, set_seed, load_learner
from fastai.vision.learner import model_meta
import xresnet_fa
from xresnet_fa import register, variant, xresnet_split


def test_import_registers_every_preset():
    for name in ['xresnet18', 'xresnet34', 'xresnet50', 'xresnet101', 'xresnet152']:
        meta = model_meta[getattr(xresnet_fa, name)]
        assert meta['cut'] == -4 and meta['split'] is xresnet_split and len(meta['stats'][0]) == 3


def test_export_and_load_learner_in_fresh_process(digits, tmp_path):
    dls = ImageDataLoaders.from_folder(digits, valid='valid', item_tfms=Resize(32), bs=32, num_workers=0)
    set_seed(0, reproducible=True)
    learn = vision_learner(dls, xresnet_fa.xresnet18, pretrained=False, metrics=accuracy, path=tmp_path)
    learn.fit(1, 1e-3)
    learn.export('export.pkl')
    image = sorted((digits/'valid'/'7').glob('*.png'))[0]
    _, _, probs = learn.predict(image)
    code = ("import sys, torch; from fastai.learner import load_learner;"
            "learn = load_learner(sys.argv[1]); _, _, p = learn.predict(sys.argv[2]); torch.save(p, sys.argv[3])")
    subprocess.run([sys.executable, '-c', code, str(tmp_path/'export.pkl'), str(image), str(tmp_path/'p.pt')], check=True)
    assert torch.allclose(torch.load(tmp_path/'p.pt'), probs, atol=1e-6)


@pytest.mark.parametrize('call, message', [
    *[(lambda bad=bad: xresnet_split(bad), "xresnet_split expects an XResNet or fastai's nn.Sequential(body, head)") for bad in (None, nn.Linear(2, 3))],
    *[(lambda bad=bad: register(bad), 'arch must be a function arch(pretrained=...) -> XResNet, such as xresnet18; got')
      for bad in (None, 'xresnet18', nn.Linear(2, 3))],
    *[(lambda bad=bad: variant(bad, p=0.1), 'arch must be a function arch(pretrained=...)') for bad in ('xresnet18', None)],
    (lambda: variant(xresnet_fa.xresnet18, expansion=2), "variant: ['expansion'] are not keywords of xresnet18; use any of ['n_out', 'c_in', 'p', 'act_cls',"),
    (lambda: variant(xresnet_fa.xresnet50, layers=(1, 1, 1, 1)), "['layers'] are not keywords of xresnet50; use any of"),
    (lambda: variant(xresnet_fa.xresnet18, colour=True), "['colour'] are not keywords of xresnet18; use any of"),
])
def test_bad_arguments_are_refused_saying_what_is_right(call, message):
    n = len(model_meta)
    with pytest.raises(TypeError, match=re.escape(message)): call()
    assert len(model_meta) == n  # nothing refused was registered


@pytest.mark.parametrize('depth', [18, 152])
@pytest.mark.parametrize('options, message', [(dict(p=5), 'p (dropout probability) must be'),
                                              (dict(act_cls=nn.ReLU()), 'act_cls must be'),
                                              (dict(stride_3x3='yes'), 'stride_3x3 must be True or False')])
def test_variant_checks_option_values_when_made(depth, options, message):
    "variant builds the network once on the meta device: bad values fail at once, for any depth, in milliseconds"
    with pytest.raises((TypeError, ValueError), match=re.escape(message)): variant(getattr(xresnet_fa, f'xresnet{depth}'), **options)
    v = variant(getattr(xresnet_fa, f'xresnet{depth}'), p=0.5)
    m = v(n_out=2)  # the meta device was for the check only
    assert model_meta[v]['split'] is xresnet_split and m.dropout.p == 0.5 and next(m.parameters()).device.type == 'cpu'
