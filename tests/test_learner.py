"fastai contract: registration, export/load_learner in a fresh process, predictions that survive the round trip."
import subprocess, sys
import torch
from fastai.vision.all import ImageDataLoaders, Resize, Learner, accuracy, vision_learner, set_seed, load_learner
from fastai.vision.learner import model_meta
import xresnet_fa
from xresnet_fa import xresnet_split


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
